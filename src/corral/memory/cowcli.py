"""``corral cow ADDRESS``: copy-on-write sharing of each worker of a running server.

Theory of operation. The master's stats server (``--stats HOST:PORT``) lists the live workers
(``GET /stats``: pid, id, generation, state). For each worker this command finds its zygote (a
child of the worker's parent, the master, titled ``corral zygote [...] gen G``) and counts the
pages of the zygote's anonymous ranges that the worker still shares vs has copied
(``pagemap_cow``: pagemap bit 56, ~10 ms per worker, read-only, no signal sent). A worker whose
zygote is gone (an older generation) is listed without counts.

``--attribute WORKER`` (a pid or a worker id from /stats) goes further, once: it sends the
worker SIGUSR2 and waits, up to ``--timeout`` seconds, for the report the worker writes to
``corral.memory.attribution.report_path(pid)``; then prints the types and modules whose objects
sit on copied pages. The worker un-shares memory while it enumerates its objects: a one-shot
diagnostic (see docs/memory.md, "Copy-on-write insight").

Exit status: 0 done; 1 the server or a worker could not be read (one line on stderr, never a
traceback); 2 bad arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from corral.memory import attribution
from corral.memory.proc import PAGE_SIZE, MemoryProbeError, anonymous_ranges, pagemap_cow

__all__ = ["CowError", "WorkerCow", "main"]

HTTP_TIMEOUT_S = 5.0
ATTRIBUTE_TIMEOUT_S = 60.0  # the walk is ~10 s for a 300 MB heap on a slow core; leave room
POLL_S = 0.05
_SIGNALLABLE = ("ready", "draining")  # SIGUSR2 before the handler is installed would kill it


class CowError(Exception):
    """A failure reported to the user as one line, exit status 1."""


@dataclass(frozen=True)
class WorkerCow:
    """Sharing of one worker's pre-fork pages; the counts are None when its zygote is gone
    (an older generation), since then nothing says which pages were there before the fork."""

    pid: int
    worker_id: int
    generation: int
    zygote: int | None
    shared_pages: int | None
    copied_pages: int | None
    page_size: int
    took_ms: float

    @property
    def shared_fraction(self) -> float | None:
        if self.shared_pages is None or self.copied_pages is None:
            return None
        present = self.shared_pages + self.copied_pages
        return self.shared_pages / present if present else 1.0

    def as_dict(self) -> dict[str, Any]:
        fraction = self.shared_fraction
        return {
            "pid": self.pid,
            "id": self.worker_id,
            "generation": self.generation,
            "zygote": self.zygote,
            "shared_pages": self.shared_pages,
            "copied_pages": self.copied_pages,
            "shared_mib": self._mib(self.shared_pages),
            "copied_mib": self._mib(self.copied_pages),
            "shared_pct": None if fraction is None else round(100 * fraction, 2),
            "took_ms": round(self.took_ms, 2),
        }

    def _mib(self, pages: int | None) -> float | None:
        return None if pages is None else round(pages * self.page_size / (1 << 20), 2)


# --- reading the server ---------------------------------------------------------------------------


def split_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6; ``http://`` and a trailing path are tolerated)."""
    text = address.removeprefix("http://").split("/", 1)[0]
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not host:
        raise CowError(f"bad address {address!r}: expected HOST:PORT, e.g. 127.0.0.1:9100")
    return host.strip("[]"), int(port)


def fetch_workers(address: str, timeout: float = HTTP_TIMEOUT_S) -> list[dict[str, Any]]:
    """The ``workers`` list of ``GET /stats`` at ``address``."""
    host, port = split_address(address)
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", "/stats")
        resp = conn.getresponse()
        body = resp.read()
    except (OSError, http.client.HTTPException) as exc:
        raise CowError(f"no stats server answers at {address}: {exc}") from exc
    finally:
        conn.close()
    if resp.status != 200:
        raise CowError(f"{address}/stats answered {resp.status} {resp.reason}")
    try:
        workers = json.loads(body)["workers"]
    except (ValueError, KeyError, TypeError) as exc:
        raise CowError(f"{address}/stats is not a corral stats document") from exc
    if not isinstance(workers, list):
        raise CowError(f"{address}/stats is not a corral stats document")
    return workers


def worker_cow(worker: dict[str, Any]) -> WorkerCow:
    """Count one worker's shared and copied pre-fork pages."""
    pid, generation = int(worker["pid"]), int(worker["generation"])
    t0 = time.monotonic()
    try:
        zygote = attribution.find_zygote(attribution.parent_pid(pid), generation)
        counts = None if zygote is None else pagemap_cow(pid, anonymous_ranges(zygote))
    except (MemoryProbeError, PermissionError) as exc:
        raise CowError(f"worker {pid}: {exc}") from exc
    return WorkerCow(
        pid=pid,
        worker_id=int(worker.get("id", 0)),
        generation=generation,
        zygote=zygote,
        shared_pages=None if counts is None else counts.shared_pages,
        copied_pages=None if counts is None else counts.exclusive_pages,
        page_size=PAGE_SIZE,
        took_ms=(time.monotonic() - t0) * 1000,
    )


# --- attribution --------------------------------------------------------------------------------


def pick_worker(workers: list[dict[str, Any]], which: str) -> dict[str, Any]:
    """The worker whose pid, else whose id, is ``which``."""
    if not which.isdigit():
        raise CowError(f"--attribute takes a worker pid or id, not {which!r}")
    value = int(which)
    for key in ("pid", "id"):
        for worker in workers:
            if int(worker.get(key, -1)) == value:
                return worker
    raise CowError(f"no worker with pid or id {value} (workers: {_pids(workers)})")


def _pids(workers: list[dict[str, Any]]) -> str:
    return ", ".join(f"id {w.get('id')} pid {w.get('pid')}" for w in workers) or "none"


def request_report(worker: dict[str, Any], timeout: float) -> dict[str, Any]:
    """Signal the worker and wait for its report (see the module docstring)."""
    pid = int(worker["pid"])
    if worker.get("state", "ready") not in _SIGNALLABLE:
        raise CowError(f"worker {pid} is {worker.get('state')}, not serving; try again")
    path = attribution.report_path(pid)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()  # a report from an earlier request must not pass for this one
    try:
        os.kill(pid, signal.SIGUSR2)
    except ProcessLookupError as exc:
        raise CowError(f"worker {pid} is gone") from exc
    except PermissionError as exc:
        raise CowError(f"not allowed to signal worker {pid}: {exc}") from exc
    return _wait_report(pid, path, timeout)


def _wait_report(pid: int, path: Any, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path, encoding="utf-8") as f:
                report: dict[str, Any] = json.load(f)
        except FileNotFoundError:
            if not os.path.exists(f"/proc/{pid}"):
                raise CowError(f"worker {pid} exited before reporting") from None
            time.sleep(POLL_S)  # the worker renames the file into place: no partial reads
            continue
        except (OSError, ValueError) as exc:
            raise CowError(f"unreadable report {path}: {exc}") from exc
        with contextlib.suppress(OSError):
            os.unlink(path)  # read once; leave nothing behind in the temporary directory
        if "error" in report:
            raise CowError(f"worker {pid}: attribution failed: {report['error']}")
        return report
    raise CowError(f"worker {pid} wrote no report within {timeout:g}s (see {path})")


# --- output -------------------------------------------------------------------------------------


def _mib(nbytes: int) -> str:
    return f"{nbytes / (1 << 20):.2f}"


def print_sharing(rows: list[WorkerCow]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="copy-on-write: pre-fork pages per worker")
    for col in ("pid", "id", "gen", "shared MiB", "copied MiB", "shared %", "ms"):
        table.add_column(col, justify="right")
    for r in rows:
        d = r.as_dict()
        cells = [_cell(d["shared_mib"], ".2f"), _cell(d["copied_mib"], ".2f")]
        cells.append(_cell(d["shared_pct"], ".1f"))
        table.add_row(str(r.pid), str(r.worker_id), str(r.generation), *cells, f"{r.took_ms:.1f}")
    Console().print(table)
    if any(r.zygote is None for r in rows):
        Console(stderr=True).print("-: that worker's zygote is gone (older generation)")


def _cell(value: float | None, fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def print_attribution(report: dict[str, Any], top: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"worker {report['pid']} (Python {report['python']}): "
        f"{_mib(report['copied_bytes'])} MiB copied, "
        f"{_mib(report['attributed_bytes'])} MiB of it under "
        f"{report['objects_on_copied_pages']} objects "
        f"(snapshot {report['snapshot_s']:.3f}s, walk {report['walk_s']:.2f}s; "
        f"ranges from {report['ranges_from']})"
    )
    for key, title in (("types", "type"), ("modules", "module")):
        table = Table(title=f"top {title}s by bytes on copied pages")
        for col in (title, "MiB", "objects"):
            table.add_column(col, justify="left" if col == title else "right")
        for entry in report[key][:top]:
            table.add_row(entry["name"], _mib(entry["bytes"]), str(entry["objects"]))
        console.print(table)


# --- main ---------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="corral cow",
        description="Copy-on-write sharing of a running server's workers (read from /proc).",
    )
    p.add_argument("address", help="the master's stats address (--stats), e.g. 127.0.0.1:9100")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument(
        "--attribute",
        metavar="WORKER",
        help="one-shot: map one worker's (pid or id) copied pages to types and modules; "
        "un-shares some memory of that worker",
    )
    p.add_argument("--top", type=int, default=15, help="rows per attribution table (15)")
    p.add_argument(
        "--timeout",
        type=float,
        default=ATTRIBUTE_TIMEOUT_S,
        help=f"seconds to wait for the worker's report ({ATTRIBUTE_TIMEOUT_S:g})",
    )
    return p


def _run(args: argparse.Namespace) -> int:
    workers = fetch_workers(args.address)
    if args.attribute is not None:
        report = request_report(pick_worker(workers, args.attribute), args.timeout)
        if args.json:
            top = max(args.top, 0)
            out = {**report, "types": report["types"][:top], "modules": report["modules"][:top]}
            sys.stdout.write(json.dumps(out, indent=2) + "\n")
        else:
            print_attribution(report, args.top)
        return 0
    rows = [worker_cow(w) for w in workers]
    if args.json:
        sys.stdout.write(json.dumps({"workers": [r.as_dict() for r in rows]}, indent=2) + "\n")
    else:
        print_sharing(rows)
    return 0


def main(argv: Sequence[str]) -> int:
    """``corral cow ADDRESS [--json] [--attribute WORKER [--top N] [--timeout S]]``."""
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exc:  # argparse printed its message (or --help)
        return int(exc.code or 0)
    if args.top < 0 or args.timeout <= 0:
        sys.stderr.write("corral cow: --top must be >= 0 and --timeout > 0\n")
        return 2
    try:
        return _run(args)
    except CowError as exc:
        sys.stderr.write(f"corral cow: {exc}\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
