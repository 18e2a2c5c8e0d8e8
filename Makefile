# The two commands of the README:
#   make run    set up .venv, build, and backtest algorithms/sma_cross.py on the sample data
#   make test   set up .venv, build, and run every test (Rust; Python under 3.12 if installed,
#               then under 3.11 and 3.13 where installed)
#   make test-python-alt   the Python suite again under 3.11 and 3.13 where installed (part of `make test`)

# A CPython built with a shared libpython (the binary embeds it), newest supported first:
# on PATH as pythonX.Y, or installed by pyenv.
find_python = $(firstword $(foreach v,$(1),$(shell \
	for c in "python$(v)" "$$(pyenv prefix $(v) 2>/dev/null | head -n1)/bin/python$(v)"; do \
	  "$$c" -c 'import sys, sysconfig; sys.exit(not sysconfig.get_config_var("Py_ENABLE_SHARED"))' \
	    >/dev/null 2>&1 && { command -v "$$c"; break; }; \
	done)))
PYTHON ?= $(or $(call find_python,3.12 3.11),python3)
VENV ?= .venv
PY := $(VENV)/bin/python
# Each interpreter gets its own build: the binary links the libpython it runs.
TARGET_DIR ?= target
BIN := $(TARGET_DIR)/release/rustybt
export CARGO_TARGET_DIR := $(abspath $(TARGET_DIR))
# Build against the virtualenv's interpreter so the binary links the same libpython it runs.
export PYO3_PYTHON := $(abspath $(PY))
# The other supported interpreters `make test` runs the Python suite under (those installed).
SUPPORTED := 3.12 3.11 3.13
PYTHON_VERSION := $(shell $(PYTHON) -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
PYTHON_ALTS := $(if $(filter .venv,$(VENV)),$(foreach v,$(filter-out $(PYTHON_VERSION),$(SUPPORTED)),$(if $(call find_python,$(v)),$(v))))

.PHONY: setup build run test test-rust test-python test-python-alt bench clean browser

$(VENV)/.installed: requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit("rustybt needs Python 3.11+, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv --clear $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

setup: $(VENV)/.installed

# pylib's bytecode, validated by the source's hash (never by its mtime, so an edit is never
# missed): the binary writes no bytecode itself (user code could run stale after a quick edit),
# and compiling rustybt_api at every start would cost tens of ms before the first tick.
build: setup
	cargo build --release --locked --bins --examples
	$(PY) -m compileall -q --invalidation-mode checked-hash pylib/rustybt_api

run: build
	$(BIN) run --algo algorithms/sma_cross.py

test-rust: setup
	cargo test --release --locked

# Headless Chromium and its WebDriver (Debian packages) for the report tests and `--pdf`;
# installed only when missing (apt-get needs root, as on the project's machines).
browser:
	@command -v chromium >/dev/null && command -v chromedriver >/dev/null || { \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver; }

# RUSTYBT_PYTHON: the binary embeds this venv's interpreter even where another .venv is nearer.
test-python: build browser
	$(PY) -m mypy --config-file pylib/pyproject.toml pylib
	RUSTYBT_BIN=$(abspath $(BIN)) RUSTYBT_PYTHON=$(abspath $(PY)) $(PY) -m pytest tests/python -q
	RUSTYBT_PYTHON=$(abspath $(PY)) $(BIN) test tests/algorithms -- -q -p no:cacheprovider

# The Python suite again under each other supported interpreter, each in its own venv and build.
# `make test` runs them side by side (-j2): most of the suite waits on live sessions' wall clocks,
# so two suites at once take little longer than one. -Orecurse prints each suite's output whole
# when it ends.
test-python-alt:
	@echo "Python suite under $(PYTHON_VERSION) done; now under: $(or $(PYTHON_ALTS),no other supported Python installed)"
	$(MAKE) -j2 -Orecurse $(addprefix test-python-,$(PYTHON_ALTS))

# One interpreter's suite. Its build starts from a copy of the main build (when there is one and
# it has none yet): only pyo3 and rustybt itself depend on the libpython, so the other crates are
# not compiled again.
test-python-%:
	@[ -d target/py$*/release ] || [ ! -d target/release ] || { mkdir -p target/py$* && cp -a target/release target/py$*/; }
	$(MAKE) test-python PYTHON=$(call find_python,$*) VENV=.venv-$* TARGET_DIR=target/py$*

test: test-rust test-python test-python-alt

bench: build
	$(PY) benches/run_benchmarks.py --peers
	$(PY) benches/cross_section.py
	$(PY) benches/reload_latency.py

clean:
	rm -rf target $(VENV) .venv-3.* runs
