"""Three corral hosts behind HAProxy and behind nginx under POST load (issue 13): how many
requests each fault drill fails, per balancer, as the table in benchmarks/RESULTS.md.

Theory of operation. The drills are the test suite's, not a copy: this script runs
``tests/system/test_fleet.py`` (and, with ``--netns``, ``tests/system/test_fleet_netns.py``)
under pytest with ``FLEET_RESULTS`` set, so the same fixture starts the hosts on 127.0.0.2-4
with the command line of docs/fleet.md, HAProxy and nginx with the configs of docs/fleet.md,
and the same load: ``CONNS`` keep-alive clients per balancer, both balancers at once, each
POSTing 2 KB to the fleet app's 20 ms endpoint in a closed loop; a failure is any answer but
200 with the body length echoed, or a connection error. Each drill appends one JSON line
(drill, ``[failed, total]`` per balancer, the first failures); this script reads them back
and prints the markdown table, one column per drill, ``--runs`` runs side by side. The drills'
own asserts (their bounds) still apply: a drill over its bound fails pytest and the script
exits non-zero, with the table of what was measured all the same.

Usage::

    python benchmarks/fleet.py [--runs 1] [--netns] [--drills rolling,hup,sigkill] [--json F]
                               [--steady 1000]

``--steady N`` (``FLEET_STEADY_OK`` for the tests) is how many requests each balancer answers
before a drill's fault and between its steps (the tests use 10, for speed; the fault windows
are the same either way, so a bigger N is a bigger sample of the same drill, not a gentler one).
``--drills`` picks the tests by pytest ``-k`` words (default: the three of the issue's table,
rolling TERM + restart, rolling HUP, SIGKILL; ``all`` runs every drill).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests" / "system"
PICK = {
    "rolling": "rolling_term",
    "hup": "rolling_hup",
    "sigkill": "sigkill",
    "sigstop": "sigstop",
    "slow": "slow_host",
    "reload": "balancer_reloads",
    "cut": "cut_off",
}
ISSUE_TABLE = ("rolling", "hup", "sigkill")


def run_drills(words: list[str], netns: bool, steady: int, results: Path) -> int:
    """One pytest run of the chosen drills; their rows land in ``results``."""
    files = [str(TESTS / "test_fleet.py")]
    if netns or "cut" in words:
        files.append(str(TESTS / "test_fleet_netns.py"))
    expr = " or ".join(PICK[w] for w in words)
    argv = [sys.executable, "-m", "pytest", "-q", "-s", "-p", "no:cacheprovider", *files]
    argv += ["-k", expr]
    env = {**os.environ, "FLEET_RESULTS": str(results), "FLEET_STEADY_OK": str(steady)}
    # pytest's own output goes to stderr: stdout is the table
    return subprocess.run(argv, cwd=ROOT, env=env, stdout=sys.stderr, timeout=900).returncode


def table(runs: list[list[dict[str, object]]]) -> str:
    """Markdown: a row per balancer, a column per drill, ``F failed of N`` per run."""
    drills: list[str] = []
    for rows in runs:
        for row in rows:
            if str(row["drill"]) not in drills:
                drills.append(str(row["drill"]))
    lines = ["| balancer | " + " | ".join(drills) + " |", "|---|" + "---:|" * len(drills)]
    for balancer in ("haproxy", "nginx"):
        cells = []
        for drill in drills:
            got = []
            for rows in runs:
                for row in rows:
                    if row["drill"] == drill and balancer in row:
                        failed, total = row[balancer]  # type: ignore[misc]
                        got.append(f"{failed} failed of {total:,}")
            cells.append("; ".join(got) or "-")
        lines.append(f"| {balancer} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--netns", action="store_true", help="also the namespace link-down drill")
    ap.add_argument("--drills", default=",".join(ISSUE_TABLE), help="comma list, or all")
    ap.add_argument("--json", type=Path, help="write every run's rows here")
    ap.add_argument("--steady", type=int, default=1000, metavar="N",
                    help="requests per balancer before each fault and between steps")  # fmt: skip
    args = ap.parse_args()
    words = list(PICK) if args.drills == "all" else args.drills.split(",")
    unknown = [w for w in words if w not in PICK]
    if unknown:
        ap.error(f"unknown drill(s) {unknown}; known: {', '.join(PICK)}")
    runs: list[list[dict[str, object]]] = []
    worst = 0
    for i in range(args.runs):
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "rows.jsonl"
            rc = run_drills(words, args.netns, args.steady, out)
            worst = worst or rc
            rows = [json.loads(x) for x in out.read_text().splitlines()] if out.exists() else []
        print(f"run {i + 1}: pytest exit {rc}, {len(rows)} drills", file=sys.stderr)
        runs.append(rows)
    print(table(runs))
    for rows in runs:
        for row in rows:
            for balancer in ("haproxy", "nginx"):
                samples = row.get("samples", {}).get(balancer)  # type: ignore[attr-defined]
                if samples:
                    print(f"  {row['drill']} / {balancer}: {samples[:3]}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1) + "\n")
    return worst


if __name__ == "__main__":
    sys.exit(main())
