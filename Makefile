# The README's commands. Each installs what it needs first, so any of them works as the first
# command on a fresh machine.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
# The CPU build, installed before anything that depends on torch, so pip does not pull a CUDA build.
TORCH_SPEC ?= torch==2.13.0
DEMO_OUT ?= demo-output
BENCH_OUT ?= benchmarks/results

.PHONY: install test demo bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

test: install
	$(PY) -m pytest

demo: install
	$(VENV)/bin/ctscreen demo --out $(DEMO_OUT)

bench: install
	$(PY) benchmarks/run_all.py --out $(BENCH_OUT)

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache
