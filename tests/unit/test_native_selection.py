"""``http_parser`` (auto|native|python): the settings row, the CLI's error when ``native`` was
not built, and the worker's connections using the parser chosen (corral.http.native)."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys

import pytest

from corral import cliargs, config
from corral.choices import HttpParser
from corral.http import native
from corral.http.headfields import PythonHead
from corral.master.worker_settings import worker_settings
from corral.worker.conn import accepted
from tests.corpus.parsers import require


def _cfg(*argv: str) -> config.Config:
    parser = argparse.ArgumentParser()
    cliargs.add_arguments(parser)
    return config.load(parser.parse_args(list(argv)), environ={})


@pytest.mark.parametrize(
    ("argv", "native_head"),
    [((), True), (("--http-parser", "auto"), True), (("--http-parser", "native"), True),
     (("--http-parser", "python"), False)],
)  # fmt: skip
def test_the_worker_s_connections_use_the_parser_chosen(
    argv: tuple[str, ...], native_head: bool
) -> None:
    require(True)
    cfg = _cfg(*argv)
    settings = worker_settings(cfg)
    assert settings.native_head is native_head
    a, b = socket.socketpair()
    with a, b:
        conn = accepted(a, "", ("localhost", "8000"), settings)
        kind = native.NativeHead if native_head else PythonHead
        assert isinstance(conn.proto._head, kind)


def test_env_and_default() -> None:
    assert config.defaults().http_parser is HttpParser.AUTO
    parser = argparse.ArgumentParser()
    cliargs.add_arguments(parser)
    cfg = config.load(parser.parse_args([]), environ={"CORRAL_HTTP_PARSER": "python"})
    assert cfg.http_parser is HttpParser.PYTHON
    with pytest.raises(config.ConfigError, match="http_parser"):
        config.load(parser.parse_args([]), environ={"CORRAL_HTTP_PARSER": "c"})


# A corral process whose extension cannot be imported, as on a machine without a C compiler.
_WITHOUT = (
    "import sys; sys.modules['corral.http._nativehead'] = None\n"
    "from corral.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def _serve_without_extension(*flags: str) -> subprocess.CompletedProcess[str]:
    argv = ["serve", *flags, "--print-config", "app:app"]  # the app is never imported
    return subprocess.run(
        [sys.executable, "-c", _WITHOUT, *argv], capture_output=True, text=True, timeout=60
    )


def test_native_without_the_extension_is_a_one_line_cli_error() -> None:
    done = _serve_without_extension("--http-parser", "native")
    assert done.returncode == 2, done
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("corral: error: ") and "not built" in lines[0]


def test_auto_without_the_extension_falls_back_silently() -> None:
    done = _serve_without_extension("--http-parser", "auto")
    assert done.returncode == 0, done
    assert done.stderr == ""
    assert 'http_parser = "auto"' in done.stdout
    probe = (
        "import sys; sys.modules['corral.http._nativehead'] = None\n"
        "from corral.http import Connection, native\n"
        "from corral.http.headfields import PythonHead\n"
        "assert not native.AVAILABLE and isinstance(Connection()._head, PythonHead)\n"
    )
    subprocess.run([sys.executable, "-c", probe], check=True, timeout=60)
