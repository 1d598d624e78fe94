"""A realistic page per server CPU-second: Django (a template and four ORM queries on sqlite)
under corral and gunicorn gthread, and optionally uWSGI and granian (issue 14).

Theory of operation. The app is ``benchmarks/apps/django_page_app.py``; its sqlite database is
created once, in a throwaway process, before any server starts, so every server reads the same
file. Then benchmarks/hello.py's machinery runs unchanged with that app: each round starts
every server fresh on 1 (or N) workers, warms it with a discarded wrk run, drives it with
``wrk -t1 -c16`` and reads the CPU time of all the server's processes from /proc; the order is
rotated each round and the report gives medians and same-round ratios. ``--instructions N``
adds callgrind's instructions per request (two runs differenced, as in hello.py, after 20
warm-up requests: a page costs some 200 times a hello world under callgrind).

The bar: corral's requests per server CPU-second stay ahead of gunicorn gthread's (the
*CPU efficiency vs best gunicorn* column, where gthread is the only gunicorn run).

Usage::

    /tmp/hot-bench-313/bin/python benchmarks/django_page.py [--workers 1] [--duration 5]
        [--rounds 3] [--servers corral,gunicorn-gthread,uwsgi,granian] [--instructions 500]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import hello

APP = "django_page_app:app"


def prepare_db(path: Path) -> None:
    """Create and fill the database by importing the app once in a child process."""
    path.unlink(missing_ok=True)
    env = {**os.environ, "DJPAGE_DB": str(path), "PYTHONPATH": str(hello.APPS)}
    subprocess.run(
        [sys.executable, "-c", "import django_page_app"],
        env=env, cwd=hello.APPS, check=True, timeout=120,
    )  # fmt: skip
    os.environ["DJPAGE_DB"] = str(path)  # every server started from here inherits it


def main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--workers", default="1")
    p.add_argument("--duration", type=float, default=5.0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--servers", default="", help="default: corral's and gunicorn-gthread")
    p.add_argument("--instructions", type=int, default=0, metavar="N")
    p.add_argument("--skip-wrk", action="store_true", help="callgrind counts only")
    p.add_argument("--log", type=Path, default=Path("/tmp/django-page-bench.log"))
    args = p.parse_args(argv)
    corrals = hello.corral_variants()
    peers = {k: v for k, v in hello.SERVERS.items() if k != "corral"}
    hello.SERVERS.clear()
    hello.SERVERS.update({**corrals, **peers})
    servers = [s for s in args.servers.split(",") if s] or [*corrals, "gunicorn-gthread"]
    servers = [s for name in servers for s in (corrals if name == "corral" else [name])]
    with tempfile.TemporaryDirectory(prefix="djpage-") as tmp:
        prepare_db(Path(tmp) / "page.sqlite3")
        workers = [int(w) for w in args.workers.split(",")]
        rounds = 0 if args.skip_wrk else args.rounds
        cells = hello.run_all(servers, workers, rounds, args.duration, args.log, APP)
        counts = {
            name: hello.instructions_per_request(name, args.instructions, args.log, APP, warm=20)
            for name in (servers if args.instructions else ())
        }
    command = shlex.join([Path(sys.executable).as_posix(), "benchmarks/django_page.py", *argv])
    print(f"\nCommand: `{command}`\n")
    if args.skip_wrk:
        for name, value in counts.items():
            print(f"| {name} | {value:,.0f} instructions/request |")
        return 0
    print(hello.table(cells))
    if counts:
        print()
        print(hello.side_by_side(cells, counts))
    print()
    print(hello.rounds_table(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
