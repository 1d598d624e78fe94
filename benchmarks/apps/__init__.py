"""Tiny WSGI apps served by ``benchmarks/hello.py`` and ``benchmarks/reload.py``."""
