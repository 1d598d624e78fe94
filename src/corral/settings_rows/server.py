"""The server section of the settings table (``corral.config`` joins the sections)."""

from __future__ import annotations

from corral.choices import WorkerClass
from corral.settings_core import (
    Setting,
    _bind_list,
    _key_values,
    _non_negative,
    _octal,
    _positive,
    _root_path,
    _worker_class,
)

S = Setting
ROWS: tuple[Setting, ...] = (
    S(
        "app",
        str,
        "",
        "WSGI application as module:attr or module:factory(); empty = the built-in demo app.",
        flags=("app",),
        metavar="APP",
        aliases=("wsgi_app",),
    ),
    S(
        "bind",
        list,
        ["127.0.0.1:8000"],
        "Address to listen on: HOST:PORT, [IPv6]:PORT or "
        "unix:PATH. Repeat for several. Port 0 picks a free port (printed when ready).",
        flags=("-b", "--bind"),
        validator=_bind_list,
        metavar="ADDR",
    ),
    S(
        "workers",
        int,
        0,
        "Number of worker processes; 0 means one per CPU.",
        flags=("-w", "--workers"),
        validator=_non_negative,
        default_doc="0 (= CPU count)",
    ),
    S("chdir", str, "", "Change to this directory before loading the app.", metavar="DIR"),
    S(
        "pythonpath",
        str,
        "",
        "Comma-separated directories put first on sys.path before the app is loaded "
        "(relative ones after chdir).",
        metavar="DIRS",
    ),
    S(
        "config",
        str,
        "",
        "Config file: TOML (keys are the setting names), or a gunicorn-style Python file "
        "(*.py: settings and server hooks as module variables).",
        flags=("-c", "--config"),
        metavar="FILE",
    ),
    S(
        "root_path",
        str,
        "",
        "SCRIPT_NAME prefix the app is mounted under (e.g. /api).",
        validator=_root_path,
    ),
    S("backlog", int, 2048, "listen() backlog (gunicorn's default).", validator=_positive),
    S(
        "threads",
        int,
        1,
        "Threads per worker running the app (1 = the app runs in the I/O "
        "loop's thread, one request at a time; more suits I/O-bound apps).",
        validator=_positive,
    ),
    S(
        "worker_class",
        WorkerClass,
        WorkerClass.SYNC,
        "gunicorn's worker class: sync and gthread both mean corral's WSGI worker (threads > 1 "
        "runs the app on a thread pool); asgi and uvicorn.workers.UvicornWorker its ASGI worker "
        "(interface asgi); others are refused.",
        aliases=("-k",),
        convert=_worker_class,
    ),
    S(
        "worker_connections",
        int,
        1000,
        "Most open client connections per worker (gunicorn --worker-connections 1000); "
        "past it new connections wait in the listen backlog, except that a waiting client "
        "takes the place of the oldest connection that never sent a byte (as nginx does).",
        validator=_positive,
    ),
    S(
        "post_fork",
        str,
        "",
        "Callable (module:function) run in each worker after fork, before "
        "it serves, e.g. to open per-process connections; if it raises, the worker fails to "
        "boot.",
        metavar="CALLABLE",
    ),
    S(
        "preload",
        bool,
        False,
        "Accepted for gunicorn's --preload and does nothing: corral always preloads (the zygote "
        "imports the app once per generation).",
        aliases=("preload_app",),
    ),
    S(
        "reload",
        bool,
        False,
        "Development: when a .py file under the app's directory (chdir) changes, reload as HUP "
        "does (new code in a new generation, no request lost; a broken file leaves the old one "
        "serving). Polls once a second.",
    ),
    S(
        "reload_extra_files",
        list,
        [],
        "More files --reload watches (templates, config); repeatable.",
        flags=("--reload-extra-file",),
        metavar="PATH",
    ),
    S(
        "pidfile",
        str,
        "",
        "Write the master's pid to this file. During a USR2 upgrade the old master's is renamed "
        "to FILE.oldbin, as gunicorn does.",
        metavar="FILE",
        aliases=("-p", "--pid"),
    ),
    S(
        "reexec_stop_old",
        bool,
        True,
        "After USR2, the new master sends TERM to the old one as soon as its workers are ready: "
        "one signal upgrades. Off: both serve until you stop the old master yourself "
        "(gunicorn's USR2, then TERM to the pid in PIDFILE.oldbin).",
    ),
    S(
        "user",
        str,
        "",
        "Run workers as this user (name or uid) after binding; empty = do not switch.",
        aliases=("-u",),
    ),
    S(
        "group",
        str,
        "",
        "Run workers as this group (name or gid) after binding; empty = do not switch.",
        aliases=("-g",),
    ),
    S(
        "umask",
        int,
        -1,
        "umask for files and unix sockets corral creates, e.g. 0o007 or 007 (octal); "
        "-1 = keep the inherited one.",
        aliases=("-m",),
        convert=_octal,
        default_doc="-1 (inherited)",
    ),
    S(
        "env",
        list,
        [],
        "KEY=VALUE put into the environment before the app is loaded (repeatable).",
        flags=("-e", "--env"),
        validator=_key_values,
        metavar="KEY=VALUE",
        aliases=("raw_env",),
    ),
    S(
        "ready_fd",
        int,
        -1,
        "Write 'ready <addresses>' to this inherited fd once every worker "
        "serves (for supervisors and tests).",
        validator=None,
        section="server",
    ),
)
