"""corral.memory."""
