# Consensa: `make demo` runs the bundled demo study, `make test` runs the tests.
# Both create .venv and install everything on first use.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test test-fast clean-runs chromium

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# uv installs what pip would, from the same registries, in a third of the time:
# it fetches and unpacks in parallel and compiles the bytecode on every core.
# It does not read pip's settings, so a wheel folder pip is pointed at (where a
# machine keeps its CPU torch) and an index that stands in for PyPI (a mirror) are
# passed on to it, from pip's environment variable or else pip.conf.
pip_setting = $(strip $(or $($(1)),$(shell $(BIN)/python -m pip config get global.$(2) 2>/dev/null)))
UV_INSTALL = $(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode \
	$(addprefix --find-links ,$(call pip_setting,PIP_FIND_LINKS,find-links)) \
	$(addprefix --index-url ,$(call pip_setting,PIP_INDEX_URL,index-url))

# uv is pinned to the version a fresh clone's `make test` was checked with: a later
# one may resolve or read its settings otherwise. torch is pinned first: its CPU
# wheel is what this machine has, and letting a dependency resolve torch on its own
# pulls a multi-GB CUDA build.
UV_VERSION := 0.13.9
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet uv==$(UV_VERSION)
	$(UV_INSTALL) torch==2.13.0
	$(UV_INSTALL) -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/consensa run configs/demo.yaml

# The browser tests (tests/test_web*.py) drive Debian's chromium through playwright,
# never a browser that playwright downloads; installed here when missing (as root).
chromium:
	@if [ ! -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ]; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
		else \
			echo "note: /usr/bin/chromium is missing (apt-get install chromium); the browser tests will be skipped"; \
		fi; \
	fi

# ruff (configured in pyproject.toml) checks the code before the tests run. The
# tests run on up to 4 processes (pytest-xdist), a test file to a process, so a
# module's fixtures are built once. On 2 cores a fresh clone's `make test` takes
# about 9 minutes: 1 to install, 8 for the tests.
PYTEST := $(BIN)/python -m pytest -q -n auto --maxprocesses=4 --dist loadfile

test: $(STAMP) chromium
	$(BIN)/ruff check pipeline tests bench
	$(PYTEST)

test-fast: $(STAMP) chromium
	$(BIN)/ruff check pipeline tests bench
	$(PYTEST) -m "not slow"

clean-runs:
	rm -rf runs
