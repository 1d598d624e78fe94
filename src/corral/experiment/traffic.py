"""What to send: a list of URLs, the GET paths of a combined-format access log, or a locustfile.

An access log is the realistic source: the paths people actually request, in the proportions
they request them. Lines of the combined (and common) format are recognised by their quoted
request line (``"GET /path HTTP/1.1"``); only GET requests with a 2xx or 3xx status are
replayed (a replayed POST would change the app's state; a 404 flood measures nothing), and at
most ``MAX_PATHS`` paths are kept, in log order, so a huge log costs bounded memory.

Rules, in order: a ``.py`` file is a locustfile; any other existing file is an access log (or,
when no line parses as one, a list of URLs one per line); a name that looks like a file but
cannot be read is refused (see ``_looks_like_file``); anything else is a comma-separated list of
paths or URLs.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

MAX_PATHS = 5000
_REQUEST_LINE = re.compile(r'"([A-Z]+) (\S+) HTTP/[\d.]+" (\d{3}) ')
_FILE_SUFFIXES = (".log", ".txt", ".py", ".gz", ".csv")


class TrafficError(Exception):
    """The traffic source cannot be used; the message is one line for the user."""


@dataclass(frozen=True)
class Traffic:
    """``kind`` is ``urls``, ``log`` or ``locust``; ``paths`` are origin-relative targets."""

    kind: str
    paths: tuple[str, ...]
    source: str
    locustfile: str = ""

    def describe(self) -> str:
        if self.kind == "locust":
            return f"locustfile {self.source}"
        n = len(set(self.paths))
        distinct = f"{n} distinct path" + ("s" if n != 1 else "")
        if self.kind == "log":
            return f"access log {self.source}: {len(self.paths)} requests, {distinct}"
        urls = "1 URL" if len(self.paths) == 1 else f"{len(self.paths)} URLs"
        return f"URLs {self.source}: {urls}, {distinct}, sent in turn"


def to_path(url: str) -> str:
    """``http://host/a?b`` or ``/a?b`` -> ``/a?b``."""
    if url.startswith("/"):
        return url
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise TrafficError(f"not a path or http URL: {url!r}")
    return (parts.path or "/") + (f"?{parts.query}" if parts.query else "")


def parse_access_log(text: str, limit: int = MAX_PATHS) -> list[str]:
    """GET paths answered 2xx/3xx, in order, at most ``limit``."""
    out: list[str] = []
    for line in text.splitlines():
        m = _REQUEST_LINE.search(line)
        if m and m.group(1) == "GET" and m.group(3)[0] in "23" and m.group(2).startswith("/"):
            out.append(m.group(2))
            if len(out) >= limit:
                break
    return out


def load(spec: str | None, default_path: str = "/") -> Traffic:
    """The traffic ``spec`` names (see the module docstring); ``None``: ``GET /`` only."""
    if not spec:
        return Traffic("urls", (default_path,), default_path)
    if os.path.isfile(spec):
        return _from_file(spec)
    if _looks_like_file(spec):
        raise TrafficError(f"cannot read traffic file {spec}: not a readable file")
    paths = tuple(to_path(u.strip()) for u in spec.split(",") if u.strip())
    if not paths:
        raise TrafficError(f"no URLs in --traffic {spec!r}")
    return Traffic("urls", paths, spec)


def _looks_like_file(spec: str) -> bool:
    """A ``--traffic`` that is not an existing file but names one (``/`` and anything with a
    query are always URLs): a directory; a name with a
    file suffix (``.log``, ``.txt``, ``.py``, ``.gz``, ``.csv``); a single relative name that is
    no URL (``logs/access.1``); or an absolute path whose directory exists on this machine
    (``/var/log/nginx/access.log.1``, where ``/products/42`` is still a URL path)."""
    if spec == "/" or "?" in spec:  # the site's root, a query: URLs, whatever is on disk
        return False
    if os.path.isdir(spec) or spec.endswith(_FILE_SUFFIXES):
        return True
    if "," in spec or "://" in spec:  # URLs (an unknown scheme is refused as such)
        return False
    if not spec.startswith("/"):
        return True
    parent = os.path.dirname(spec.split("?", 1)[0])
    return parent != "/" and os.path.isdir(parent)


def _from_file(path: str) -> Traffic:
    if path.endswith(".py"):
        if importlib.util.find_spec("locust") is None:  # run as `python -m locust`
            raise TrafficError(f"{path} is a locustfile, but locust is not installed here")
        return Traffic("locust", (), path, locustfile=path)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read(64 << 20)
    except OSError as exc:
        raise TrafficError(f"cannot read traffic file {path}: {exc.strerror}") from None
    logged = parse_access_log(text)
    if logged:
        return Traffic("log", tuple(logged), path)
    if _REQUEST_LINE.search(text):
        raise TrafficError(f"access log {path} has no GET request answered 2xx or 3xx to replay")
    lines = [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.startswith("#")]
    if not lines:
        raise TrafficError(f"traffic file {path} has no GET requests and no URLs")
    paths = []
    for number, line in enumerate(lines[:MAX_PATHS], 1):
        try:
            paths.append(to_path(line))
        except TrafficError:
            shown = ascii(line[:60] + ("..." if len(line) > 60 else ""))
            raise TrafficError(
                f"traffic file {path}: neither a combined-format access log nor one URL a line "
                f"(non-comment line {number}: {shown})"
            ) from None
    return Traffic("urls", tuple(paths), path)
