"""Raw HTTP/1.1 request corpus with server-level expectations (see README.md)."""

from tests.corpus.loader import Case, load_case, load_cases

__all__ = ["Case", "load_case", "load_cases"]
