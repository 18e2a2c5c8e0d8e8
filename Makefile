# The two commands of the README:
#   make run    set up .venv, build, and backtest algorithms/sma_cross.py on the sample data
#   make test   set up .venv, build, and run every test (Rust and Python)
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
BIN := target/release/rustybt
# Build against the virtualenv's interpreter so the binary links the same libpython it runs.
export PYO3_PYTHON := $(abspath $(PY))

.PHONY: setup build run test test-rust test-python bench clean

$(VENV)/.installed: requirements.txt
	@$(PYTHON) -c 'import sys; sys.exit("rustybt needs Python 3.11+, found " + sys.version.split()[0]) if sys.version_info < (3, 11) else None'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	touch $@

setup: $(VENV)/.installed

build: setup
	cargo build --release --locked --bins --examples

run: build
	$(BIN) run --algo algorithms/sma_cross.py

test-rust: setup
	cargo test --release --locked

test-python: build
	$(PY) -m pytest tests/python -q
	$(BIN) test tests/algorithms -- -q -p no:cacheprovider

test: test-rust test-python

bench: build
	$(PY) benches/run_benchmarks.py --peers
	$(PY) benches/cross_section.py
	$(PY) benches/reload_latency.py

clean:
	rm -rf target $(VENV) runs
