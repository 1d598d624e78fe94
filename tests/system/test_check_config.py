"""``corral serve --check-config`` (issue 12 point 5): settings and TLS checked, the app imported
in a throwaway process, one line out, and nothing left running or bound."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)

APPS = {
    "okapp.py": "def application(environ, start_response):\n    return [b'']\n",
    "asgiok.py": "async def app(scope, receive, send):\n    pass\n",
    "dbdown.py": "raise RuntimeError('database is down')\n",
    "hangs.py": "import time\ntime.sleep(60)\napplication = None\n",
    "marks.py": "import os\nopen(os.environ['MARK'], 'a').write(f'{os.getpid()}\\n')\n"
    "def application(e, s):\n    return []\n",
}


def _check(
    tmp: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    for name, text in APPS.items():
        (tmp / name).write_text(text)
    cmd = [sys.executable, "-m", "corral", "serve", *args, "--check-config", "--chdir", str(tmp)]
    full = {**os.environ, **(env or {})}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=40, cwd=tmp, env=full)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_good_wsgi_and_asgi_app_pass_without_binding(tmp_path: Path) -> None:
    port = _free_port()
    done = _check(tmp_path, "okapp", "-b", f"127.0.0.1:{port}")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("corral: configuration OK; WSGI app okapp imports (")
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # nothing took the port
    done = _check(tmp_path, "asgiok:app")
    assert done.returncode == 0 and "ASGI app asgiok:app imports" in done.stdout, done.stderr


def test_the_import_runs_in_a_throwaway_process(tmp_path: Path) -> None:
    mark = tmp_path / "pids"
    done = _check(tmp_path, "marks", env={"MARK": str(mark)})
    assert done.returncode == 0, done.stderr
    (child,) = (int(p) for p in mark.read_text().split())
    assert child != os.getpid()
    assert not Path(f"/proc/{child}").exists()  # gone, and reaped by the check


@pytest.mark.parametrize(
    ("app", "args", "message"),
    [
        ("dbdown", (), "app 'dbdown': importing dbdown raised RuntimeError('database is down')"),
        ("nosuch", (), "app 'nosuch': no module named 'nosuch'"),
        ("okapp:missing", (), "app 'okapp:missing': okapp has no attribute 'missing'"),
        ("hangs", ("--boot-timeout-s", "1"), "the app did not import within 1s"),
    ],
)
def test_an_app_that_does_not_import_is_one_line_and_exit_4(
    tmp_path: Path, app: str, args: tuple[str, ...], message: str
) -> None:
    started = time.monotonic()
    done = _check(tmp_path, app, *args)
    assert done.returncode == 4
    assert done.stderr.splitlines() == [f"corral: error: check-config: {message}"]
    assert time.monotonic() - started < 30


def test_bad_settings_fail_before_any_import(tmp_path: Path) -> None:
    done = _check(tmp_path, "okapp", "--workers", "-3")
    assert done.returncode == 2 and "workers" in done.stderr and "Traceback" not in done.stderr
