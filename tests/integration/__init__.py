"""Integration tests: the worker on real sockets in forked processes."""
