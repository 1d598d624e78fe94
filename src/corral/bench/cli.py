"""``corral bench``: parse argv into a ``LoadConfig``, run it, print the report.

The only module of the package that reads argv, files named on the command line and the
terminal; everything else is importable without side effects. ``main`` returns an exit code
and never lets argparse (or anything else) exit the process:

* 0 -- the run completed and at least one response arrived;
* 1 -- no request completed, or a worker process failed;
* 2 -- bad usage or input (one line on stderr, no traceback);
* 130 -- interrupted twice (the first ^C stops the run and still prints the report).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import types
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

from corral.bench import plot, report
from corral.bench.config import (
    DEFAULT_CONNECTIONS,
    BenchConfigError,
    LoadConfig,
    parse_duration,
    parse_header,
)
from corral.bench.result import LoadResult, Progress
from corral.bench.runner import run_load
from corral.bench.sla import Objective, SlaError, all_met, evaluate, parse_sla

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

DESCRIPTION = "HTTP/1.1 load generator: ab/wrk closed loop, or wrk2 open model with --rate."
EPILOG = """\
bounds: a run stops at -n requests or after -d (default 10s if neither), whichever
  comes first, and always by --max-time (default: -d plus 5 s, or 10 min for -n runs).
keep-alive: on by default (wrk); -k is accepted for ab compatibility and changes nothing.
  --no-keepalive sends "Connection: close" and opens a connection per request, whose
  latency then includes the connect (ab's "Total").
counting: "requests" are complete responses of any status; failed attempts are counted
  by class (connect, reset, timeout, protocol); non-2xx responses are counted both as
  requests and as errors. Requests still in flight when time runs out are "abandoned".
open model: --rate R sends R requests/s on a fixed schedule whatever the server does;
  latency runs from each request's intended send time (coordinated omission corrected),
  and the report says how far the generator fell behind (achieved rate, max lag).
output: ab-style text by default; --json (object), --csv (header + one summary row) or
  --csv-series (header + one row per second) instead. --plot FILE writes an HTML page.
"""


class _UsageError(Exception):
    def __init__(self, code: int, message: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` owns the exit code."""

    def error(self, message: str) -> NoReturn:
        raise _UsageError(EXIT_USAGE, message)

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        raise _UsageError(status, message or "")


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="corral bench",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("url", nargs="?", help="http://host[:port]/path")
    _add_load_options(p)
    _add_request_options(p)
    _add_output_options(p)
    return p


def _add_load_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-n", "--requests", type=int, help="total requests (ab -n)")
    p.add_argument(
        "-c",
        "--connections",
        type=int,
        default=DEFAULT_CONNECTIONS,
        help=f"concurrent connections (default {DEFAULT_CONNECTIONS}, as wrk)",
    )
    p.add_argument("-d", "--duration", help="run time: 5, 5s, 500ms, 1m (default 10s)")
    p.add_argument("--rate", type=float, help="open model: requests per second (wrk2 -R)")
    p.add_argument("--procs", type=int, default=1, help="worker processes (default 1)")
    p.add_argument("--timeout", default="30s", help="per-request timeout (default 30s, ab -s)")
    p.add_argument("--max-time", help="hard deadline for the whole run")


def _add_request_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-k", "--keepalive", action="store_true", help="(default; for ab habits)")
    p.add_argument("--no-keepalive", action="store_true", help="one connection per request")
    p.add_argument("-m", "--method", help="request method (default GET, POST with -p)")
    p.add_argument("-H", "--header", action="append", default=[], help="'Name: value' (repeatable)")
    p.add_argument("-p", "--body-file", help="file holding the request body (ab -p)")
    p.add_argument(
        "-T", "--content-type", default="text/plain", help="body type (default text/plain)"
    )
    p.add_argument("--urls", help="file of URLs, one per line, used round-robin")
    p.add_argument(
        "--locustfile", metavar="FILE", help="locust as the load: -c users, -d time, URL host"
    )
    p.add_argument("--spawn-rate", type=float, help="locust -r (default: all users at once)")


def _add_output_options(p: argparse.ArgumentParser) -> None:
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print a JSON object")
    fmt.add_argument("--csv", action="store_true", help="print a CSV summary row")
    fmt.add_argument("--csv-series", action="store_true", help="print CSV, a row per second")
    p.add_argument("--plot", metavar="FILE", help="write latency charts to an HTML file")
    p.add_argument("--sla", metavar="TERMS", help='objectives, e.g. "p99<200ms,errors<0.1%%"')
    p.add_argument(
        "--progress",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="progress line on stderr (default: when stderr is a terminal)",
    )


def config_from_args(args: argparse.Namespace) -> LoadConfig:
    """Build the ``LoadConfig``; raises BenchConfigError with a one-line message."""
    urls = _read_urls(args.urls) if args.urls else []
    if args.url:
        urls.insert(0, args.url)
    body = _read_file(args.body_file, "-p") if args.body_file else None
    method = args.method or ("POST" if body is not None else "GET")
    return LoadConfig(
        urls=tuple(urls),
        connections=args.connections,
        requests=args.requests,
        duration_s=parse_duration(args.duration) if args.duration else None,
        rate=args.rate,
        procs=args.procs,
        method=method,
        headers=tuple(parse_header(h) for h in args.header),
        body=body,
        content_type=args.content_type,
        keepalive=not args.no_keepalive,
        timeout_s=parse_duration(args.timeout),
        max_time_s=parse_duration(args.max_time) if args.max_time else None,
    )


def _read_file(path: str, flag: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise BenchConfigError(f"cannot read {flag} {path}: {exc.strerror}") from exc


def _read_urls(path: str) -> list[str]:
    text = _read_file(path, "--urls").decode("utf-8", "replace")
    urls = [line.strip() for line in text.splitlines()]
    urls = [u for u in urls if u and not u.startswith("#")]
    if not urls:
        raise BenchConfigError(f"--urls {path} holds no URLs")
    return urls


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point for ``corral bench ARGS``; returns the process exit code."""
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(args_list)
        objectives = parse_sla(args.sla) if args.sla else ()
        config = config_from_args(args)
    except SlaError as exc:
        _say(sys.stderr, f"corral bench: {exc}")
        return EXIT_USAGE
    except _UsageError as exc:
        if exc.message:
            _say(sys.stderr, f"corral bench: {exc.message.strip()}")
        return exc.code
    except BenchConfigError as exc:
        _say(sys.stderr, f"corral bench: {exc}")
        return EXIT_USAGE
    if args.locustfile:
        from corral.bench.locust import bench_main

        return bench_main(args, objectives)
    return _run(args, config, objectives)


def _run(args: argparse.Namespace, config: LoadConfig, objectives: tuple[Objective, ...]) -> int:
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    stop = threading.Event()
    try:
        with _StopOnSigint(stop):
            result = run_load(
                config, stop=stop, on_progress=_progress(sys.stderr) if show else None
            )
    except BenchConfigError as exc:
        _say(sys.stderr, f"corral bench: {exc}")
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    if show:
        sys.stderr.write("\n")
    code = _output(args, config, result)
    if objectives:
        checks = evaluate(objectives, report.measures(result))
        out = sys.stderr if args.json or args.csv or args.csv_series else sys.stdout
        out.write("".join(f"SLA {c.describe()}\n" for c in checks))
        code = code or (EXIT_OK if all_met(checks) else EXIT_FAILED)
    return code


def _output(args: argparse.Namespace, config: LoadConfig, result: LoadResult) -> int:
    if args.json:
        text = report.to_json(config, result) + "\n"
    elif args.csv:
        text = report.to_csv_summary(config, result)
    elif args.csv_series:
        text = report.to_csv_series(result)
    else:
        text = report.to_text(config, result)
    sys.stdout.write(text)
    sys.stdout.flush()
    if args.plot:
        try:
            with open(args.plot, "w", encoding="utf-8") as f:
                f.write(plot.to_html(config, result))
        except OSError as exc:
            _say(sys.stderr, f"corral bench: cannot write --plot {args.plot}: {exc.strerror}")
            return EXIT_USAGE
    ok = result.requests > 0 and not result.worker_failures
    return EXIT_OK if ok else EXIT_FAILED


def _say(stream: TextIO, line: str) -> None:
    stream.write(line.replace("\n", " ") + "\n")


def _progress(stream: TextIO) -> Callable[[Progress], None]:
    def show(p: Progress) -> None:
        if p.elapsed_s - p.last.second < 0.999:
            return  # the run's last, partial second: its count is not a rate
        line = report.progress_line(
            p.elapsed_s, p.requests, p.errors, float(p.last.requests), p.last.latency_ms(99)
        )
        stream.write("\r" + line)
        stream.flush()

    return show


class _StopOnSigint:
    """First ^C sets ``stop`` (the report still prints); the second one interrupts."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.previous = signal.getsignal(signal.SIGINT)
        self.installed = False

    def __enter__(self) -> _StopOnSigint:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._handle)
            self.installed = True
        return self

    def _handle(self, signum: int, frame: types.FrameType | None) -> None:
        self.stop.set()  # only enqueue; the run loop notices within 50 ms
        signal.signal(signal.SIGINT, signal.default_int_handler)

    def __exit__(self, *exc: object) -> None:
        if self.installed:
            previous = self.previous
            signal.signal(signal.SIGINT, signal.SIG_DFL if previous is None else previous)


if __name__ == "__main__":
    raise SystemExit(main())
