# corral: `make demo` runs the server on the demo app with its dashboard; `make test` runs the suite.
SHELL := /bin/bash
PY_NEWEST := $(shell scripts/find-python)
PY_BASE ?= python3
PIP_FLAGS ?= -q --disable-pip-version-check
PORT ?= 8000
# the C sources installing corral compiles: a change rebuilds the venvs
NATIVE_C := src/corral/http/_nativehead.c $(wildcard src/corral/http/vendor/llhttp/src/*.c)
STATS ?= 127.0.0.1:9100

.PHONY: demo test test-fast lint docs settings clean sysdeps

.venv/ok: pyproject.toml src/corral/stats/_fastslot.c $(NATIVE_C)
	$(PY_BASE) -m venv .venv
	.venv/bin/pip install $(PIP_FLAGS) -e '.[test]'
	touch $@

.venv-newest/ok: pyproject.toml src/corral/stats/_fastslot.c $(NATIVE_C)
	$(PY_NEWEST) -m venv .venv-newest
	.venv-newest/bin/pip install $(PIP_FLAGS) -e '.[test]'
	touch $@

demo: .venv-newest/ok
	.venv-newest/bin/corral serve -b 127.0.0.1:$(PORT) -w 2 --stats $(STATS)

# mypy --strict over src/corral and tests/ (pyproject [tool.mypy] files), once with each
# interpreter's installed packages: their type hints can differ between versions
lint: .venv/ok .venv-newest/ok
	.venv/bin/ruff check src tests benchmarks
	.venv/bin/mypy
	.venv-newest/bin/mypy

test: sysdeps .venv/ok .venv-newest/ok
	$(MAKE) lint
	.venv/bin/python -m pytest -q
	.venv-newest/bin/python -m pytest -q

# before the venvs: installing corral compiles the scoreboard's C recorder
sysdeps:
	scripts/install-system-deps

test-fast: .venv/ok
	.venv/bin/python -m pytest -q -m "not slow"

# after adding or changing a row of the settings table (and once after merging branches that did)
settings docs: .venv/ok
	.venv/bin/corral settings --python > src/corral/_settings_gen.py.new
	mv src/corral/_settings_gen.py.new src/corral/_settings_gen.py
	.venv/bin/corral settings --markdown > docs/settings.md
	.venv/bin/corral settings --migrating > docs/migrating.md

clean:
	rm -rf .venv .venv-newest .pytest_cache .mypy_cache .ruff_cache artifacts
