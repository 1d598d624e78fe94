"""Finding other CPython versions for tests that compare interpreters (pyenv builds)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

PYENV = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"


def interpreter(version: str) -> Path:
    """This interpreter when it is ``version`` ("3.12"), else the newest pyenv build of it (a
    path that does not exist when there is none; callers fail under CI, skip elsewhere)."""
    if f"{sys.version_info.major}.{sys.version_info.minor}" == version:
        return Path(sys.executable)

    def patch(p: Path) -> int:
        tail = p.parts[-3].split(".")[-1]
        return int(tail) if tail.isdigit() else -1

    found = sorted(PYENV.glob(f"{version}.*/bin/python3"), key=patch)
    return found[-1] if found else PYENV / f"{version}.x" / "bin" / "python3"
