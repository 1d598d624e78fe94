"""corral.http."""
