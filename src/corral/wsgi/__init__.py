"""corral.wsgi."""
