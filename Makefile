# padrec's entry points; README.md says what each needs. Every target sets up what it uses first.

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
.ONESHELL:
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TRITON_CACHE := .cache/triton
WHEEL_DIR := $(TRITON_CACHE)/wheel
PERF_ANALYZER_LIBS := $(TRITON_CACHE)/perf_analyzer_libs
# The pin lives in pyproject.toml with the others: [tool.padrec] triton-server-wheel.
TRITON_WHEEL_PIN := $(shell sed -n 's/^triton-server-wheel *= *"\(.*\)"/\1/p' pyproject.toml)
PYTEST_ARGS ?=
SERVE_ARGS ?=

.PHONY: help setup test serve demo clean

help:
	@echo "make setup   .venv with the pinned dependencies, a Triton server and perf_analyzer"
	@echo "make test    setup, then every test (some start a real tritonserver)"
	@echo "make serve   setup, then serve model_repository/ on 127.0.0.1 (SERVE_ARGS='--host 0.0.0.0 ...')"
	@echo "make demo    setup, then the recommender end to end"
	@echo "make clean   remove .venv and .cache"

TRITON_READY := $(TRITON_CACHE)/ready-$(TRITON_WHEEL_PIN)

setup: $(VENV)/.installed $(TRITON_READY)

# Re-runs only when pyproject.toml changes; torch comes from the CPU wheel that pip's constraints
# and find-links point at, never from a CUDA build.
$(VENV)/.installed: pyproject.toml client/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --progress-bar off -e '.[test]'
	$(BIN)/python -m pip install --quiet --progress-bar off -e client/
	touch $@

# The wheel is unpacked, not installed. It is needed where no tritonserver is on PATH, or where
# perf_analyzer (installed into .venv/bin by tritonclient) misses libraries the wheel bundles
# under hashed names: those get symlinks with the names perf_analyzer asks for.
# The stamp names the pin, so only a new pin redoes this (a running server uses these files).
$(TRITON_READY): | $(VENV)/.installed
	@rm -rf $(TRITON_CACHE)
	mkdir -p $(PERF_ANALYZER_LIBS)
	missing_libs=$$(ldd $(BIN)/perf_analyzer | awk '/not found/ {print $$1}')
	if command -v tritonserver >/dev/null && [ -z "$$missing_libs" ]; then
	  echo "make setup: using $$(command -v tritonserver)"
	else
	  $(BIN)/python -m pip download --quiet --progress-bar off --no-deps \
	    --dest $(TRITON_CACHE)/download '$(TRITON_WHEEL_PIN)'
	  unzip -q $(TRITON_CACHE)/download/*.whl -d $(WHEEL_DIR)
	  echo "make setup: Triton server unpacked from $(TRITON_WHEEL_PIN) into $(WHEEL_DIR)"
	fi
	for lib in $$missing_libs; do
	  ln -sr "$$(realpath -e $(WHEEL_DIR)/nvidia_pytriton.libs/$${lib%%.so*}-*)" $(PERF_ANALYZER_LIBS)/$$lib
	done
	touch $@

# pytest's exit code 5 means it collected nothing: a broken suite, so it fails too, but says so.
test: setup
	@status=0
	$(BIN)/python -m pytest $(PYTEST_ARGS) || status=$$?
	if [ $$status -eq 5 ]; then echo "make test: pytest ran no tests (exit code 5)" >&2; fi
	exit $$status

serve: setup
	$(BIN)/padrec serve --model-repository model_repository $(SERVE_ARGS)

demo: setup
	@echo "make demo: the recommender is not served yet, so there is nothing to demonstrate." >&2
	@echo "make serve starts Triton on model_repository/; make test exercises the serving stack." >&2
	@exit 1

clean:
	rm -rf $(VENV) .cache
