"""The fuzzer's socket tier: mutants sent to a real forked ``corral serve`` running the echo app
(tests/system/apps/fuzzapp.py), which answers with a digest of what it saw.

Each mutant gets its own connection: the bytes are sent, the client half-closes (so every
exchange must end: the server answers what it read and closes), and the responses are read
within ``EXCHANGE_TIMEOUT_S``. Findings: an exchange that does not end in time (a hang); a 200
whose digest differs from the reference reading of the bytes (the app saw a request in
another form than sent, or one the reference cannot read at all); and, over the whole run, a
worker that died (the pids changed), a master that exited, or a traceback in the log.

The server is started, awaited and stopped by corral.launch, like every other corral the tests
and benchmarks start.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import socket
import time
from collections.abc import Iterator
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path

from corral.chaos.target import worker_pids
from corral.launch import Launched, corral_serve, start
from tests.corpus.fuzz import Finding, Mutant, cases
from tests.corpus.reference import Message, read

APPS = Path(__file__).resolve().parents[1] / "system" / "apps"
EXCHANGE_TIMEOUT_S = 5.0  # corral answers a half-closed connection at once; this is a hang
_SPECIAL_KEYS = {b"content-type": "CONTENT_TYPE", b"content-length": "CONTENT_LENGTH"}


def expected_environ(msg: Message) -> dict[str, str]:
    """The environ keys fuzzapp reports, as PEP 3333 and corral's documented mapping would
    build them from the reference reading (repeated fields joined with ", ", Cookie "; ")."""
    env = {
        "REQUEST_METHOD": msg.method.decode("latin-1"),
        "RAW_URI": msg.target.decode("latin-1"),
        "SERVER_PROTOCOL": "HTTP/" + msg.version.decode(),
    }
    for name, value in msg.headers:
        key = _SPECIAL_KEYS.get(name) or "HTTP_" + name.decode("latin-1").upper().replace("-", "_")
        text = value.decode("latin-1")
        sep = "; " if key == "HTTP_COOKIE" else ", "
        env[key] = env[key] + sep + text if key in env else text
    length = [v for n, v in msg.headers if n == b"content-length"]
    if length:
        env["CONTENT_LENGTH"] = str(int(length[0]))
    else:
        env.pop("CONTENT_LENGTH", None)
    return env


def exchange(host: str, port: int, raw: bytes, timeout_s: float = EXCHANGE_TIMEOUT_S) -> bytes:
    """Send ``raw``, half-close, read to EOF; TimeoutError if the server does not finish."""
    deadline = time.monotonic() + timeout_s
    out = bytearray()
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        with contextlib.suppress(OSError):  # the server may close early, after an error
            sock.sendall(raw)
            sock.shutdown(socket.SHUT_WR)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no EOF within {timeout_s} s ({len(out)} bytes read)")
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                raise TimeoutError(f"no EOF within {timeout_s} s ({len(out)} bytes read)") from None
            except OSError:  # a reset after the server's error response: the end
                break
            if not chunk:
                break
            out += chunk
    return bytes(out)


def responses(data: bytes, bodiless: AbstractSet[int] = frozenset()) -> Iterator[tuple[int, bytes]]:
    """(status, body) of each final response in ``data`` (1xx skipped; framing by length;
    the ``bodiless`` response indices, answers to HEAD, have a Content-Length but no body)."""
    index = 0
    while data:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return
        head, data = data[:end].split(b"\r\n"), data[end + 4 :]
        status = int(head[0].split(b" ")[1])
        if status < 200:
            continue
        length = next(
            (int(line.split(b":", 1)[1]) for line in head[1:]
             if line.lower().startswith(b"content-length:")),
            len(data),
        )  # fmt: skip
        if index in bodiless:
            length = 0
        yield status, data[:length]
        data = data[length:]
        index += 1


def check_exchange(mutant: Mutant, host: str, port: int) -> tuple[int, list[Finding]]:
    """(requests the app answered, findings) for one mutant on its own connection."""
    try:
        data = exchange(host, port, mutant.raw)
    except TimeoutError as exc:
        return 0, [Finding(mutant, "hang", str(exc))]
    reading = read(mutant.raw)
    heads = {i for i, m in enumerate(reading.messages) if m.method == b"HEAD"}
    out = []
    answered = [body for status, body in responses(data, heads) if status == 200]
    for i, body in enumerate(answered):
        ref = reading.messages[i] if i < len(reading.messages) else None
        if i in heads:
            continue  # a HEAD response has no body, so no digest to compare
        if ref is None or not ref.complete:
            why = reading.reason or "incomplete"
            detail = f"app answered request {i}, reference: {why}; app saw {body[:300]!r}"
            out.append(Finding(mutant, "misread", detail))
            continue
        want = {
            "environ": expected_environ(ref),
            "body_len": len(ref.body),
            "body_sha256": hashlib.sha256(ref.body).hexdigest(),
        }
        try:
            got = json.loads(body)
        except ValueError:
            got = {"not JSON": body[:300].decode("latin-1")}
        if got != want:
            out.append(Finding(mutant, "misread", f"request {i}: app saw {got}, sent {want}"))
    return len(answered), out


@dataclass
class SocketRun:
    """A fuzz run against one ``corral serve`` (started by ``run_socket``)."""

    server: Launched
    host: str = "127.0.0.1"
    port: int = 0
    workers: list[int] = field(default_factory=list)
    count: int = 0
    answered: int = 0  # requests the app answered, each compared with the reference
    findings: list[Finding] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # run-wide: deaths, tracebacks

    def run(self, n: int, seed: int) -> None:
        for mutant in cases(n, seed):
            answered, findings = check_exchange(mutant, self.host, self.port)
            self.answered += answered
            self.findings += findings
            self.count += 1
            if self.server.proc.poll() is not None:
                self.problems.append(f"the master exited ({self.server.proc.returncode})")
                return

    def finish(self) -> None:
        now = worker_pids(self.server.pid)
        if now != self.workers:
            self.problems.append(f"workers changed: {self.workers} -> {now}")
        if "Traceback" in self.server.log():
            self.problems.append("traceback in the server log:\n" + self.server.log_tail(40))


def run_socket(n: int, seed: int, log_path: Path, workers: int = 2) -> SocketRun:
    """Start corral with the echo app, fuzz it with ``n`` mutants, stop it; the results."""
    argv = corral_serve("fuzzapp:app", "-b", "127.0.0.1:0", "-w", str(workers))
    env = {"PYTHONPATH": str(APPS), "PYTHONDONTWRITEBYTECODE": "1"}
    server = start(argv, log_path=log_path, env=env, cwd=APPS)
    try:
        hostport = server.url.removeprefix("http://")
        host, _, port = hostport.rpartition(":")
        fuzz = SocketRun(server, host, int(port), worker_pids(server.pid))
        fuzz.run(n, seed)
        fuzz.finish()
    finally:
        status = server.stop()
    if status not in (0, None):
        fuzz.problems.append(f"corral serve exited with status {status} on TERM")
    return fuzz
