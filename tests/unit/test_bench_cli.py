"""corral.bench.cli: argument parsing and the exit-2 path for bad input (no sockets)."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.bench.cli import EXIT_USAGE, build_parser, config_from_args, main
from corral.bench.config import DEFAULT_CONNECTIONS, BenchConfigError, LoadConfig

URL = "http://127.0.0.1:8080/"


def parse(*argv: str) -> LoadConfig:
    return config_from_args(build_parser().parse_args(list(argv)))


def test_defaults() -> None:
    config = parse(URL)
    assert config.urls == (URL,)
    assert config.connections == DEFAULT_CONNECTIONS
    assert config.requests is None and config.duration_s is None and config.rate is None
    assert config.keepalive and config.method == "GET" and config.procs == 1
    assert config.timeout_s == 30.0


def test_ab_and_wrk_style_options() -> None:
    config = parse(
        "-n", "500", "-c", "8", "-d", "1m", "-k", "-m", "PUT", "-H", "A: 1", "-H", "B: 2",
        "--timeout", "250ms", "--procs", "2", "--rate", "200", "--max-time", "90", URL,
    )  # fmt: skip
    assert config.requests == 500 and config.connections == 8
    assert config.duration_s == 60.0 and config.keepalive
    assert config.method == "PUT" and config.headers == (("A", "1"), ("B", "2"))
    assert config.timeout_s == 0.25 and config.procs == 2 and config.rate == 200.0
    assert config.max_time_s == 90.0


def test_no_keepalive() -> None:
    assert not parse("--no-keepalive", URL).keepalive


def test_body_file_defaults_to_post(tmp_path: Path) -> None:
    body = tmp_path / "body.json"
    body.write_bytes(b'{"a": 1}')
    config = parse("-p", str(body), "-T", "application/json", URL)
    assert config.method == "POST"
    assert config.body == b'{"a": 1}'
    assert config.content_type == "application/json"
    assert parse("-p", str(body), "-m", "PATCH", URL).method == "PATCH"


def test_urls_file(tmp_path: Path) -> None:
    listing = tmp_path / "urls.txt"
    listing.write_text(f"# comment\n{URL}a\n\n  {URL}b  \n")
    assert parse("--urls", str(listing)).urls == (URL + "a", URL + "b")
    assert parse("--urls", str(listing), URL + "c").urls == (URL + "c", URL + "a", URL + "b")


def test_missing_files_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(BenchConfigError, match="cannot read -p"):
        parse("-p", str(tmp_path / "nope"), URL)
    empty = tmp_path / "empty"
    empty.write_text("# nothing\n")
    with pytest.raises(BenchConfigError, match="holds no URLs"):
        parse("--urls", str(empty))


@pytest.mark.parametrize(
    "argv",
    [
        [],  # no URL
        ["-d", "soon", URL],
        ["-n", "many", URL],
        ["-c", "0", URL],
        ["--rate", "0", URL],
        ["-H", "nonsense", URL],
        ["--json", "--csv", URL],
        ["--bogus", URL],
        ["https://127.0.0.1/"],
        ["--procs", "3", "-c", "2", URL],
        ["--timeout", "0", URL],
    ],
)
def test_bad_input_exits_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("corral bench: ")
    assert "Traceback" not in captured.err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: corral bench")
    assert "coordinated omission" in out
