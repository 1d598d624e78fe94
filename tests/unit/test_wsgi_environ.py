"""The environ: complete per PEP 3333, checked by wsgiref.validate, and decoded correctly."""

from __future__ import annotations

import io
from typing import Any
from wsgiref.validate import validator

import pytest

from corral.http.events import Request
from corral.wsgi import (
    FileWrapper,
    InputStream,
    StartResponse,
    build_environ,
    connection_environ,
    decode_path,
    split_host,
)


def make_request(
    target: bytes = b"/path?x=1",
    headers: list[tuple[bytes, bytes]] | None = None,
    method: bytes = b"GET",
    version: str = "1.1",
    content_length: int | None = None,
    chunked: bool = False,
) -> Request:
    path, _, query = target.partition(b"?")
    hdrs = headers if headers is not None else [(b"host", b"example.com:8080")]
    host = next((v for k, v in hdrs if k == b"host"), b"")
    return Request(
        method=method,
        target=target,
        path=path,
        query=query,
        http_version=version,
        headers=hdrs,
        host=host,
        keep_alive=True,
        content_length=content_length,
        chunked=chunked,
        expect_continue=False,
    )


def base(**kw: Any) -> dict[str, Any]:
    args: dict[str, Any] = {
        "server_name": "127.0.0.1",
        "server_port": "9000",
        "remote_addr": "10.0.0.1",
        "remote_port": "5555",
        "errors": io.StringIO(),
        "file_wrapper": FileWrapper,
    }
    args.update(kw)
    return connection_environ(**args)


def environ_for(request: Request, root_path: str = "", body: bytes = b"") -> dict[str, Any]:
    chunks = [body] if body else []
    return build_environ(
        request, base(), InputStream(lambda: chunks.pop() if chunks else b""), root_path
    )


def run_validated(environ: dict[str, Any]) -> dict[str, Any]:
    """Run a trivial app under wsgiref's validator and return the environ it saw."""
    seen: dict[str, Any] = {}

    def app(env: dict[str, Any], start_response: Any) -> list[bytes]:
        seen.update(env)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    resp = StartResponse(lambda data: None)
    result = validator(app)(environ, resp)
    assert b"".join(result) == b"ok"
    result.close()  # type: ignore[attr-defined]
    assert resp.status_code == 200
    return seen


def test_environ_passes_wsgiref_validator() -> None:
    env = run_validated(environ_for(make_request()))
    assert env["REQUEST_METHOD"] == "GET"
    assert env["PATH_INFO"] == "/path"
    assert env["QUERY_STRING"] == "x=1"
    assert env["SERVER_NAME"] == "example.com"
    assert env["SERVER_PORT"] == "8080"
    assert env["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert env["REMOTE_ADDR"] == "10.0.0.1"
    assert env["REMOTE_PORT"] == "5555"
    assert env["wsgi.version"] == (1, 0)
    assert env["wsgi.multiprocess"] is True
    assert env["wsgi.run_once"] is False
    assert env["wsgi.input_terminated"] is True
    assert env["wsgi.file_wrapper"] is FileWrapper
    assert env["RAW_URI"] == "/path?x=1"
    assert env["SCRIPT_NAME"] == ""


def test_post_body_environ_passes_validator() -> None:
    req = make_request(
        b"/submit",
        [(b"host", b"h"), (b"content-type", b"text/plain"), (b"content-length", b"5")],
        method=b"POST",
        content_length=5,
    )
    env = run_validated(environ_for(req, body=b"hello"))
    assert env["CONTENT_TYPE"] == "text/plain"
    assert env["CONTENT_LENGTH"] == "5"
    assert "HTTP_CONTENT_TYPE" not in env
    assert "HTTP_CONTENT_LENGTH" not in env


def test_chunked_request_has_no_content_length() -> None:
    req = make_request(
        b"/", [(b"host", b"h"), (b"transfer-encoding", b"chunked")], b"POST", chunked=True
    )
    env = run_validated(environ_for(req))
    assert "CONTENT_LENGTH" not in env
    assert env["HTTP_TRANSFER_ENCODING"] == "chunked"


def test_no_host_uses_socket_address() -> None:
    env = run_validated(environ_for(make_request(headers=[])))
    assert (env["SERVER_NAME"], env["SERVER_PORT"]) == ("127.0.0.1", "9000")


def test_repeated_headers_are_combined() -> None:
    headers = [
        (b"host", b"h"),
        (b"accept", b"text/html"),
        (b"accept", b"text/plain"),
        (b"cookie", b"a=1"),
        (b"cookie", b"b=2"),
        (b"x-custom-thing", b"v"),
    ]
    env = environ_for(make_request(headers=headers))
    assert env["HTTP_ACCEPT"] == "text/html, text/plain"
    assert env["HTTP_COOKIE"] == "a=1; b=2"
    assert env["HTTP_X_CUSTOM_THING"] == "v"


def test_path_is_percent_decoded_to_latin1() -> None:
    env = environ_for(make_request(b"/caf%C3%A9/a%2Fb?q=%20"))
    assert env["PATH_INFO"] == "/caf\xc3\xa9/a/b"
    assert env["PATH_INFO"].encode("latin-1").decode("utf-8") == "/café/a/b"
    assert env["QUERY_STRING"] == "q=%20"  # the query stays raw
    assert env["RAW_URI"] == "/caf%C3%A9/a%2Fb?q=%20"


@pytest.mark.parametrize(
    ("path", "script", "info"),
    [
        (b"/app/x", "/app", "/x"),
        (b"/app", "/app", ""),
        (b"/application", "/app", "/application"),
        (b"/other", "/app", "/other"),
    ],
)
def test_root_path(path: bytes, script: str, info: str) -> None:
    env = environ_for(make_request(path), root_path="/app")
    assert (env["SCRIPT_NAME"], env["PATH_INFO"]) == (script, info)


def test_latin1_header_bytes_survive() -> None:
    env = environ_for(make_request(headers=[(b"host", b"h"), (b"x-name", b"\xe9t\xe9")]))
    assert env["HTTP_X_NAME"].encode("latin-1") == b"\xe9t\xe9"


@pytest.mark.parametrize(
    ("host", "expected"),
    [
        (b"example.com", ("example.com", "80")),
        (b"example.com:81", ("example.com", "81")),
        (b"[::1]:8443", ("[::1]", "8443")),
        (b"[::1]", ("[::1]", "80")),
    ],
)
def test_split_host(host: bytes, expected: tuple[str, str]) -> None:
    assert split_host(host, "80") == expected


def test_decode_path_without_escapes_is_identity() -> None:
    assert decode_path(b"/plain/path") == "/plain/path"


def test_unix_socket_style_base() -> None:
    env = connection_environ(
        server_name="localhost", server_port="80", remote_addr="unix", remote_port=""
    )
    assert env["REMOTE_ADDR"] == "unix"
    assert env["wsgi.url_scheme"] == "http"
    assert env["wsgi.multithread"] is False


def test_server_software_names_corral_and_its_version() -> None:
    import corral

    env = build_environ(make_request(), base(), InputStream())
    assert env["SERVER_SOFTWARE"] == f"corral/{corral.__version__}"  # RFC 3875 §4.1.17
