"""``corral chaos`` argv: parsing and cross-validation (``_Usage``, never ``sys.exit``: cli.py
owns the exit), the target's lifetime (started and always stopped, or attached), SIGTERM
turned into the same cleanup as ^C, and the exit code.

Exit codes: 0 all verdicts pass; 1 a scenario expectation, the SLA or a cross-check failed;
2 bad usage; 3 the target could not be started or reached; 130 interrupted (^C or SIGTERM,
after cleanup).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

from corral.bench.config import BenchConfigError
from corral.bench.sla import Objective, SlaError, parse_sla
from corral.chaos.report import render_text, report_dict
from corral.chaos.session import Report, run_session
from corral.chaos.spec import (
    DEFAULT_BLOAT_LIMIT_MIB,
    DEFAULT_BLOAT_MIB,
    DEFAULT_CONNECTIONS,
    DEFAULT_PHASE_S,
    DEFAULT_REQUEST_TIMEOUT_S,
    DEFAULT_SLOWLORIS,
    DEFAULT_WORKER_TIMEOUT_S,
    DEFAULT_WORKERS,
    PROGRESS,
    SLOWLORIS_P99_FACTOR,
    VERIFY_TIMEOUT_S,
    ChaosError,
    ScenarioSpec,
    parse_scenario,
)
from corral.chaos.target import (
    Target,
    attach,
    serve_command,
    start_server,
    stop_server,
)

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_ERROR, EXIT_INTERRUPTED = 0, 1, 2, 3, 130

# -------------------------------------------------------------------------------------- CLI

EPILOG = """\
scenarios (repeatable; each is one phase of --phase-s after a baseline phase):
  kill[:every_s]   SIGKILL a random worker (once, or every every_s); bound: its connections
  hang             SIGSTOP a worker; it must be replaced after the server's --timeout-s
  bloat            GET --bloat-url so a worker crosses --max-worker-memory-mib; a 'memory'
                   recycle must follow, with 0 failures
  reload[:every_s] SIGHUP the master; 0 failures, every old worker replaced
  scale            SIGTTIN then SIGTTOU; 0 failures, the worker count follows
  slowloris[:n]    n connections trickle a request head; 0 failures, p99 near baseline
  all              every scenario once, in that order
sla: comma-separated terms p50|p90|p99|p999|max < DURATION (us, ms, s), errors < N or N%,
  rps > N; evaluated on the whole run (exit code) and on each phase (reported).
exit: 0 pass, 1 a scenario, the SLA or a cross-check failed, 2 bad usage, 3 target error.
"""


class _Usage(Exception):
    """Stop parsing: bad usage (code 2, message for stderr) or --help done (code 0)."""

    def __init__(self, message: str, code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.code = code


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting: cli.py owns the process's exit."""

    def error(self, message: str) -> Any:
        raise _Usage(message)

    def exit(self, status: int = 0, message: str | None = None) -> Any:
        raise _Usage(message or "", status)


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="corral chaos",
        description="Fault scenarios against a corral master under load, with an SLA verdict.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _target_args(p.add_argument_group("target (start a server, or attach: --pid and --url)"))
    _load_args(p.add_argument_group("load"))
    _scenario_args(p.add_argument_group("scenarios"))
    out = p.add_argument_group("verdict and output")
    out.add_argument("--sla", metavar="TERMS", help='objectives, e.g. "p99<200ms,errors<0.1%%"')
    out.add_argument("--json", action="store_true", help="print the report as JSON")
    out.add_argument("--quiet", "-q", action="store_true", help="no progress lines on stderr")
    return p


def _target_args(g: argparse._ArgumentGroup) -> None:
    g.add_argument("--app", metavar="MODULE:APP", help="start corral serve APP ('' = demo app)")
    g.add_argument(
        "-w",
        "--workers",
        type=int,
        default=DEFAULT_WORKERS,
        metavar="N",
        help=f"workers of the started server (default {DEFAULT_WORKERS})",
    )
    g.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra corral serve argument, repeatable (write --serve-arg=--x=1)",
    )
    g.add_argument(
        "--worker-timeout-s",
        type=float,
        default=DEFAULT_WORKER_TIMEOUT_S,
        metavar="S",
        help="the started server's --timeout-s (default %(default)s)",
    )
    g.add_argument("--server-log", metavar="FILE", help="keep the started server's log here")
    g.add_argument("--pid", type=int, help="attach: the running master's pid")
    g.add_argument("--url", help="attach: the server's URL, http://127.0.0.1:PORT/")
    g.add_argument("--stats", metavar="HOST:PORT", help="attach: the master's stats server")


def _load_args(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "-c",
        "--connections",
        type=int,
        default=DEFAULT_CONNECTIONS,
        metavar="N",
        help="client connections (default %(default)s)",
    )
    g.add_argument("--rate", type=float, metavar="RPS", help="open model: requests per second")
    g.add_argument("--path", default="/", help="path to load (default /)")
    g.add_argument(
        "--request-timeout-s",
        type=float,
        default=DEFAULT_REQUEST_TIMEOUT_S,
        metavar="S",
        help="per-request timeout (default %(default)s)",
    )


def _scenario_args(g: argparse._ArgumentGroup) -> None:
    g.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="NAME[:ARG]",
        help="a fault phase (see below); repeatable",
    )
    g.add_argument(
        "--phase-s",
        type=float,
        default=DEFAULT_PHASE_S,
        metavar="S",
        help="length of each phase, baseline included (default %(default)s)",
    )
    g.add_argument(
        "--max-time-s",
        type=float,
        metavar="S",
        help="hard bound on the session (default: phases + 20 s each + 30 s)",
    )
    g.add_argument("--seed", type=int, help="seed for choosing victim workers")
    g.add_argument(
        "--hang-wait-s",
        type=float,
        metavar="S",
        help="time a hung worker has to be replaced (default: timeout + 10 s)",
    )
    g.add_argument(
        "--bloat-url",
        metavar="PATH|URL",
        help="request that grows a worker (default /__bloat?mib=N, the demo app's)",
    )
    g.add_argument(
        "--bloat-mib",
        type=int,
        default=DEFAULT_BLOAT_MIB,
        metavar="N",
        help="N for the default bloat URL (default %(default)s)",
    )
    g.add_argument(
        "--bloat-limit-mib",
        type=float,
        default=DEFAULT_BLOAT_LIMIT_MIB,
        metavar="M",
        help="the started server's --max-worker-memory-mib (default %(default)s)",
    )
    g.add_argument(
        "--bloat-wait-s",
        type=float,
        default=VERIFY_TIMEOUT_S,
        metavar="S",
        help="time the memory recycle has to happen (default %(default)s)",
    )
    g.add_argument(
        "--slowloris-n",
        type=int,
        default=DEFAULT_SLOWLORIS,
        metavar="N",
        help="slow connections when slowloris has no :n (default %(default)s)",
    )
    g.add_argument(
        "--slowloris-p99-factor",
        type=float,
        default=SLOWLORIS_P99_FACTOR,
        metavar="X",
        help="allowed p99 vs baseline under slowloris (default %(default)s, or +50 ms)",
    )


def parse_args(
    argv: list[str],
) -> tuple[argparse.Namespace, list[ScenarioSpec], tuple[Objective, ...]]:
    """Parse and cross-validate argv; ``_Usage`` for anything wrong."""
    opts = build_parser().parse_args(argv)
    specs = [spec for text in opts.scenario for spec in _scenario(text)]
    objectives = _sla(opts.sla) if opts.sla is not None else ()
    attach_mode = opts.pid is not None or opts.url is not None
    if attach_mode and (opts.pid is None or opts.url is None or opts.app is not None):
        raise _Usage("attach needs both --pid and --url, and no --app")
    if not attach_mode and opts.app is None:
        raise _Usage("give --app MODULE:APP (or --app '' for the demo) or --pid and --url")
    if any(sp.name == "bloat" for sp in specs) and attach_mode and opts.stats is None:
        raise _Usage("bloat verifies its recycle through /stats: give --stats")
    for name in ("workers", "connections", "slowloris_n", "bloat_mib"):
        if getattr(opts, name) < 1:
            raise _Usage(f"--{name.replace('_', '-')} must be at least 1")
    for name in ("phase_s", "worker_timeout_s", "request_timeout_s", "bloat_wait_s"):
        if not getattr(opts, name) > 0:
            raise _Usage(f"--{name.replace('_', '-')} must be greater than zero")
    if opts.hang_wait_s is None:
        base = opts.worker_timeout_s if not attach_mode else 30.0  # corral's default timeout
        opts.hang_wait_s = base + 10.0
    return opts, specs, objectives


def _scenario(text: str) -> list[ScenarioSpec]:
    try:
        return parse_scenario(text)
    except ValueError as exc:
        raise _Usage(str(exc)) from None


def _sla(text: str) -> tuple[Objective, ...]:
    try:
        return parse_sla(text)
    except SlaError as exc:
        raise _Usage(str(exc)) from None


@contextlib.contextmanager
def target_for(opts: argparse.Namespace, specs: list[ScenarioSpec]) -> Iterator[Target]:
    """The target to test: started here (and always stopped again) or attached to."""
    if opts.pid is not None:
        yield attach(opts.pid, opts.url, opts.stats)
        return
    bloat = any(sp.name == "bloat" for sp in specs)
    with tempfile.TemporaryDirectory(prefix="corral-chaos-") as tmp:
        log = Path(opts.server_log) if opts.server_log else Path(tmp) / "corral-serve.log"
        target = start_server(lambda fd: serve_command(opts, fd, bloat), log)
        target.workers = len(target.worker_pids())  # ready: all serve (--serve-arg may set -w)
        try:
            yield target
        finally:
            stop_server(target)


def main(argv: list[str], stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    """``corral chaos``: returns the exit code (never raises for usage or target errors)."""
    out, err = stdout or sys.stdout, stderr or sys.stderr
    try:
        opts, specs, objectives = parse_args(argv)
    except _Usage as exc:
        if exc.code == EXIT_USAGE:
            print(f"corral chaos: {exc}", file=err)
        return exc.code

    def say(msg: str) -> None:
        if not opts.quiet:
            print(f"chaos: {msg}", file=err, flush=True)

    try:
        with _term_interrupts():
            report = _session(opts, specs, objectives, say)
    except (ChaosError, BenchConfigError) as exc:
        print(f"corral chaos: {exc}", file=err)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("corral chaos: interrupted (cleanup done)", file=err)
        return EXIT_INTERRUPTED
    text = json.dumps(report_dict(report), indent=2) + "\n" if opts.json else render_text(report)
    out.write(text)
    return EXIT_OK if report.ok else EXIT_FAILED


def _session(
    opts: argparse.Namespace,
    specs: list[ScenarioSpec],
    objectives: tuple[Objective, ...],
    say: PROGRESS,
) -> Report:
    with target_for(opts, specs) as target:
        say(f"target {target.url} (master {target.pid}, {target.workers} workers)")
        report = run_session(target, opts, specs, objectives, say)
        status = stop_server(target)  # inside: a server that will not stop is a finding
        if status not in (None, 0):
            report.problems.append(f"corral serve exited with status {status} on TERM")
    return report


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextlib.contextmanager
def _term_interrupts() -> Iterator[None]:
    """SIGTERM (a CI job cancelled) unwinds like ^C, so cleanup still stops the server chaos
    started in its own session and resumes any worker it stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
