"""gunicorn's server hooks, called with gunicorn's arguments.

Theory of operation: a gunicorn-style config file (``-c gunicorn.conf.py``) defines hooks as
module-level functions (``def post_fork(server, worker): ...``); ``config.load_with_hooks``
returns them and the CLI ``install()``s them in the master before anything forks, so the zygote
and every worker inherit them. ``--post-fork module:function`` is the other way to give
``post_fork``; it is resolved in the worker (the master never imports the app's code) and may
take gunicorn's two arguments or none.

Where each is called (every call site is one line)::

    master   on_starting  when_ready  child_exit  nworkers_changed  on_exit
    zygote   pre_fork (in the short-lived process that forks the worker)
    worker   post_fork  post_worker_init  worker_int  pre_request  post_request  worker_exit

``server`` and ``worker`` are small facades with what hooks commonly use: ``pid``, ``log``
(a ``logging.Logger``), ``cfg`` (the settings, by corral's or gunicorn's names: ``cfg.timeout``
is ``timeout_s``), ``worker.age`` (corral's worker id, which grows with each spawn as gunicorn's
age does) and ``worker.ppid``; ``req`` has gunicorn's ``method``, ``uri``, ``path``, ``query``,
``version`` and ``headers``, ``resp`` its ``status``, ``status_code``, ``headers`` and ``sent``.

``on_starting`` raising stops corral from starting; ``post_fork`` or ``post_worker_init``
raising fails that worker's boot (exit code 3 after retries, as any boot failure); every other
hook's exception is logged and corral carries on. Without request hooks the worker pays one
global lookup per request (``per_request``). ``worker_abort`` is not called: a stuck worker
dumps its stacks from C (faulthandler), where no Python code may run.
"""

from __future__ import annotations

import inspect
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from corral.config import BY_KEY, Config
from corral.http import Request as HttpRequest
from corral.master.appload import load_app
from corral.wsgi.response import StartResponse

Hook = Callable[..., Any]
log = logging.getLogger("corral.hooks")
_installed: dict[str, Hook] = {}
_me: Worker | None = None  # this worker's facade, from post_fork on
per_request = False  # pre_request or post_request installed: the worker loop checks this
_environs: dict[int, dict[str, Any]] = {}  # id(request) -> environ, pre_request to post_request


class CfgView:
    """Read access to the settings by corral's names or gunicorn's (``cfg.keepalive``)."""

    def __init__(self, cfg: Config) -> None:
        self._cfg = cfg

    def __getattr__(self, name: str) -> Any:
        setting = BY_KEY.get(name)
        if setting is None:
            raise AttributeError(name)
        return getattr(self._cfg, setting.name)


class Server:
    """What gunicorn's ``server`` (its Arbiter) gives hooks that corral can give too."""

    def __init__(self, cfg: Config, pid: int) -> None:
        self.pid = pid
        self.cfg = CfgView(cfg)
        self.log = logging.getLogger("corral.master")
        self.num_workers = cfg.effective_workers()
        self.address = list(cfg.bind)


class Worker:
    """What gunicorn's ``worker`` gives hooks: pid, ppid, age, log, cfg."""

    def __init__(self, cfg: Config, age: int, pid: int | None, ppid: int) -> None:
        self.age = self.wid = age
        self.pid = pid
        self.ppid = ppid
        self.cfg = CfgView(cfg)
        self.log = logging.getLogger("corral.worker")
        self.alive = True
        self.booted = time.time()


class Request:
    """gunicorn's ``req`` for pre_request/post_request (header names upper-cased, as gunicorn)."""

    def __init__(self, request: HttpRequest) -> None:
        self.method = request.method.decode("latin-1")
        self.uri = request.target.decode("latin-1")
        self.path = request.path.decode("latin-1")
        self.query = request.query.decode("latin-1")
        major, _, minor = request.http_version.partition(".")
        self.version = (int(major), int(minor or 0))
        self.headers = [
            (k.decode("latin-1").upper(), v.decode("latin-1")) for k, v in request.headers
        ]


class Response:
    """gunicorn's ``resp`` for post_request."""

    def __init__(self, resp: StartResponse | None, sent: int) -> None:
        self.status = (
            resp.status if resp is not None and resp.status else "500 Internal Server Error"
        )
        self.status_code = resp.status_code if resp is not None else 500
        headers = resp.headers if resp is not None else []
        self.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in headers]
        self.sent = sent


def install(found: Mapping[str, Hook]) -> None:
    """Remember the hooks of the config file; call in the master before anything forks."""
    global per_request
    _installed.clear()
    _installed.update(found)
    per_request = "pre_request" in found or "post_request" in found


def installed(name: str) -> bool:
    return name in _installed


def _notify(name: str, *args: Any) -> None:
    hook = _installed.get(name)
    if hook is None:
        return
    try:
        hook(*args)
    except Exception:
        log.exception("%s hook failed", name)


# --- master ---------------------------------------------------------------------------------


def on_starting(cfg: Config) -> None:
    """Before the master binds; an exception stops corral from starting."""
    if "on_starting" in _installed:
        _installed["on_starting"](Server(cfg, os.getpid()))


def when_ready(cfg: Config) -> None:
    _notify("when_ready", Server(cfg, os.getpid()))


def child_exit(cfg: Config, wid: int, pid: int) -> None:
    _notify("child_exit", Server(cfg, os.getpid()), Worker(cfg, wid, pid, os.getpid()))


def nworkers_changed(cfg: Config, new: int, old: int) -> None:
    _notify("nworkers_changed", Server(cfg, os.getpid()), new, old)


def on_exit(cfg: Config) -> None:
    _notify("on_exit", Server(cfg, os.getpid()))


# --- zygote and worker ----------------------------------------------------------------------


def pre_fork(cfg: Config, master_pid: int, wid: int) -> None:
    """In the short-lived process about to fork worker ``wid`` (so the zygote stays clean)."""
    if "pre_fork" in _installed:
        _notify("pre_fork", Server(cfg, master_pid), Worker(cfg, wid, None, master_pid))


def post_fork(cfg: Config, master_pid: int, wid: int) -> None:
    """First thing in a new worker; an exception fails its boot."""
    global _me
    _me = Worker(cfg, wid, os.getpid(), master_pid)
    hook = _installed.get("post_fork") or _resolve(cfg.post_fork)
    if hook is None:
        return
    if _takes_args(hook, 2):
        hook(Server(cfg, master_pid), _me)
    else:
        hook()  # corral's older zero-argument --post-fork


def post_worker_init(cfg: Config, master_pid: int, wid: int) -> None:
    if "post_worker_init" in _installed:
        _installed["post_worker_init"](_me or Worker(cfg, wid, os.getpid(), master_pid))


def worker_exit(cfg: Config, master_pid: int, wid: int) -> None:
    """Last thing in a worker that is leaving (any reason but SIGKILL)."""
    me = _me or Worker(cfg, wid, os.getpid(), master_pid)
    me.alive = False
    _notify("worker_exit", Server(cfg, master_pid), me)


def worker_int() -> None:
    """The worker got SIGINT or SIGQUIT (called from its loop, not the signal handler)."""
    if _me is not None:
        _notify("worker_int", _me)


def pre_request(request: HttpRequest, environ: dict[str, Any]) -> None:
    """Before the app is called (only when ``per_request``)."""
    _environs[id(request)] = environ
    if _me is not None and "pre_request" in _installed:
        _notify("pre_request", _me, Request(request))


def post_request(request: HttpRequest, resp: StartResponse | Any, sent: int) -> None:
    """After the response went out (only when ``per_request``). ``resp``: the WSGI
    ``StartResponse``, or anything with its ``status``/``status_code``/``headers``."""
    environ = _environs.pop(id(request), {})
    if _me is not None and "post_request" in _installed:
        _notify("post_request", _me, Request(request), environ, Response(resp, sent))


def _resolve(spec: str) -> Hook | None:
    return load_app(spec) if spec else None  # the app's own name resolution, in the worker


def _takes_args(func: Hook, n: int) -> bool:
    try:
        inspect.signature(func).bind(*range(n))
    except (TypeError, ValueError):
        return False
    return True
