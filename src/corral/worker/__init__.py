"""corral.worker."""
