"""The balancer's own counters, to set next to what chaos's load generator saw.

Two sources, both read-only:

* **HAProxy's stats socket** (``stats socket /path mode 600 level user`` in its ``global``
  section): ``show stat`` answers one CSV line per frontend, backend and server. chaos takes a
  snapshot at every phase boundary and reports the deltas. What clients lost is the
  frontend's ``hrsp_4xx`` + ``hrsp_5xx`` (answered with an error: a 504 after ``timeout
  server``, a 503 with no server left) plus the backend's ``srv_abrt`` (a response the server
  cut: HAProxy passes the cut on, the client sees a reset); requests are the frontend's
  ``req_tot``. Per server, ``eresp`` (its aborts and timeouts) and ``hrsp_5xx`` (its own 5xx)
  say *which host* caused a failure; ``econ``, ``wretr`` and ``wredis`` are reported too
  (connect errors, retried elsewhere). ``show servers state`` maps server names to the
  hosts' ``ADDR:PORT``.
* **nginx's access log**, written with a ``log_format`` that starts
  ``$msec $status $upstream_addr`` (see docs/chaos.md). Each line carries its own time, so
  chaos splits the log into phases exactly by timestamp, and ``$upstream_addr`` names the host
  (a retried request lists every upstream it tried, ``a, b``: the failure is charged to the
  first; the upstream group's own name, logged when nginx had no live server left to try, is
  charged to no host: ``-``).

Parsing is pure (``parse_show_stat``, ``parse_nginx_line``); ``read_show_stat`` is the socket.
"""

from __future__ import annotations

import csv
import io
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

SERVER_FIELDS = ("econ", "eresp", "wretr", "wredis", "hrsp_5xx", "srv_abrt", "cli_abrt")
STATS_TIMEOUT_S = 3.0
CLIENT_CLOSED = 499  # nginx's status for a request the client closed before the answer


class BalancerError(Exception):
    """The balancer's counters could not be read; one line for the user."""


@dataclass
class Counts:
    """What the balancer counted over one window: requests it answered, those it answered
    with 4xx/5xx (or, for nginx, logged so), and per-server error counters."""

    requests: int = 0
    errors: int = 0
    servers: dict[str, dict[str, int]] = field(default_factory=dict)

    def minus(self, before: Counts) -> Counts:
        servers = {
            name: {k: v - before.servers.get(name, {}).get(k, 0) for k, v in row.items()}
            for name, row in self.servers.items()
        }
        return Counts(self.requests - before.requests, self.errors - before.errors, servers)

    def add(self, other: Counts) -> None:
        self.requests += other.requests
        self.errors += other.errors
        for name, row in other.servers.items():
            mine = self.servers.setdefault(name, {})
            for k, v in row.items():
                mine[k] = mine.get(k, 0) + v


def server_failures(row: dict[str, int]) -> int:
    """Failures a server caused: response errors (its aborts and timeouts) and its own 5xx.
    Connect errors are left out: HAProxy retries them elsewhere (``retry-on``)."""
    return row.get("eresp", 0) + row.get("hrsp_5xx", 0)


def _int(value: str | None) -> int:
    return int(value) if value and value.isdigit() else 0


def parse_show_stat(text: str, frontend: str | None, backend: str | None) -> Counts:
    """``show stat`` CSV -> Counts: the frontend row's totals (the named one, or the only one
    that is not ``stats``), and the servers of ``backend`` (or of every backend)."""
    rows = list(csv.DictReader(io.StringIO(text.lstrip("# "))))
    fronts = [r for r in rows if r.get("svname") == "FRONTEND"]
    if frontend is not None:
        fronts = [r for r in fronts if r.get("pxname") == frontend]
    else:
        fronts = [r for r in fronts if r.get("pxname") != "stats"]
    if not fronts:
        raise BalancerError(f"show stat has no frontend {frontend or ''}".rstrip())
    out = Counts()
    for r in fronts:
        out.requests += _int(r.get("req_tot"))
        out.errors += _int(r.get("hrsp_4xx")) + _int(r.get("hrsp_5xx"))
    for r in rows:
        if r.get("svname") == "FRONTEND" or r.get("pxname") == "stats":
            continue
        if backend is None or r.get("pxname") == backend:
            if r.get("svname") == "BACKEND":  # cut mid-response: the client saw a reset
                out.errors += _int(r.get("srv_abrt"))
            name = str(r.get("svname"))
            name = f"{r.get('pxname')}/BACKEND" if name == "BACKEND" else name
            out.servers[name] = {k: _int(r.get(k)) for k in SERVER_FIELDS}
    return out


def server_status(text: str, backend: str | None) -> dict[str, str]:
    """``show stat`` CSV -> {server addr (or name): status} ("UP", "DOWN", "UP 1/2", ...)."""
    rows = csv.DictReader(io.StringIO(text.lstrip("# ")))
    return {
        r.get("addr") or str(r.get("svname")): str(r.get("status"))
        for r in rows
        if r.get("svname") not in ("FRONTEND", "BACKEND")
        and r.get("pxname") != "stats"
        and (backend is None or r.get("pxname") == backend)
    }


def parse_servers_state(text: str, backend: str | None) -> dict[str, str]:
    """``show servers state`` -> {server name: "ADDR:PORT"} (``show stat`` at level user
    leaves ``addr`` empty, so names are mapped to the hosts' addresses with this)."""
    lines = text.splitlines()
    head = next((ln.lstrip("# ").split() for ln in lines if ln.startswith("# be_id")), [])
    if not head:
        return {}
    out = {}
    for line in lines:
        row = dict(zip(head, line.split(), strict=False))
        if line.startswith("#") or len(row) < len(head):
            continue
        if backend is None or row["be_name"] == backend:
            out[row["srv_name"]] = f"{row['srv_addr']}:{row['srv_port']}"
    return out


def by_address(counts: Counts, names: dict[str, str]) -> Counts:
    """The same counts with servers keyed by ``ADDR:PORT`` where the name is known."""
    counts.servers = {names.get(k, k): v for k, v in counts.servers.items()}
    return counts


def read_show_stat(path: str, command: str = "show stat") -> str:
    """One command over HAProxy's unix stats socket (it answers, then closes)."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(STATS_TIMEOUT_S)
    try:
        sock.connect(path)
        sock.sendall(command.encode() + b"\n")
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except OSError as exc:
        raise BalancerError(f"HAProxy stats socket {path}: {exc}") from None
    finally:
        sock.close()
    return b"".join(chunks).decode(errors="replace")


@dataclass(frozen=True, slots=True)
class LogLine:
    """One nginx access-log line: ``$msec $status $upstream_addr ...``."""

    when: float
    status: int
    upstream: str


def parse_nginx_line(line: str) -> LogLine | None:
    """The first three fields of a ``corral`` log_format line, or None for anything else."""
    fields = line.split(maxsplit=2)
    if len(fields) < 2:
        return None
    try:
        when, status = float(fields[0]), int(fields[1])
    except ValueError:
        return None
    upstream = fields[2].split(",")[0].split()[0] if len(fields) > 2 and fields[2] else "-"
    if ":" not in upstream:  # the upstream group's own name: "no live upstreams", no host tried
        upstream = "-"
    return LogLine(when, status, upstream)


def nginx_counts(lines: Iterable[LogLine]) -> Counts:
    """Counts over log lines: a 4xx/5xx is charged to the upstream that answered it. A 499
    (nginx's "client closed the request") is a request but not the balancer's error: nginx
    answered nothing, and a client that gave up counts its own timeout (the load generator's
    requests abandoned as it stops are 499s too, and no error of anyone's)."""
    out = Counts()
    for line in lines:
        out.requests += 1
        row = out.servers.setdefault(line.upstream, {"hrsp_5xx": 0})
        if line.status >= 400 and line.status != CLIENT_CLOSED:
            out.errors += 1
            row["hrsp_5xx"] += 1
    return out


@dataclass
class Balancer:
    """A source of counters: HAProxy's stats socket or nginx's access log."""

    kind: str  # "haproxy" or "nginx"
    path: str
    frontend: str | None = None
    backend: str | None = None
    log_start: int = 0  # nginx: the log's size when the session started

    def snapshot(self) -> Counts:
        """HAProxy: the counters now. nginx: nothing to read yet (see ``nginx_lines``)."""
        if self.kind == "haproxy":
            counts = parse_show_stat(read_show_stat(self.path), self.frontend, self.backend)
            return by_address(counts, self.names())
        return Counts()

    def names(self) -> dict[str, str]:
        """HAProxy: server name -> ADDR:PORT."""
        state = read_show_stat(self.path, "show servers state")
        return parse_servers_state(state, self.backend)

    def server_up(self, addr: str) -> bool | None:
        """HAProxy: whether its health checks call ``addr`` UP now (None: not known)."""
        if self.kind != "haproxy":
            return None
        names = {v: k for k, v in self.names().items()}
        status = server_status(read_show_stat(self.path), self.backend).get(names.get(addr, addr))
        return None if status is None else status.startswith("UP") and "/" not in status

    def mark(self) -> None:
        """nginx: remember where the log ends, so only this session's lines are read."""
        if self.kind == "nginx":
            try:
                self.log_start = Path(self.path).stat().st_size
            except OSError as exc:
                raise BalancerError(f"nginx log {self.path}: {exc.strerror}") from None

    def nginx_lines(self) -> list[LogLine]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self.log_start)
                text = f.read().decode(errors="replace")
        except OSError as exc:
            raise BalancerError(f"nginx log {self.path}: {exc.strerror}") from None
        return [p for p in (parse_nginx_line(raw) for raw in text.splitlines()) if p]


def windows_from_log(lines: list[LogLine], bounds: list[tuple[float, float]]) -> list[Counts]:
    """nginx: the log split by wall-clock windows ``[start, end)``, one Counts each."""
    return [nginx_counts(x for x in lines if start <= x.when < end) for start, end in bounds]
