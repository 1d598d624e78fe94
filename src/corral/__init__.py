"""corral: a prefork WSGI server that keeps the master's memory shared with its workers."""

__version__ = "0.1.0"
