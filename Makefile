# The two commands a new user needs: `make demo` and `make test`. Each does its own set-up first and is
# idempotent: a second run reuses .venv (reinstalled only when pyproject.toml changes).
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.voxtok-installed
SYSTEM_PACKAGES := espeak-ng flite flac sox
PYTEST_ARGS ?=

.PHONY: demo test test-slow bench bench-full lint system-deps setup clean

demo: setup
	$(VENV)/bin/voxtok demo --out out/demo

test: setup
	TRITON_INTERPRET=1 $(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

test-slow: setup
	TRITON_INTERPRET=1 $(PY) -m pytest -m "slow" $(PYTEST_ARGS)

# `make bench`: every benchmark on a small grid (minutes); `make bench-full`: the grids the docs report.
bench: setup
	$(PY) benchmarks/quantizers.py --quick
	$(PY) benchmarks/nearest.py --n 20000 --k 1024 4096 --d 8 64
	$(PY) benchmarks/models.py --quick
	$(PY) benchmarks/interop.py --quick
	$(PY) benchmarks/presets.py --only mimi-12.5hz dac-16khz
	$(PY) benchmarks/tokenizer.py --quick
	$(PY) benchmarks/training.py --quick

bench-full: setup
	@set -e; for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b; done

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

setup: system-deps $(STAMP)

# System packages: installed when missing and we are root; otherwise say what to install.
system-deps:
	@missing=""; for p in $(SYSTEM_PACKAGES); do command -v $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing system packages:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) >/dev/null; \
	  else \
	    echo "voxtok needs these system packages:$$missing"; \
	    echo "install them with: sudo apt-get install -y $(SYSTEM_PACKAGES)"; exit 1; \
	  fi; \
	fi

# torch is pinned to the CPU wheel (see docs/dependencies.md); it goes in first so nothing pulls a CUDA build.
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check torch==2.13.0
	$(PY) -m pip install -q --disable-pip-version-check -e '.[dev,eval]'
	# moshi (the reference for the moshi-mimi converter's tests) pins torch<2.10 and an older safetensors; its
	# modules import fine beside ours, so it goes in without its pins. sentencepiece is what it imports at load.
	$(PY) -m pip install -q --disable-pip-version-check --no-deps moshi==0.2.13
	$(PY) -m pip install -q --disable-pip-version-check sentencepiece
	$(PY) -c "import voxtok, torch; print('voxtok', voxtok.__version__, 'torch', torch.__version__)"
	@touch $(STAMP)

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
