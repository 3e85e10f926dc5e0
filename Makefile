# Two entry points for a fresh machine: `make quickstart` and `make test`.
# Each creates .venv if absent and installs what it needs. Where no CUDA GPU is
# visible we install the CPU build of torch first, so the package's loose
# `torch>=2.6` requirement is already satisfied and pip does not pull a CUDA build.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
STAMP  := $(VENV)/.installed
TORCH_CPU_VERSION := 2.13.0

.PHONY: quickstart test venv bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	@if ! $(PY) -c "import torch" >/dev/null 2>&1; then \
		if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
			$(PIP) install -q "torch>=2.6"; \
		else \
			$(PIP) install -q "torch==$(TORCH_CPU_VERSION)"; \
		fi; \
	fi
	$(PIP) install -q -e ".[test]"
	@touch $(STAMP)

venv: $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/lmforge quickstart

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PIP) install -q -e ".[bench]"
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/data_filters.py
	$(PY) benchmarks/dedup.py

clean:
	rm -rf $(VENV) runs .pytest_cache
