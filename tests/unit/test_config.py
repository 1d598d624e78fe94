"""The settings table: precedence, validation, TOML errors, and the generated docs."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from corral import cliargs, config, settings_codegen

ROOT = Path(__file__).resolve().parents[2]


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    cliargs.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults() -> None:
    cfg = config.load(_args(), environ={})
    assert cfg.bind == ["127.0.0.1:8000"]
    assert cfg.gc == "auto"
    assert cfg.effective_workers() >= 1


def test_precedence_flag_over_env_over_file(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text('workers = 3\nkeepalive_timeout_s = 1.5\nbind = ["127.0.0.1:1"]\n')
    env = {"CORRAL_WORKERS": "5", "CORRAL_CONFIG": str(toml)}
    cfg = config.load(_args("-w", "7"), environ=env)
    assert cfg.workers == 7
    assert cfg.keepalive_timeout_s == 1.5
    assert cfg.bind == ["127.0.0.1:1"]
    assert config.load(_args(), environ=env).workers == 5


def test_repeatable_bind_and_list_env() -> None:
    cfg = config.load(_args("-b", "127.0.0.1:0", "-b", "unix:/tmp/x.sock"), environ={})
    assert cfg.bind == ["127.0.0.1:0", "unix:/tmp/x.sock"]
    cfg = config.load(_args(), environ={"CORRAL_BIND": "127.0.0.1:1, [::1]:2"})
    assert cfg.bind == ["127.0.0.1:1", "[::1]:2"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("-w", "-1"), "must be 0 or more"),
        (("-w", "two"), "workers='two'"),
        (("--gc", "off"), "must be one of"),
        (("-b", "localhost"), "expected HOST:PORT"),
        (("-b", "::1:80"), "brackets"),
        (("-b", "127.0.0.1:99999"), "port must be"),
        (("--timeout-s", "0"), "greater than 0"),
    ],
)
def test_bad_values_are_clear(argv: tuple[str, ...], message: str) -> None:
    with pytest.raises(config.ConfigError, match=message):
        config.load(_args(*argv), environ={})


def test_unknown_toml_key_names_the_closest(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("worker = 3\n")
    with pytest.raises(config.ConfigError, match="did you mean 'workers'"):
        config.load(_args("-c", str(toml)), environ={})


def test_unknown_env_key_warns_with_the_closest(caplog: pytest.LogCaptureFixture) -> None:
    cfg = config.load(_args(), environ={"CORRAL_KEEPALIVE_TIMEOUT": "3"})
    assert cfg.keepalive_timeout_s == 5.0
    assert "did you mean 'keepalive_timeout_s'" in caplog.text


def test_foreign_env_vars_are_tolerated_with_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    kubernetes = {  # what a Service named "corral" puts in every pod
        "CORRAL_SERVICE_HOST": "10.0.0.1",
        "CORRAL_SERVICE_PORT": "8000",
        "CORRAL_PORT": "tcp://10.0.0.1:8000",
        "CORRAL_PORT_8000_TCP_ADDR": "10.0.0.1",
        "CORRAL_WORKERS": "3",
    }
    cfg = config.load(_args(), environ=kubernetes)
    assert cfg.workers == 3
    warnings = [r for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and "CORRAL_SERVICE_HOST" in warnings[0].getMessage()


def test_bad_toml_is_a_clear_error(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("workers = \n")
    with pytest.raises(config.ConfigError, match="not valid TOML"):
        config.load(_args("-c", str(toml)), environ={})
    with pytest.raises(config.ConfigError, match="cannot read"):
        config.load(_args("-c", str(tmp_path / "missing.toml")), environ={})


def test_toml_types_are_checked(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("workers = 2.5\n")
    with pytest.raises(config.ConfigError, match="expected an integer"):
        config.load(_args("-c", str(toml)), environ={})


def test_print_config_round_trips(tmp_path: Path) -> None:
    cfg = config.load(_args("-w", "3", "--warmup", "/a"), environ={})
    toml = tmp_path / "c.toml"
    toml.write_text(
        "".join(
            line + "\n" for line in cfg.to_toml().splitlines() if not line.startswith("config ")
        )
    )
    again = config.load(_args("-c", str(toml)), environ={})
    assert {k: v for k, v in again.values.items() if k != "config"} == {
        k: v for k, v in cfg.values.items() if k != "config"
    }


def test_settings_doc_is_current() -> None:
    doc = (ROOT / "docs" / "settings.md").read_text()
    fresh = settings_codegen.settings_markdown()
    assert doc == fresh, "docs/settings.md is stale: run `make settings`"
