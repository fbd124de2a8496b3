# Two commands on a fresh machine: `make demo` and `make test` (each installs what it needs first).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.negclean-installed

.PHONY: install demo test test-fast bench clean

install: $(STAMP)

$(STAMP): pyproject.toml scripts/install-llama.sh
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	# CPU torch first, pinned: an unpinned torch pulls a multi-GB CUDA build
	$(PIP) install -q torch==2.13.0
	# llama.cpp for every CPU of this architecture (no -march=native: a native build segfaults on other CPUs)
	scripts/install-llama.sh $(PY) server
	$(PIP) install -q -e '.[all,dev]'
	$(PY) scripts/check_llama_build.py
	touch $(STAMP)

demo: install
	$(VENV)/bin/negclean run examples/demo.yaml
	$(VENV)/bin/negclean inspect runs/demo --flagged

test: install
	scripts/install-browser.sh $(PY)
	$(PY) -m pytest -q

test-fast: install
	$(PY) -m pytest -q -m "not slow"

clean:
	rm -rf runs .pytest_cache
