"""The fuzzer's socket tier: seeded corpus mutants against a real forked ``corral serve`` with
the echo app (tests/corpus/fuzz_socket.py): no worker death, no traceback, no hang, and the app
never sees a request in another form than the reference reading of the bytes sent."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from corral.launch import corral_serve, start
from tests.corpus import fuzz, fuzz_socket
from tests.corpus.fuzz_socket import check_exchange, exchange, run_socket
from tests.corpus.reference import Message, Reading

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]
SEED = 20261204
CASES = 400


def test_fuzz_over_sockets_finds_nothing(tmp_path: Path) -> None:
    run = run_socket(CASES, SEED, tmp_path / "corral.log")
    fuzz.REPORTS.append(
        f"fuzz (socket, seed {SEED}): {run.count} cases, {run.answered} requests compared, "
        f"{len(run.findings) + len(run.problems)} findings"
    )
    assert run.count == CASES
    assert run.answered > 20  # the comparison is not vacuous: many mutants stay valid
    assert not run.problems, "\n".join(run.problems)
    assert not run.findings, "\n".join(f.describe() for f in run.findings[:10])


def test_the_socket_oracle_can_fail(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A reference that reads another body than the app got is a misread; a server that never
    closes is a hang."""
    raw = b"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi"
    mutant = fuzz.Mutant(0, "test", ("none",), raw, False)
    run = run_socket(0, SEED, tmp_path / "corral.log")  # boots and stops cleanly, no cases
    assert not run.problems
    lying = Message(b"POST", b"/x", b"1.1", ((b"host", b"a"), (b"content-length", b"2")), b"ho",
                    True)  # fmt: skip
    monkeypatch.setattr(fuzz_socket, "read", lambda data: Reading((lying,), False))
    server = start(
        corral_serve("fuzzapp:app", "-b", "127.0.0.1:0", "-w", "1"),
        log_path=tmp_path / "again.log",
        env={"PYTHONPATH": str(fuzz_socket.APPS)},
    )
    try:
        host, _, port = server.url.removeprefix("http://").rpartition(":")
        answered, findings = check_exchange(mutant, host, int(port))
    finally:
        server.stop()
    assert answered == 1 and [f.kind for f in findings] == ["misread"]
    with socket.socket() as silent:  # listens, never accepts: the kernel completes connects
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        with pytest.raises(TimeoutError):
            exchange("127.0.0.1", silent.getsockname()[1], raw, timeout_s=0.3)
