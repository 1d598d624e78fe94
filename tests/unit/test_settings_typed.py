"""The typed settings: generated from the table, fresh, and checked by mypy."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest
from mypy import api as mypy_api

from corral import _settings_gen, config, settings_codegen
from corral.choices import AccessLogFormat
from corral.memory.gcpolicy import GcPreset
from tests.worker_defaults import production_worker_settings

ROOT = Path(__file__).resolve().parents[2]
PROBE = ROOT / "tests" / "typing" / "probe_misspelled.py"


def test_generated_module_is_current() -> None:
    text = (ROOT / "src" / "corral" / "_settings_gen.py").read_text()
    assert text == settings_codegen.settings_python(), (
        "src/corral/_settings_gen.py is stale: run `make settings`"
    )


def test_every_row_is_a_field_in_order() -> None:
    fields = [f.name for f in dataclasses.fields(_settings_gen.Settings)]
    assert fields == [s.name for s in config.SETTINGS]


def test_names_flags_and_aliases_are_unique() -> None:
    seen: dict[str, str] = {}
    for s in config.SETTINGS:
        for word in (s.name, *s.alias_keys, *s.cli_flags, *s.alias_flags):
            assert word not in seen or seen[word] == s.name, f"{word} is {seen[word]} and {s.name}"
            seen[word] = s.name


def test_enum_settings_load_as_enums() -> None:
    cfg = config.load(None, environ={"CORRAL_GC": "freeze"})
    assert cfg.gc is GcPreset.FREEZE
    assert config.defaults().access_log is AccessLogFormat.OFF
    with pytest.raises(config.ConfigError, match="must be one of auto, freeze, cpython"):
        config.load(None, environ={"CORRAL_GC": "off"})


def test_config_is_frozen() -> None:
    cfg = config.defaults()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.workers = 3  # type: ignore[misc]


def test_tests_run_the_production_worker_values() -> None:
    settings = production_worker_settings()
    assert settings.accept_batch == 1  # what `corral serve` runs (was 64 in tests)
    assert settings.max_connections == config.defaults().worker_connections


def _expected_errors() -> set[tuple[int, str]]:
    found = set()
    for number, line in enumerate(PROBE.read_text().splitlines(), 1):
        match = re.search(r"# expect: ([a-z-]+)", line)
        if match:
            found.add((number, match.group(1)))
    return found


@pytest.mark.timeout(300)
def test_misspelled_setting_is_a_mypy_error() -> None:
    stdout, stderr, _ = mypy_api.run(
        ["--config-file", str(ROOT / "pyproject.toml"), "--strict", str(PROBE)]
    )
    errors = {
        (int(m.group(1)), m.group(2))
        for m in re.finditer(r"probe_misspelled\.py:(\d+): error: .*\[([a-z-]+)\]", stdout)
    }
    assert errors == _expected_errors(), stdout + stderr
    assert "gracefull_timeout_s" in stdout
