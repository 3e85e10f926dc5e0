# Two entry points for a fresh machine: `make quickstart` and `make test`.
# Each creates .venv if absent and installs what it needs, at the versions pinned in
# constraints.txt (the lock: what `make test` last passed with), so a new upstream release
# cannot turn a clean clone red unseen.
#
# Moving the lock forward is a deliberate step: `make test-latest` builds .venv-latest with the
# newest releases of every dependency and runs the whole suite there; when it is green,
# `make lock` writes those versions to constraints.txt. Commit the new lock.
#
# torch is not in the lock: where no CUDA GPU is visible we install the CPU build
# ("+cpu", from a local wheel or mirror if one provides it, else from PyTorch's CPU index;
# never PyPI's default Linux wheel, which is a multi-GB CUDA build); with a GPU, the newest
# torch>=2.6. The package itself only asks for torch>=2.6.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
LOCK   := constraints.txt
LATEST := .venv-latest
TORCH_CPU_VERSION := 2.13.0
TORCH_CPU_INDEX   := https://download.pytorch.org/whl/cpu

.PHONY: quickstart test test-latest lock venv bench clean

# $(call install_torch,VENV_DIR,PIP_OPTIONS)
define install_torch
	@if ! $(1)/bin/python -c "import torch" >/dev/null 2>&1; then \
		if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi >/dev/null 2>&1; then \
			echo "CUDA GPU found: installing torch>=2.6"; \
			$(1)/bin/python -m pip install -q "torch>=2.6" $(2); \
		else \
			echo "no CUDA GPU: installing the CPU build torch==$(TORCH_CPU_VERSION)+cpu"; \
			$(1)/bin/python -m pip install -q "torch==$(TORCH_CPU_VERSION)+cpu" $(2) 2>/dev/null || \
			$(1)/bin/python -m pip install -q "torch==$(TORCH_CPU_VERSION)+cpu" --extra-index-url $(TORCH_CPU_INDEX) $(2); \
		fi; \
	fi
endef

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml $(LOCK)
	$(call install_torch,$(VENV),-c $(LOCK))
	$(PY) -m pip install -q -c $(LOCK) -e ".[test]"
	@touch $(STAMP)

venv: $(STAMP)

quickstart: $(STAMP)
	$(VENV)/bin/lmforge quickstart

test: $(STAMP)
	$(PY) -m pytest -q

# The newest release of every dependency, in a separate venv; the suite must pass there
# before `make lock` moves the pins.
test-latest:
	test -x $(LATEST)/bin/python || $(PYTHON) -m venv $(LATEST)
	$(call install_torch,$(LATEST),)
	$(LATEST)/bin/python -m pip install -q --upgrade -e ".[test,bench]"
	$(LATEST)/bin/python -m pip list --format=freeze | grep -iE '^(torch|transformers|tokenizers|datatrove)=='
	$(LATEST)/bin/python -m pytest -q

# Writes the versions installed in .venv-latest (after `make test-latest`) to the lock.
lock:
	test -x $(LATEST)/bin/python || { echo "run make test-latest first"; exit 2; }
	{ echo "# The lock: exact versions make test installs (pip constraints). Written by make lock"; \
	  echo "# from .venv-latest after make test-latest passed; torch is chosen by the Makefile."; \
	  $(LATEST)/bin/python -m pip freeze --exclude-editable | grep -viE '^(torch|triton|nvidia-)'; } > $(LOCK)
	@echo "wrote $(LOCK); commit it"

bench: $(STAMP)
	$(PY) -m pip install -q -c $(LOCK) -e ".[bench]"
	$(PY) benchmarks/train_throughput.py
	$(PY) benchmarks/data_filters.py
	$(PY) benchmarks/dedup.py

clean:
	rm -rf $(VENV) $(LATEST) runs .pytest_cache
