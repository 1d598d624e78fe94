"""The sans-IO response producer: the exact step sequence for each kind of WSGI response."""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import pytest

from corral.http import Connection, ProtocolError, Request
from corral.worker.producer import ABORT, DONE, JOIN_MAX, Producer, SendFile, Step
from corral.wsgi import FileWrapper, InputStream, StartResponse

GET = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
HEAD = b"HEAD / HTTP/1.1\r\nHost: example.com\r\n\r\n"


class Ex:
    """A minimal exchange: a real HTTP core with one request received."""

    def __init__(self, raw: bytes = GET) -> None:
        self.proto = Connection()
        self.proto.receive_data(raw)
        event = self.proto.next_event()
        assert isinstance(event, Request)
        self.request: Request | None = event
        self.input: InputStream | None = InputStream()
        self.body_error: ProtocolError | None = None
        self.must_close = False
        self.sendfile = True
        self.resp: StartResponse | None = StartResponse()
        self.producer = Producer(self)
        self.written: list[bytes] = []  # what write() would have sent, call by call
        self.resp.write = self._write

    def _write(self, data: bytes) -> None:
        self.written.append(self.producer.write(data))


App = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def run(app: App, raw: bytes = GET) -> tuple[Ex, list[Step]]:
    """Drive the producer to its last step, as a pump that never blocks would."""
    ex = Ex(raw)
    steps = [ex.producer.call(app, {})]  # type: ignore[arg-type]
    while steps[-1] is not DONE and steps[-1] is not ABORT:
        steps.append(ex.producer.next())
        assert len(steps) < 100
    return ex, steps


def wire(steps: list[Step]) -> bytes:
    out = b""
    for step in steps:
        if isinstance(step, list):
            out += b"".join(step)
        elif isinstance(step, bytes):
            out += step
    return out


class Closing:
    """An iterable result counting close() calls."""

    def __init__(self, items: Iterable[bytes]) -> None:
        self.items = items
        self.closed = 0

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.items)

    def close(self) -> None:
        self.closed += 1


def ok(headers: list[tuple[str, str]] | None = None) -> Callable[[StartResponse], None]:
    def start(sr: StartResponse) -> None:
        sr("200 OK", headers or [])

    return start


def test_list_body_is_one_step_with_head_body_and_length() -> None:
    def app(environ: dict[str, Any], sr: StartResponse) -> list[bytes]:
        sr("200 OK", [("Content-Type", "text/plain")])
        return [b"Hello, ", b"world!"]

    ex, steps = run(app)
    assert len(steps) == 2 and steps[1] is DONE and isinstance(steps[0], bytes)
    assert b"Content-Length: 13\r\n" in steps[0] and steps[0].endswith(b"\r\n\r\nHello, world!")
    assert not ex.must_close and ex.proto.start_next_cycle()


def test_large_list_body_goes_out_as_the_apps_own_buffers() -> None:
    big = bytes(JOIN_MAX + 1)

    def app(environ: dict[str, Any], sr: StartResponse) -> list[bytes]:
        sr("200 OK", [])
        return [big, b"", big]

    _, steps = run(app)
    assert isinstance(steps[0], list) and steps[1] is DONE
    assert steps[0][1] is big and steps[0][2] is big and len(steps[0]) == 3  # no copy, no b""


def test_iterator_one_step_per_chunk_head_with_first_nonempty() -> None:
    def app(environ: dict[str, Any], sr: StartResponse) -> Iterator[bytes]:
        sr("200 OK", [])
        return iter([b"", b"ab", b"c"])

    _, steps = run(app)
    assert [type(s) for s in steps[:3]] == [bytes, bytes, bytes] and steps[3] is DONE
    first, second, end = steps[:3]
    assert isinstance(first, bytes) and first.startswith(b"HTTP/1.1 200 OK")
    assert b"Transfer-Encoding: chunked" in first and first.endswith(b"\r\n\r\n2\r\nab\r\n")
    assert second == b"1\r\nc\r\n" and end == b"0\r\n\r\n"


def test_empty_iterator_sends_head_at_the_end() -> None:
    def app(environ: dict[str, Any], sr: StartResponse) -> Iterator[bytes]:
        sr("204 No Content", [])
        return iter([])

    _, steps = run(app)
    assert len(steps) == 2 and steps[1] is DONE
    assert isinstance(steps[0], bytes) and steps[0].startswith(b"HTTP/1.1 204 No Content")


def test_generator_raising_before_start_response_gives_500() -> None:
    def app(environ: dict[str, Any], sr: StartResponse) -> Iterator[bytes]:
        raise ValueError("boom")
        yield b""

    ex, steps = run(app)
    assert isinstance(steps[0], bytes) and steps[0].startswith(b"HTTP/1.1 500 ")
    assert b"Connection: close" in steps[0] and steps[1] is DONE
    assert ex.must_close and ex.resp is not None and ex.resp.status_code == 500


def test_app_raising_in_its_call_gives_500() -> None:
    def app(environ: dict[str, Any], sr: StartResponse) -> list[bytes]:
        raise RuntimeError("boom")

    ex, steps = run(app)
    assert wire(steps).startswith(b"HTTP/1.1 500 ") and steps[-1] is DONE and ex.must_close


def test_generator_raising_after_start_response_before_body_gives_500() -> None:
    def app(environ: dict[str, Any], sr: StartResponse) -> Iterator[bytes]:
        sr("200 OK", [])
        raise ValueError("boom")
        yield b""

    _, steps = run(app)
    assert wire(steps).startswith(b"HTTP/1.1 500 ") and steps[-1] is DONE


def test_generator_raising_after_head_went_out_aborts() -> None:
    def app(environ: dict[str, Any], sr: StartResponse) -> Iterator[bytes]:
        sr("200 OK", [])
        yield b"part"
        raise ValueError("boom")

    _, steps = run(app)
    assert isinstance(steps[0], bytes) and steps[0].startswith(b"HTTP/1.1 200 OK")
    assert steps[1:] == [ABORT]


def test_non_bytes_item_before_head_is_a_clean_500() -> None:
    def app(environ: dict[str, Any], sr: StartResponse) -> list[Any]:
        sr("200 OK", [])
        return ["text"]

    _, steps = run(app)
    assert wire(steps).startswith(b"HTTP/1.1 500 ")


def test_body_without_start_response_is_a_500() -> None:
    def app(environ: dict[str, Any], sr: StartResponse) -> list[bytes]:
        return [b"x"]

    _, steps = run(app)
    assert wire(steps).startswith(b"HTTP/1.1 500 ")


def test_write_callable_then_iterable() -> None:
    def app(environ: dict[str, Any], sr: StartResponse) -> list[bytes]:
        write = sr("200 OK", [("Content-Length", "5")])
        write(b"abc")
        return [b"de"]

    ex, steps = run(app)
    sent = ex.written
    assert sent[0].startswith(b"HTTP/1.1 200 OK") and sent[0].endswith(b"\r\n\r\nabc")
    assert wire(steps) == b"de" and steps[-1] is DONE
    assert ex.proto.start_next_cycle()  # exactly 5 bytes: keep-alive


def test_write_overrunning_content_length_before_head_is_a_clean_500() -> None:
    def app(environ: dict[str, Any], sr: StartResponse) -> list[bytes]:
        write = sr("200 OK", [("Content-Length", "2")])
        write(b"abc")
        return []

    _, steps = run(app)
    assert wire(steps).startswith(b"HTTP/1.1 500 ")


@pytest.mark.parametrize("kind", ["list", "iter"])
def test_content_length_overrun_by_first_chunk_is_a_clean_500(kind: str) -> None:
    def app(environ: dict[str, Any], sr: StartResponse) -> Iterable[bytes]:
        sr("200 OK", [("Content-Length", "3")])
        return [b"abcd"] if kind == "list" else iter([b"abcd"])

    _, steps = run(app)
    assert wire(steps).startswith(b"HTTP/1.1 500 ") and steps[-1] is DONE


def test_content_length_overrun_by_a_later_chunk_aborts() -> None:
    def app(environ: dict[str, Any], sr: StartResponse) -> Iterator[bytes]:
        sr("200 OK", [("Content-Length", "3")])
        return iter([b"ab", b"cd"])

    _, steps = run(app)
    assert isinstance(steps[0], bytes) and steps[0].endswith(b"ab") and steps[1:] == [ABORT]


@pytest.mark.parametrize("kind", ["list", "iter"])
def test_content_length_underrun_closes_after_the_response(kind: str) -> None:
    def app(environ: dict[str, Any], sr: StartResponse) -> Iterable[bytes]:
        sr("200 OK", [("Content-Length", "10")])
        return [b"abc"] if kind == "list" else iter([b"abc"])

    ex, steps = run(app)
    assert wire(steps).endswith(b"\r\n\r\nabc") and steps[-1] is DONE
    assert not ex.proto.start_next_cycle()  # the client cannot frame what follows


@pytest.mark.parametrize("kind", ["list", "iter"])
def test_head_request_sends_no_body_and_any_length_fits(kind: str) -> None:
    def app(environ: dict[str, Any], sr: StartResponse) -> Iterable[bytes]:
        sr("200 OK", [("Content-Length", "2")])
        return [b"longer"] if kind == "list" else iter([b"longer"])

    _, steps = run(app, HEAD)
    out = wire(steps)
    assert out.startswith(b"HTTP/1.1 200 OK") and out.endswith(b"\r\n\r\n")
    assert b"Content-Length: 2\r\n" in out and steps[-1] is DONE


@pytest.mark.parametrize("status", ["204 No Content", "304 Not Modified"])
def test_204_and_304_send_no_body(status: str) -> None:
    def app(environ: dict[str, Any], sr: StartResponse) -> list[bytes]:
        sr(status, [])
        return [b"ignored"]

    _, steps = run(app)
    out = wire(steps)
    assert out.startswith(b"HTTP/1.1 " + status.encode()) and out.endswith(b"\r\n\r\n")
    assert b"ignored" not in out


def test_file_wrapper_with_fileno_is_head_then_sendfile_then_done() -> None:
    with tempfile.TemporaryFile() as f:
        f.write(b"0123456789")
        f.seek(2)

        def app(environ: dict[str, Any], sr: StartResponse) -> FileWrapper:
            sr("200 OK", [])
            return FileWrapper(f)

        ex, steps = run(app)
        assert isinstance(steps[0], bytes) and b"Content-Length: 8\r\n" in steps[0]
        assert steps[1] == SendFile(f.fileno(), 2, 8)
        assert steps[2:] == [b"", DONE]
        assert ex.proto.start_next_cycle()  # the core counted the 8 bytes


def test_file_wrapper_with_content_length_sends_no_more() -> None:
    with tempfile.TemporaryFile() as f:
        f.write(b"0123456789")
        f.seek(0)

        def app(environ: dict[str, Any], sr: StartResponse) -> FileWrapper:
            sr("200 OK", [("Content-Length", "4")])
            return FileWrapper(f)

        _, steps = run(app)
        assert steps[1] == SendFile(f.fileno(), 0, 4)


def test_file_wrapper_without_fileno_is_iterated() -> None:
    def app(environ: dict[str, Any], sr: StartResponse) -> FileWrapper:
        sr("200 OK", [])
        return FileWrapper(io.BytesIO(b"abcdef"), blksize=4)

    _, steps = run(app)
    assert not any(isinstance(s, SendFile) for s in steps)
    out = wire(steps)
    assert out.endswith(b"\r\n\r\n4\r\nabcd\r\n2\r\nef\r\n0\r\n\r\n") and steps[-1] is DONE


def test_file_wrapper_on_head_request_is_not_sent() -> None:
    with tempfile.TemporaryFile() as f:
        f.write(b"0123456789")
        f.seek(0)

        def app(environ: dict[str, Any], sr: StartResponse) -> FileWrapper:
            sr("200 OK", [("Content-Length", "10")])
            return FileWrapper(f)

        _, steps = run(app, HEAD)
        assert not any(isinstance(s, SendFile) for s in steps)
        assert wire(steps).endswith(b"\r\n\r\n")


def test_body_error_gives_its_status_not_500() -> None:
    ex = Ex()

    def app(environ: dict[str, Any], sr: StartResponse) -> list[bytes]:
        ex.body_error = ProtocolError(400, "bad chunk")
        raise ValueError("body incomplete")

    step = ex.producer.call(app, {})  # type: ignore[arg-type]
    assert isinstance(step, bytes) and step.startswith(b"HTTP/1.1 400 ")
    assert ex.producer.next() is DONE and ex.resp is not None and ex.resp.status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        lambda: [b"a"],
        lambda: iter([b"a", b"b"]),
        lambda: iter([b"a", 1]),
        lambda: iter([]),
    ],
)
def test_close_is_called_exactly_once(body: Callable[[], Iterable[Any]]) -> None:
    result = Closing(body())

    def app(environ: dict[str, Any], sr: StartResponse) -> Closing:
        sr("200 OK", [])
        return result

    ex, _ = run(app)
    ex.producer.close()  # the pump closes once more when it finishes: still one call
    ex.producer.close()
    assert result.closed == 1


def test_close_on_abort_mid_response_once() -> None:
    def gen() -> Iterator[bytes]:
        yield b"a"
        raise ValueError("boom")

    result = Closing(gen())

    def app(environ: dict[str, Any], sr: StartResponse) -> Closing:
        sr("200 OK", [])
        return result

    ex, steps = run(app)
    ex.producer.close()
    assert steps[-1] is ABORT and result.closed == 1


def test_close_raising_is_logged_not_propagated(caplog: pytest.LogCaptureFixture) -> None:
    class Bad(Closing):
        def close(self) -> None:
            raise OSError("close failed")

    def app(environ: dict[str, Any], sr: StartResponse) -> Bad:
        sr("200 OK", [])
        return Bad([b"x"])

    ex, _ = run(app)
    ex.producer.close()
    assert "error closing" in caplog.text
