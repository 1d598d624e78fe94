"""The HTTP fuzzer's long run: many more seeded corpus mutants than the test suite's fixed count.

Theory of operation. The same fuzzer and oracles as the tests (tests/corpus/fuzz.py for the
sans-IO tier, tests/corpus/fuzz_socket.py for the socket tier against a forked ``corral serve``
started by corral.launch); only the counts and the seed change. A (``--cases``, ``--seed``)
pair names the same case set on every machine, so a finding is reproduced by its seed and
index alone; each finding is also shrunk (``--no-minimize`` to skip) and printed as the raw
bytes to record as a corpus case (``tests/corpus/cases/*.toml``, see its README) marked
``xfail`` with the reason until http/ is fixed.

Bounded: ``--max-time-s`` stops the sans-IO tier early (the count run is printed); every
socket exchange has its own 5 s deadline.

Usage::

    .venv/bin/python benchmarks/fuzz.py [--cases 200000] [--seed 1] [--socket-cases 5000]

Exit code: 0 no findings, 1 findings (each printed with its reproducer).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: tests.corpus

from tests.corpus import fuzz
from tests.corpus.fuzz_socket import run_socket


def sans_io(n: int, seed: int, max_time_s: float) -> tuple[int, list[fuzz.Finding]]:
    deadline = time.monotonic() + max_time_s
    findings: list[fuzz.Finding] = []
    count = 0
    for mutant in fuzz.cases(n, seed):
        if time.monotonic() >= deadline:
            break
        findings += fuzz.check(mutant)
        count += 1
    return count, findings


def show(findings: list[fuzz.Finding], minimize: bool) -> None:
    for finding in findings[:50]:
        print(finding.describe())
        if minimize and finding.kind in ("exception", "split", "misread"):
            print(f"    minimal: {fuzz.minimize(finding).raw!r}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--cases", type=int, default=200_000, help="sans-IO cases (default 200000)")
    p.add_argument("--seed", type=int, default=1, help="case-set seed (default 1)")
    p.add_argument("--socket-cases", type=int, default=2000, help="socket cases (0: skip)")
    p.add_argument("--max-time-s", type=float, default=1800.0, help="bound on the sans-IO tier")
    p.add_argument("--no-minimize", action="store_true", help="do not shrink findings")
    args = p.parse_args()
    began = time.monotonic()
    count, findings = sans_io(args.cases, args.seed, args.max_time_s)
    kinds = dict(Counter(f.kind for f in findings))
    took = time.monotonic() - began
    print(f"fuzz (sans-IO, seed {args.seed}): {count} cases, {len(findings)} findings {kinds}"
          f" in {took:.1f} s")  # fmt: skip
    show(findings, not args.no_minimize)
    total = len(findings)
    if args.socket_cases:
        with tempfile.TemporaryDirectory(prefix="corral-fuzz-") as tmp:
            run = run_socket(args.socket_cases, args.seed, Path(tmp) / "corral.log")
        bad = len(run.findings) + len(run.problems)
        print(f"fuzz (socket, seed {args.seed}): {run.count} cases, {run.answered} requests"
              f" compared, {bad} findings")  # fmt: skip
        show(run.findings, minimize=False)
        for problem in run.problems:
            print(f"problem: {problem}")
        total += bad
    return 1 if total else 0


if __name__ == "__main__":
    sys.exit(main())
