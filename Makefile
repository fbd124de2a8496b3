# Two commands on a fresh machine: `make demo` and `make test` (each installs what it needs first).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.negclean-installed

.PHONY: install demo test test-fast bench clean

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt scripts/install-llama.sh
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU torch first, pinned (constraints.txt): an unpinned torch pulls a multi-GB CUDA build
	$(PIP) install -q -c constraints.txt torch
	# llama.cpp for every CPU of this architecture (no -march=native: a native build segfaults on other CPUs)
	scripts/install-llama.sh $(PY) server
	$(PIP) install -q -c constraints.txt -e '.[all,dev]'
	$(PY) scripts/check_llama_build.py
	touch $(STAMP)

demo: install
	$(VENV)/bin/negclean run examples/demo.yaml
	$(VENV)/bin/negclean inspect runs/demo --flagged

test: install
	scripts/install-browser.sh $(PY)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf runs .pytest_cache
