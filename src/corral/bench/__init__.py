"""corral.bench."""
