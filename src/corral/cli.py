"""The ``corral`` command: the only place that parses argv and exits.

Subcommands (the table ``COMMANDS`` below is the list): ``serve`` (the server; its flags come
from the settings table), ``bench`` (load generator), ``chaos`` (fault scenarios under load),
``top`` (terminal view of a running server), ``cow`` (copy-on-write report of its workers),
``experiment`` (serve an app once per GC preset under the same traffic and recommend one),
``settings`` (print the effective configuration as TOML, or the settings reference as Markdown).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from corral import __version__, cliargs, config, hooks
from corral.master import exitcodes
from corral.tlsconfig import build_context

LOG_FORMAT = "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"


def _serve_parser(prog: str = "corral serve") -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Serve a WSGI app with a preloading master and forked workers.",
        allow_abbrev=False,  # --timeout is gunicorn's flag, not a prefix of --timeout-s
    )
    cliargs.add_arguments(parser)
    parser.add_argument(
        "--print-config", action="store_true", help="print the effective settings as TOML and exit"
    )
    parser.add_argument(
        "--check-config",
        action="store_true",
        help="check the settings and TLS files, import the app in a throwaway process, and exit "
        "(0: ready to serve; 4: the app does not import)",
    )
    cliargs.add_gunicorn_flags(parser)
    return parser


GUNICORN_CONF = "gunicorn.conf.py"  # what gunicorn reads when -c is not given


def serve(argv: Sequence[str]) -> int:
    args = _serve_parser().parse_args(list(argv))
    if args.config is None and "CORRAL_CONFIG" not in os.environ and os.path.isfile(GUNICORN_CONF):
        args.config = GUNICORN_CONF  # as gunicorn does, so switching is one word
    try:
        cfg, found_hooks = config.load_with_hooks(args)
    except config.ConfigError as exc:
        return _fail(str(exc))
    if args.print_config:
        sys.stdout.write(cfg.to_toml())
        return exitcodes.OK
    try:
        _setup_logging(cfg)
    except OSError as exc:
        return _fail(f"cannot open log file {exc.filename}: {exc.strerror}")
    try:  # a missing or mismatched certificate is a one-line error, before anything binds
        build_context(cfg)
    except ValueError as exc:
        return _fail(f"TLS: {exc}")
    _prepare_process(cfg)
    if args.check_config:
        return _check_config(cfg)
    hooks.install(found_hooks)
    try:
        hooks.on_starting(cfg)
    except Exception as exc:
        return _fail(f"the on_starting hook raised {exc!r}", exitcodes.ERROR)
    from corral.master.arbiter import Arbiter

    arbiter = Arbiter(cfg)
    try:
        arbiter.setup()
    except (OSError, ValueError) as exc:
        return _fail(f"cannot start: {exc}", exitcodes.ERROR)
    code = arbiter.run()
    hooks.on_exit(cfg)
    return code


def _check_config(cfg: config.Config) -> int:
    from corral.master.appcheck import check_app

    code, line = check_app(cfg)
    if code != exitcodes.OK:
        return _fail(f"check-config: {line}", code)
    sys.stdout.write(f"corral: configuration OK; {line}\n")
    return exitcodes.OK


def _prepare_process(cfg: config.Config) -> None:
    """What the master sets before anything forks: -e variables; say --preload is a no-op."""
    for item in cfg.env:
        key, _, value = item.partition("=")
        os.environ[key] = value
    if cfg.preload:
        logging.getLogger("corral").info(
            "--preload/preload_app: nothing to do, corral always preloads the app (the zygote)"
        )


def settings(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(prog="corral settings", description="Show settings.")
    parser.add_argument(
        "--markdown", action="store_true", help="print the settings reference (docs/settings.md)"
    )
    parser.add_argument(
        "--python",
        action="store_true",
        help="print the typed settings module (src/corral/_settings_gen.py)",
    )
    parser.add_argument(
        "--migrating", action="store_true", help="print the gunicorn migration table"
    )
    args, rest = parser.parse_known_args(list(argv))
    if args.migrating:
        from corral import settings_codegen as gen

        sys.stdout.write(gen.migrating_markdown())
        return exitcodes.OK
    if args.markdown or args.python:
        from corral import settings_codegen as gen

        sys.stdout.write(gen.settings_markdown() if args.markdown else gen.settings_python())
        return exitcodes.OK
    sargs = _serve_parser("corral settings").parse_args(rest)
    try:
        sys.stdout.write(config.load(sargs).to_toml())
    except config.ConfigError as exc:
        return _fail(str(exc))
    return exitcodes.OK


def _bench(argv: Sequence[str]) -> int:
    from corral.bench.cli import main as bench_main

    return bench_main(list(argv))


def _chaos(argv: Sequence[str]) -> int:
    if "--fleet" in argv:  # a fleet behind a balancer: its own options (docs/chaos.md)
        from corral.chaos.fleet_cli import main as fleet_main

        return fleet_main(list(argv))
    from corral.chaos.cli import main as chaos_main

    return chaos_main(list(argv))


def _cow(argv: Sequence[str]) -> int:
    from corral.memory.cowcli import main as cow_main

    return cow_main(list(argv))


def _experiment(argv: Sequence[str]) -> int:
    from corral.experiment.cli import main as experiment_main

    return experiment_main(list(argv))


def _top(argv: Sequence[str]) -> int:
    from corral.stats.top import main as top_main

    return top_main(list(argv))


COMMANDS: dict[str, tuple[Callable[[Sequence[str]], int], str]] = {
    "serve": (serve, "run the server (default demo app when no APP is given)"),
    "bench": (_bench, "load-test an HTTP server (closed or open model)"),
    "chaos": (_chaos, "fault scenarios under load, checked against an SLA"),
    "top": (_top, "live terminal view of a running server's stats"),
    "cow": (_cow, "copy-on-write report of a running server's workers"),
    "experiment": (_experiment, "compare the GC presets on an app under the same traffic"),
    "settings": (settings, "print the effective settings or the settings reference"),
}


def _usage() -> str:
    lines = [
        f"corral {__version__}: a prefork WSGI server",
        "",
        "usage: corral COMMAND [options]",
        "",
        "commands:",
    ]
    lines += [f"  {name:<10} {text}" for name, (_, text) in COMMANDS.items()]
    lines += ["", "Run 'corral COMMAND --help' for a command's options."]
    return "\n".join(lines) + "\n"


def _fail(message: str, code: int = exitcodes.USAGE) -> int:
    sys.stderr.write(f"corral: error: {message}\n")
    return code


def _setup_logging(cfg: config.Config) -> None:
    """corral's log to stderr or error_log_file; the access log, when given a file, to it alone
    (bare lines, as gunicorn writes them). USR1 reopens both (FileHandlers)."""
    path = cfg.error_log_file
    main = logging.StreamHandler(sys.stderr) if path in ("", "-") else logging.FileHandler(path)
    logging.basicConfig(level=cfg.log_level.upper(), format=LOG_FORMAT, handlers=[main])
    if cfg.access_log_file:
        path = cfg.access_log_file
        handler = logging.StreamHandler(sys.stdout) if path == "-" else logging.FileHandler(path)
        handler.setFormatter(logging.Formatter("%(message)s"))
        access = logging.getLogger("corral.access")
        access.addHandler(handler)
        access.setLevel(logging.INFO)
        access.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        sys.stdout.write(_usage())
        return exitcodes.OK
    if args[0] in ("-V", "--version"):
        sys.stdout.write(f"corral {__version__}\n")
        return exitcodes.OK
    command = COMMANDS.get(args[0])
    if command is None:
        return _fail(f"unknown command {args[0]!r}; try 'corral --help'")
    try:
        return command[0](args[1:])
    except KeyboardInterrupt:
        return 130
