"""``corral experiment APP``: argv, refusals, the progress bar, the report files.

Exit status: 0 done; 1 a configuration could not be run (one line on stderr, never a
traceback); 2 bad arguments, an app that cannot be found, or a traffic file that cannot be read;
130 interrupted.

Every server runs in a session of its own (``corral.launch``), so a signal that killed this
process would leave it serving. ``INT``, ``TERM`` and ``HUP`` therefore all become one
``KeyboardInterrupt``: it unwinds through the ``finally`` of the configuration being run, which
stops its server (TERM, wait, KILL the group); later signals are ignored so that stop is not cut
short.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from corral.experiment import page, render, servers, traffic, verdict
from corral.experiment.run import SLICES, Plan, Sampled, Step, run_config

DEFAULT_REQUESTS = 2000
TEXT_WIDTH = 120
INTERRUPTED = 130  # 128 + SIGINT, as a shell reports a Ctrl-C
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_FIND_APP = (
    "import importlib.util, sys\n"
    "sys.path.insert(0, '.')\n"
    "mod, _, attr = sys.argv[1].partition(':')\n"
    "try:\n"
    "    spec = importlib.util.find_spec(mod)\n"
    "except Exception as exc:\n"
    "    sys.exit(f'{type(exc).__name__}: {exc}')\n"
    "if spec is None:\n"
    "    sys.exit(f'no module named {mod!r}')\n"
)


class ExperimentError(Exception):
    """A refusal: one line for the user; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Spec:
    """A parsed command line (also the Python API the tests use)."""

    app: str
    traffic: str | None = None
    workers: int = 2
    requests: int | None = None
    duration_s: float | None = None
    pythons: list[str] = field(default_factory=list)
    presets: list[str] = field(default_factory=lambda: list(servers.CORRAL_PRESETS))
    gunicorn: bool = True
    connections: int = 0
    chdir: str = "."
    budget_gib: float = 0.0
    attribute: bool = True
    serve_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)
    log_dir: str = ""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="corral experiment",
        description="Serve APP once per GC preset (and under gunicorn --preload when it is "
        "installed), drive the same traffic at each, and report memory sharing, capacity, "
        "latency, GC and pymalloc figures with a recommendation.",
    )
    p.add_argument("app", help="the WSGI app, module:callable")
    p.add_argument(
        "--traffic",
        help="comma-separated paths/URLs, a file of URLs, a combined-format access log "
        "(its GET paths are replayed), or a locustfile (needs the locust command); default /",
    )
    p.add_argument("-w", "--workers", type=int, default=2, help="workers per server (2)")
    bound = p.add_mutually_exclusive_group()
    bound.add_argument(
        "-n", "--requests", type=int, help=f"requests per configuration ({DEFAULT_REQUESTS})"
    )
    bound.add_argument("-d", "--duration", type=float, help="seconds of traffic per configuration")
    p.add_argument(
        "--python",
        action="append",
        default=[],
        metavar="PATH",
        help="interpreter(s) to run under (repeatable; default this one)",
    )
    p.add_argument(
        "--presets",
        default=",".join(servers.CORRAL_PRESETS),
        help="GC presets to compare (all four)",
    )
    p.add_argument(
        "--no-gunicorn", action="store_true", help="skip the gunicorn --preload comparison"
    )
    p.add_argument(
        "-c", "--connections", type=int, default=0, help="client connections (2 per worker)"
    )
    p.add_argument("--chdir", default=".", help="directory to import the app from (.)")
    p.add_argument(
        "--budget-gib",
        type=float,
        default=0.0,
        help="host memory for the capacity figure (this host's MemTotal)",
    )
    p.add_argument(
        "--no-attribute",
        action="store_true",
        help="skip the copy-on-write attribution of one worker per preset",
    )
    p.add_argument(
        "--serve-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for corral serve (repeatable)",
    )
    p.add_argument("--json", metavar="FILE", help="write the report as JSON")
    p.add_argument("--html", metavar="FILE", help="write the report as a self-contained HTML page")
    p.add_argument(
        "--log-dir", default="", help="keep each server's log here (default: a temporary directory)"
    )
    return p


def spec_from_args(args: argparse.Namespace) -> Spec:
    presets = [x.strip() for x in args.presets.split(",") if x.strip()]
    bad = [x for x in presets if x not in servers.CORRAL_PRESETS]
    if bad or not presets:
        raise ExperimentError(
            f"--presets: unknown {', '.join(bad) or '(none)'}; "
            f"choose from {', '.join(servers.CORRAL_PRESETS)}"
        )
    if (
        args.workers < 1
        or args.connections < 0
        or (args.requests is not None and args.requests < 1)
    ):
        raise ExperimentError("--workers and --requests must be >= 1, --connections >= 0")
    if args.duration is not None and args.duration <= 0:
        raise ExperimentError("--duration must be > 0")
    if args.budget_gib < 0:
        raise ExperimentError("--budget-gib must be > 0 (or left out: this host's MemTotal)")
    return Spec(
        app=args.app,
        traffic=args.traffic,
        workers=args.workers,
        requests=args.requests,
        duration_s=args.duration,
        pythons=list(args.python),
        presets=presets,
        gunicorn=not args.no_gunicorn,
        connections=args.connections,
        chdir=args.chdir,
        budget_gib=args.budget_gib,
        attribute=not args.no_attribute,
        serve_args=list(args.serve_arg),
        log_dir=args.log_dir,
    )


def host_memory_bytes() -> int:
    with open("/proc/meminfo", encoding="ascii") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    return 8 << 30


def check_app(python: str, app: str, chdir: str) -> None:
    """Refuse at once when the app's module cannot be found (the import itself is the
    server's job: a failure there is reported with the server's last log line)."""
    if ":" in app and not app.partition(":")[2]:
        raise ExperimentError(f"bad app {app!r}: expected module:callable")
    if not os.path.isdir(chdir):
        raise ExperimentError(f"--chdir {chdir}: no such directory")
    try:
        done = subprocess.run(
            [python, "-c", _FIND_APP, app], cwd=chdir, capture_output=True, text=True, timeout=60
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ExperimentError(f"cannot run {python}: {exc}") from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or ["unknown error"]
        raise ExperimentError(f"cannot import app {app}: {lines[-1]}")


def _interpreter(python: str) -> str:
    """An absolute path (servers run from --chdir); a bare name is looked up on PATH. Not
    resolved through symlinks: a virtual environment's python is a link to the base one."""
    if os.sep in python:
        return os.path.abspath(python)
    found = shutil.which(python)
    if found is None:
        raise ExperimentError(f"--python {python}: not found on PATH")
    return found


def _log_dir(root: str, index: int, version: str, pythons: int) -> Path | None:
    """Where the servers of one interpreter log: ``--log-dir``, or a folder of it per
    interpreter when there are several (their logs would otherwise share names)."""
    if not root:
        return None
    folder = Path(root) if pythons == 1 else Path(root) / f"{index + 1}-python{version}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ExperimentError(f"--log-dir {root}: {exc.strerror}") from None
    return folder


@dataclass(frozen=True)
class Prepared:
    """A checked spec: the traffic, the budget, and per interpreter its version and the
    configurations to run. Everything that can be refused is refused here, before any server
    starts or the progress bar draws."""

    traffic: traffic.Traffic
    budget: int
    chdir: str
    runs: list[tuple[str, str, list[str], str]]  # (python, version, configs, gunicorn -k)
    notes: list[str]


def prepare(spec: Spec) -> Prepared:
    try:
        load = traffic.load(spec.traffic)
    except traffic.TrafficError as exc:
        raise ExperimentError(str(exc)) from None
    budget = int(spec.budget_gib * (1 << 30)) if spec.budget_gib > 0 else host_memory_bytes()
    pythons = [_interpreter(p) for p in spec.pythons] or [servers.default_python()]
    chdir = os.path.abspath(spec.chdir)
    runs, notes = [], []
    for index, python in enumerate(pythons):
        try:
            version = servers.python_version(python)
        except servers.ServerError as exc:
            raise ExperimentError(str(exc)) from None
        check_app(python, spec.app, chdir)
        _log_dir(spec.log_dir, index, version, len(pythons))  # refused now, not after a run
        names, worker = list(spec.presets), "sync"
        if spec.gunicorn and servers.has_gunicorn(python):
            worker, why = _gunicorn_worker(spec, python, chdir)
            if why:
                notes.append(why)
            else:
                names.append(servers.GUNICORN)
        elif spec.gunicorn:
            notes.append(f"gunicorn is not importable by {python}: no gunicorn comparison")
        runs.append((python, version, names, worker))
    return Prepared(load, budget, chdir, runs, notes)


def _gunicorn_worker(spec: Spec, python: str, chdir: str) -> tuple[str, str]:
    """gunicorn's worker class for this app (sync; uvicorn's for an ASGI app), or why the
    comparison is skipped: a sync worker would answer every request of an ASGI app with 500."""
    opts = servers.Options(spec.app, spec.workers, python, chdir, spec.env)
    if servers.app_interface(opts) != "asgi":
        return "sync", ""
    worker = servers.asgi_gunicorn_worker(python)
    if worker is None:
        return "", (
            f"{spec.app} is an ASGI app and {python} cannot import uvicorn's gunicorn worker "
            "(pip install uvicorn-worker): no gunicorn comparison"
        )
    return worker, ""


def _labelled(on_step: Step | None, version: str, ready: Prepared) -> Step | None:
    """With several interpreters, each one's configurations get a progress bar of their own."""
    if on_step is None or len(ready.runs) == 1:
        return on_step
    step = on_step
    return lambda name, done, total: step(f"{name} ({version})", done, total)


def check_outputs(*paths: str | None) -> None:
    """Refuse a report file that could not be written, before minutes of measuring."""
    for path in paths:
        if not path:
            continue
        target = Path(path)
        parent = target.parent if str(target.parent) else Path(".")
        if target.is_dir():
            raise ExperimentError(f"cannot write {path}: it is a directory")
        if not parent.is_dir():
            raise ExperimentError(f"cannot write {path}: no directory {parent}")
        if not os.access(parent, os.W_OK) or (target.exists() and not os.access(target, os.W_OK)):
            raise ExperimentError(f"cannot write {path}: permission denied")


def run_experiment(
    spec: Spec,
    on_step: Step | None = None,
    on_sample: Sampled | None = None,
    prepared: Prepared | None = None,
) -> dict[str, Any]:
    """Every configuration under every interpreter; the report as a dict."""
    ready = prepared or prepare(spec)
    load, budget, chdir = ready.traffic, ready.budget, ready.chdir
    groups, notes = [], list(ready.notes)
    started = time.monotonic()
    for index, (python, version, names, worker) in enumerate(ready.runs):
        opts = servers.Options(
            spec.app,
            spec.workers,
            python,
            chdir,
            spec.env,
            tuple(spec.serve_args),
            load.paths[0] if load.paths else "/",
            worker,
        )
        plan = Plan(
            opts,
            load,
            spec.requests if spec.duration_s is None else None,
            spec.duration_s,
            spec.connections or 2 * spec.workers,
            spec.attribute,
            _log_dir(spec.log_dir, index, version, len(ready.runs)),
        )
        if plan.requests is None and plan.duration_s is None:
            plan = Plan(
                opts, load, DEFAULT_REQUESTS, None, plan.connections, plan.attribute, plan.log_dir
            )
        configs = []
        for name in names:
            try:
                config = run_config(name, plan, _labelled(on_step, version, ready), on_sample)
            except servers.ServerError as exc:
                raise ExperimentError(str(exc), 1) from None
            config["attribution"] = config["attribution"] if name != servers.GUNICORN else None
            config["summary"] = verdict.summarise(config, budget)
            config["malloc_summary"] = render.malloc_summary(config)
            configs.append(config)
        rec = verdict.recommend(configs, spec.app, spec.workers, spec.chdir, spec.serve_args)
        groups.append(
            {"python": python, "version": version, "configs": configs, "recommendation": rec}
        )
    return {
        "version": 1,
        "app": spec.app,
        "traffic": load.describe(),
        "workers": spec.workers,
        "connections": spec.connections or 2 * spec.workers,
        "budget_bytes": budget,
        "slices": SLICES,
        "took_s": round(time.monotonic() - started, 2),
        "pythons": groups,
        "notes": notes,
    }


def _with_progress(spec: Spec, prepared: Prepared) -> dict[str, Any]:
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description:<22}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} slices"),
        TimeElapsedColumn(),
    )
    bar = Progress(*columns, console=console, transient=False)
    tasks: dict[str, Any] = {}

    def step(name: str, done: int, total: int) -> None:
        if not tasks:  # drawn from the first slice on: a refusal before it is one clean line
            bar.start()
        if name not in tasks:
            tasks[name] = bar.add_task(f"{name}", total=total)
        bar.update(tasks[name], completed=done)

    try:
        return run_experiment(spec, step, prepared=prepared)
    finally:
        if tasks:
            bar.stop()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """The first stop signal: unwind (every server is stopped on the way); ignore the rest."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: Sequence[str]) -> int:
    """``corral experiment APP [options]``."""
    try:
        args = _parser().parse_args(list(argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    for sig in STOP_SIGNALS:
        signal.signal(sig, _interrupt)
    try:
        spec = spec_from_args(args)
        check_outputs(args.json, args.html)
        prepared = prepare(spec)
        report = _with_progress(spec, prepared)
    except ExperimentError as exc:
        sys.stderr.write(f"corral experiment: {exc}\n")
        return exc.code
    except KeyboardInterrupt as exc:
        why = str(exc) or "SIGINT"
        sys.stderr.write(f"corral experiment: interrupted by {why}; its servers were stopped\n")
        return INTERRUPTED
    from rich.console import Console

    # a file or a pipe gets lines wide enough for the tables (rich would take 80 columns)
    render.print_text(report, Console(width=None if sys.stdout.isatty() else TEXT_WIDTH))
    for path, text in ((args.json, render.to_json(report)), (args.html, page.to_html(report))):
        if path:
            try:
                Path(path).write_text(text, encoding="utf-8")
            except OSError as exc:
                sys.stderr.write(f"corral experiment: cannot write {path}: {exc.strerror}\n")
                return 1
    return 0
