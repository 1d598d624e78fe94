"""corral.stats."""
