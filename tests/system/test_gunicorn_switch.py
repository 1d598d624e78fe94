"""A gunicorn deployment switched to corral by one word: the same command line, the same
``gunicorn.conf.py`` (Django-shaped project, post_fork(server, worker) closing DB connections)."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from harness import start_corral, wait_for, worker_pids

pytestmark = pytest.mark.slow

WSGI = '''
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "myproj.settings")

from myproj import db


def application(environ, start_response):
    body = f"{os.environ['DJANGO_SETTINGS_MODULE']} {os.getpid()} {db.state()}\\n".encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
'''

DB = '''
import os

_owner = os.getpid()  # a connection opened at import, in the preloading process


def close_all():  # django.db.connections.close_all(): the child must not share the socket
    global _owner
    _owner = None


def state():
    return "fresh" if _owner is None else f"inherited-from-{_owner}"
'''

CONF = '''
import multiprocessing
import os

workers = 2
timeout = 30
keepalive = 5
accesslog = "-"
access_log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s" %(D)s'
loglevel = "info"
max_requests = 1000
max_requests_jitter = 50
_markers = os.environ["MARKERS"]


def _mark(name, text):
    with open(os.path.join(_markers, name), "w") as f:
        f.write(text)


def on_starting(server):
    _mark("on_starting", str(server.pid))


def when_ready(server):
    _mark("when_ready", f"{server.pid} {server.cfg.workers} {server.cfg.keepalive}")


def post_fork(server, worker):
    from myproj import db

    db.close_all()
    server.log.info("worker spawned (pid: %s)", worker.pid)
    _mark(f"post_fork.{worker.pid}", f"{server.pid} {worker.age}")


def worker_exit(server, worker):
    _mark(f"worker_exit.{worker.pid}", str(server.pid))


def on_exit(server):
    _mark("on_exit", str(server.pid))
'''

# What the team ran, with `gunicorn` as its first word (port 0: the test picks no fixed port).
GUNICORN_COMMAND = (
    "gunicorn myproj.wsgi -c gunicorn.conf.py --bind 127.0.0.1:0 --workers 2 --timeout 30 "
    "--keep-alive 5 --graceful-timeout 20 -e DJANGO_SETTINGS_MODULE=myproj.settings_prod "
    "--access-logfile - --error-logfile - --preload"
)


def _project(root: Path) -> Path:
    pkg = root / "myproj"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "wsgi.py").write_text(textwrap.dedent(WSGI))
    (pkg / "db.py").write_text(textwrap.dedent(DB))
    (root / "gunicorn.conf.py").write_text(textwrap.dedent(CONF))
    markers = root / "markers"
    markers.mkdir()
    return markers


def _corral_argv() -> list[str]:
    words = shlex.split(GUNICORN_COMMAND)
    assert words[0] == "gunicorn"
    return words[1:]  # start_corral runs `python -m corral serve` + these


def test_gunicorn_command_and_conf_run_unchanged(tmp_path: Path) -> None:
    markers = _project(tmp_path)
    c = start_corral(tmp_path, *_corral_argv(), env={"MARKERS": str(markers)})
    try:
        status, body = c.get("/", timeout=10)
        assert status == 200, body
        settings_module, pid, db_state = body.decode().split()
        assert settings_module == "myproj.settings_prod"  # -e beats the wsgi.py setdefault
        assert db_state == "fresh"  # post_fork(server, worker) closed the inherited connection
        workers = worker_pids(c.pid)
        assert int(pid) in workers and len(workers) == 2
        for w in workers:
            server_pid, age = (markers / f"post_fork.{w}").read_text().split()
            assert int(server_pid) == c.pid and int(age) >= 1
        assert (markers / "on_starting").read_text() == str(c.pid)
        assert (markers / "when_ready").read_text() == f"{c.pid} 2 5.0"
        log = c.wait_log('"GET / HTTP/1.1" 200')
        line = next(x for x in log.splitlines() if '"GET / HTTP/1.1" 200' in x)
        assert re.fullmatch(r'127\.0\.0\.1 - - \[.+\] "GET / HTTP/1\.1" 200 \d+ "-" "-" \d+', line)
        assert "corral always preloads" in log
        c.signal(signal.SIGTERM)
        assert c.wait(20) == 0
    finally:
        c.stop()
    assert (markers / "on_exit").read_text() == str(c.pid)
    wait_for(lambda: all((markers / f"worker_exit.{w}").exists() for w in workers), timeout=10)


def test_the_same_line_prints_gunicorns_values(tmp_path: Path) -> None:
    markers = _project(tmp_path)
    out = subprocess.run(
        [sys.executable, "-m", "corral", "serve", *_corral_argv(), "--print-config"],
        cwd=tmp_path,
        env={"MARKERS": str(markers), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    for line in (
        "workers = 2",
        "timeout_s = 30.0",
        "keepalive_timeout_s = 5.0",
        "graceful_timeout_s = 20.0",
        'app = "myproj.wsgi"',
        'access_log_file = "-"',
        "max_requests_jitter = 50",
    ):
        assert line in out.splitlines(), (line, out)
