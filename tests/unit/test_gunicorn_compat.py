"""gunicorn's spellings: flags, Python config files, hooks, and the migration table."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral import cli, config, hooks, settings_codegen
from corral import gunicorn_compat as compat
from corral.asgi import interface_for
from corral.choices import EventLoop, Interface, Lifespan, WorkerClass
from corral.http import Request
from corral.master.appload import load_app
from corral.master.worker_settings import worker_settings
from corral.worker.accesslog import format_line

ROOT = Path(__file__).resolve().parents[2]


def _load(*argv: str, environ: dict[str, str] | None = None) -> config.Config:
    return config.load(cli._serve_parser().parse_args(list(argv)), environ=environ or {})


def test_gunicorn_flags_are_aliases() -> None:
    cfg = _load(
        *("--keep-alive", "7", "--timeout", "12", "--graceful-timeout", "9"),
        *("--access-logfile", "-", "--error-logfile", "/tmp/e.log", "--access-logformat", "%(h)s"),
        *("--limit-request-field_size", "100", "--limit-request-line", "200"),
        *("--limit-request-fields", "30", "-p", "/tmp/x.pid", "-u", "nobody", "-g", "nogroup"),
        *("-m", "007", "-e", "A=1", "-e", "B=x=y", "--pythonpath", "a,b", "--chdir", "/tmp"),
        *("--max-requests-jitter", "5", "--worker-connections", "50", "--backlog", "10"),
        *("--preload", "-k", "gthread", "--threads", "4", "-w", "2", "-b", "127.0.0.1:0"),
    )
    assert (cfg.keepalive_timeout_s, cfg.timeout_s, cfg.graceful_timeout_s) == (7.0, 12.0, 9.0)
    assert (cfg.access_log_file, cfg.error_log_file, cfg.access_log_format) == (
        "-",
        "/tmp/e.log",
        "%(h)s",
    )
    assert (cfg.limit_request_field_size, cfg.limit_request_line) == (100, 200)
    assert (cfg.limit_request_fields, cfg.pidfile, cfg.user, cfg.group) == (
        30,
        "/tmp/x.pid",
        "nobody",
        "nogroup",
    )
    assert (cfg.umask, cfg.env, cfg.pythonpath, cfg.chdir) == (7, ["A=1", "B=x=y"], "a,b", "/tmp")
    assert (cfg.max_requests_jitter, cfg.worker_connections, cfg.backlog) == (5, 50, 10)
    assert cfg.preload and cfg.worker_class is WorkerClass.GTHREAD and cfg.threads == 4
    assert _load("-t", "3").timeout_s == 3.0


@pytest.mark.parametrize(
    "word", ["asgi", "uvicorn.workers.UvicornWorker", "uvicorn_worker.UvicornWorker"]
)
def test_asgi_worker_classes_mean_the_asgi_worker(word: str) -> None:
    cfg = _load("-k", word, "--asgi-loop", "asyncio", "--asgi-lifespan", "on")
    assert cfg.worker_class is WorkerClass.ASGI
    assert interface_for(cfg.interface, cfg.worker_class) is Interface.ASGI
    assert (cfg.loop, cfg.lifespan) == (EventLoop.ASYNCIO, Lifespan.ON)
    assert _load("--websocket-max-message-size", "1000").ws_max_message_bytes == 1000
    assert interface_for(Interface.WSGI, cfg.worker_class) is Interface.WSGI  # explicit wins
    assert interface_for(Interface.AUTO, WorkerClass.SYNC) is Interface.AUTO


def test_timeout_is_a_real_flag_not_a_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        _load("--timeou", "5")  # no abbreviations: --timeout is its own flag
    assert "unrecognized arguments: --timeou" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "mode"), [("0o22", 0o22), ("022", 0o22), ("18", 18), ("0", 0)])
def test_umask_reads_like_gunicorns(text: str, mode: int) -> None:
    assert _load("--umask", text).umask == mode


def test_other_worker_classes_are_refused_in_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["serve", "-k", "gevent"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "worker class 'gevent' is not supported" in err


def test_unsupported_gunicorn_flags(caplog: pytest.LogCaptureFixture) -> None:
    with pytest.raises(config.ConfigError, match="gunicorn's daemon is not supported by corral"):
        _load("--daemon")
    assert _load("--reuse-port").workers == 0  # a warning, not an error
    assert "gunicorn's reuse_port is ignored" in caplog.text
    with pytest.raises(config.ConfigError, match="gunicorn's http2_cleartext is not supported"):
        _load("--http2-cleartext", "on")


def test_env_and_bad_key_values() -> None:
    with pytest.raises(config.ConfigError, match="'oops' is not KEY=VALUE"):
        _load("-e", "oops")


@pytest.fixture
def conf(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "gunicorn.conf.py"
    yield path
    hooks.install({})


def _write(path: Path, text: str) -> str:
    path.write_text(textwrap.dedent(text))
    return str(path)


def test_python_config_file(conf: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _write(
        conf,
        """
        import multiprocessing

        bind = "127.0.0.1:9000"
        workers = multiprocessing.cpu_count() * 2 + 1
        keepalive = 4
        timeout = 60
        accesslog = "-"
        errorlog = None
        loglevel = "warning"
        raw_env = ["DJANGO_SETTINGS_MODULE=proj.settings"]
        user = 1000
        daemon = False
        cores = 8
        _private = object()

        def post_fork(server, worker):
            pass

        def helper():
            pass
        """,
    )
    cfg, found = config.load_with_hooks(argparse.Namespace(config=path), environ={})
    assert cfg.bind == ["127.0.0.1:9000"] and cfg.workers > 1
    assert (cfg.keepalive_timeout_s, cfg.timeout_s) == (4.0, 60.0)
    assert (cfg.access_log_file, cfg.error_log_file, cfg.log_level) == ("-", "-", "warning")
    assert cfg.env == ["DJANGO_SETTINGS_MODULE=proj.settings"] and cfg.user == "1000"
    assert set(found) == {"post_fork"}
    assert "ignoring 'cores'" in caplog.text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("keepalived = 3\n", "unknown setting 'keepalived' \\(did you mean 'keepalive'\\?\\)"),
        ("def post_frok(server, worker):\n    pass\n", "did you mean 'post_fork'"),
        ("workers = 'many'\n", "workers='many'"),
        ("daemon = True\n", "gunicorn's daemon is not supported by corral"),
        ("bind = [\n", "line 1"),
        ("raise RuntimeError('no')\n", "raised RuntimeError"),
    ],
)
def test_python_config_errors_are_one_line(conf: Path, body: str, message: str) -> None:
    path = _write(conf, body)
    with pytest.raises(config.ConfigError, match=message) as info:
        config.load(argparse.Namespace(config=path), environ={})
    assert "\n" not in str(info.value)


def test_toml_config_stays_toml_and_takes_gunicorn_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text("keepalive = 3\nworkers = 2\n")
    cfg = config.load(argparse.Namespace(config=str(path)), environ={})
    assert (cfg.keepalive_timeout_s, cfg.workers) == (3.0, 2)


def test_hooks_get_gunicorns_arguments(conf: Path) -> None:
    seen: list[tuple[str, object, object]] = []

    def post_fork(server: hooks.Server, worker: hooks.Worker) -> None:
        seen.append(("post_fork", server.pid, worker.pid))
        assert server.cfg.keepalive == 5.0 and worker.cfg.timeout == 30.0
        assert worker.age == 7 and worker.ppid == 123
        worker.log.info("post_fork works")

    def nworkers_changed(server: hooks.Server, new: int, old: int) -> None:
        seen.append(("nworkers_changed", new, old))

    hooks.install({"post_fork": post_fork, "nworkers_changed": nworkers_changed})
    cfg = config.defaults()
    hooks.post_fork(cfg, 123, 7)
    hooks.nworkers_changed(cfg, 3, 2)
    assert seen == [("post_fork", 123, os.getpid()), ("nworkers_changed", 3, 2)]


def test_notification_hooks_log_their_errors(caplog: pytest.LogCaptureFixture) -> None:
    def on_exit(server: hooks.Server) -> None:
        raise ValueError("boom")

    hooks.install({"on_exit": on_exit})
    try:
        hooks.on_exit(config.defaults())
    finally:
        hooks.install({})
    assert "on_exit hook failed" in caplog.text


def test_post_fork_setting_takes_gunicorns_arguments_or_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "forkhooks.py").write_text(
        "calls = []\n"
        "def two(server, worker):\n    calls.append((server.pid, worker.age))\n"
        "def zero():\n    calls.append('zero')\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    for spec in ("forkhooks:two", "forkhooks:zero"):
        cfg = config.load(argparse.Namespace(post_fork=spec), environ={})
        hooks.post_fork(cfg, 1, 2)
    assert sys.modules["forkhooks"].calls == [(1, 2), "zero"]


def test_module_alone_means_module_application(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pkg = tmp_path / "src" / "proj"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "wsgi.py").write_text("def application(environ, start_response):\n    return []\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    app = load_app("proj.wsgi", pythonpath="src")
    assert app.__name__ == "application"
    assert str(tmp_path / "src") in sys.path


def test_every_gunicorn_setting_is_accounted_for() -> None:
    names = [name for name, _, _, _ in compat.GUNICORN_SETTINGS] + list(compat.GUNICORN_HOOKS)
    for name in names:
        supported = name in config.BY_KEY or name in compat.HOOKS  # post_fork is both
        assert supported != (name in compat.NOT_SUPPORTED), f"gunicorn's {name}"
    stale = set(compat.NOT_SUPPORTED) - set(names)
    assert not stale, f"NOT_SUPPORTED names gunicorn does not have: {stale}"


def test_gunicorn_flags_reach_the_row_they_name() -> None:
    for name, flags, _, _ in compat.GUNICORN_SETTINGS:
        row = config.BY_KEY.get(name)
        if row is not None:
            missing = set(flags) - set(row.cli_flags + row.alias_flags)
            assert not missing, f"{name}: {missing} are not flags of {row.name}"


def test_migrating_doc_is_current() -> None:
    doc = (ROOT / "docs" / "migrating.md").read_text()
    fresh = settings_codegen.migrating_markdown()
    assert doc == fresh, "docs/migrating.md is stale: run `make settings`"


def test_gunicorn_conf_py_is_read_when_no_config_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "gunicorn.conf.py").write_text("workers = 3\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("CORRAL_CONFIG", raising=False)
    assert cli.main(["serve", "--print-config"]) == 0
    assert "workers = 3" in capsys.readouterr().out.splitlines()


def _request() -> Request:
    return Request(
        method=b"GET",
        target=b"/a?b=c",
        path=b"/a",
        query=b"b=c",
        http_version="1.1",
        headers=[(b"user-agent", b"curl/8"), (b"x-forwarded-for", b"10.1.1.1")],
        host=b"h",
        keep_alive=True,
        content_length=None,
        chunked=False,
        expect_continue=False,
    )


def test_access_log_format_takes_gunicorns_atoms() -> None:
    fmt = '%(h)s "%(r)s" %(m)s %(U)s %(q)s %(H)s %(s)s %(b)s %(a)s %({x-forwarded-for}i)s'
    line = format_line(fmt + " %(D)s %(M)s", "10.0.0.1", _request(), 200, 0, 0.0, 0.0125)
    assert line == (
        '10.0.0.1 "GET /a?b=c HTTP/1.1" GET /a b=c HTTP/1.1 200 - curl/8 10.1.1.1 12500 12'
    )


@pytest.mark.parametrize(("fmt", "message"), [("%(zz)s", "unknown atom"), ("%(h)", "not a %")])
def test_bad_access_log_format_is_refused_at_startup(fmt: str, message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        _load("--access-logformat", fmt)


def test_access_logfile_turns_the_access_log_on() -> None:
    assert worker_settings(_load("--access-logfile", "-")).access_log == "combined"
    assert worker_settings(_load()).access_log == "off"
