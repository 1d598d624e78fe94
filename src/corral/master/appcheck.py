"""``corral serve --check-config``: the settings are valid and the app imports, in a throwaway
process, then exit.

Theory of operation. The settings were validated by loading them (``corral.config``) and the TLS
files by building the context; what is left is the app. A forked child imports it exactly as a
zygote would (``load_app`` from ``chdir``/``pythonpath``, then the interface decision) and
writes one line back through a pipe: what was found and how long the import took, or why it
failed. The parent never imports the app, so nothing of it (threads, connections, module
state) outlives the check. The child gets ``boot_timeout_s``; an import that hangs is killed.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import time

from corral.asgi import AsgiApp, choose_interface, interface_for
from corral.config import Config
from corral.master.appload import DEMO, AppLoadError, load_app
from corral.master.exitcodes import APP_LOAD_ERROR, OK

LINE_MAX = 4096


def check_app(cfg: Config) -> tuple[int, str]:
    """(exit code, one line): ``OK`` and what imported, or ``APP_LOAD_ERROR`` and why not."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child's coverage is the line it writes
        os.close(r)
        code, line = _import_once(cfg)
        with contextlib.suppress(OSError):
            os.write(w, line.encode("utf-8", "replace")[:LINE_MAX])
        os._exit(code)
    os.close(w)
    try:
        said = _read_line(r, cfg.boot_timeout_s)
    finally:
        os.close(r)
    if said is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        return APP_LOAD_ERROR, f"the app did not import within {cfg.boot_timeout_s:g}s"
    _, status = os.waitpid(pid, 0)
    code, line = os.waitstatus_to_exitcode(status), said
    if code == OK:
        return OK, line
    if code < 0:
        return (
            APP_LOAD_ERROR,
            f"importing the app killed the process ({signal.Signals(-code).name})",
        )
    return APP_LOAD_ERROR, line or f"importing the app exited with code {code}"


def _import_once(cfg: Config) -> tuple[int, str]:
    started = time.monotonic()
    try:
        app = load_app(cfg.app, cfg.chdir, cfg.pythonpath)
        app = choose_interface(app, interface_for(cfg.interface, cfg.worker_class))
    except AppLoadError as exc:
        return APP_LOAD_ERROR, str(exc)
    except BaseException as exc:  # an app's import may raise anything, SystemExit included
        return APP_LOAD_ERROR, f"app {cfg.app!r}: {exc!r}"
    kind = "ASGI" if isinstance(app, AsgiApp) else "WSGI"
    took = time.monotonic() - started
    return OK, f"{kind} app {cfg.app or DEMO} imports ({took:.2f} s)"


def _read_line(fd: int, timeout_s: float) -> str | None:
    """What the child wrote before closing the pipe; None when it is still silent at the end."""
    deadline = time.monotonic() + timeout_s
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            return None
        chunk = os.read(fd, LINE_MAX)
        if not chunk:
            return data.decode("utf-8", "replace").strip()
        data += chunk
