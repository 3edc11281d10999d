# The two set-up commands: `make demo` and `make test`. Both install what they need.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
UV := $(PYTHON) -m uv
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
APT_DEPS_TEST := redis-server chromium

.PHONY: demo test install system-deps bench clean help

help:
	@echo "make demo   - install, then simulate a world, build features, train, report and serve"
	@echo "make test   - install (Python and Debian packages) and run the test suite"
	@echo "make bench  - run the benchmarks under benchmarks/ (writes benchmarks/results/)"

$(VENV)/.installed: pyproject.toml
	@$(UV) --version >/dev/null 2>&1 || $(PYTHON) -m pip install -q uv
	@[ -x $(PY) ] || $(UV) venv $(VENV) --python $(PYTHON) -q
	$(UV) pip install --python $(PY) --compile-bytecode -q -e '.[test]'
	@touch $@

install: $(VENV)/.installed

system-deps:
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: install
	$(VENV)/bin/nextbest demo

test: install system-deps
	$(PY) -m pytest $(PYTEST_ARGS)

bench: install
	$(PY) benchmarks/run_all.py

clean:
	rm -rf data mlruns/mlflow.db mlruns/artifacts tests/artifacts
