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
HELM_LIBRARY_PIN := $(shell sed -n 's/^helm-library-wheel *= *"\(.*\)"/\1/p' pyproject.toml)
PYTEST_ARGS ?=
SERVE_ARGS ?=
# Options of `python -m perf run` (perf/README.md), e.g. PERF_ARGS="--quick".
PERF_ARGS ?=
# Replicas of `make cluster`.
N ?= 2
# Options of `python -m perf datasets` (perf/README.md), e.g. PERF_DATASETS_ARGS="--datasets beauty,sports".
PERF_DATASETS_ARGS ?=
# The served recommender: its trained models under artifacts/, exported into model_repository/.
DATASET ?= beauty
EXPORTED := model_repository/padrec_export.json
# The first Beauty test user's history (external item IDs, oldest first): the demo's sample request.
DEMO_HISTORY ?= 1,2,3,4

.PHONY: help setup test artifacts serve cluster demo perf perf-report perf-datasets perf-failover perf-gpu lint-deploy clean

help:
	@echo "make setup   .venv with the pinned dependencies, a Triton server and perf_analyzer"
	@echo "make test    setup, then every test (some start a real tritonserver)"
	@echo "make artifacts  restore the other datasets' trained models from git history (artifacts/archived.json)"
	@echo "make serve   setup and export, then serve model_repository/ on 127.0.0.1:8001 (SERVE_ARGS='--host 0.0.0.0 ...')"
	@echo "make cluster N=2  setup and export, then N replicas of model_repository/ on free ports (restarted if one dies)"
	@echo "make demo    setup and export, serve, ask for one user's recommendations (speculative and plain), stop"
	@echo "make perf    setup and export, perf_analyzer runs against a fresh server, then perf/REPORT.md (PERF_ARGS='--quick')"
	@echo "make perf-report  re-render perf/REPORT.md and perf/plots/ from perf/results.json"
	@echo "make perf-datasets  (restores the artifacts) PAD-Rec against EAGLE at k=2,3,4 on beauty, sports, toys, yelp through Triton: perf/DATASETS.md"
	@echo "make perf-failover  two replicas under load, one killed and restarted: perf/FAILOVER.md"
	@echo "make perf-gpu  on a GPU machine (no setup, nothing installed): perf/gpu/run.sh, results/gpu/<gpu>.json/.md/.png"
	@echo "make clean   remove .venv and .cache"

TRITON_READY := $(TRITON_CACHE)/ready-$(TRITON_WHEEL_PIN)

setup: $(VENV)/.installed $(TRITON_READY)

# Re-runs only when pyproject.toml changes; torch comes from the CPU wheel that pip's constraints
# and find-links point at, never from a CUDA build.
$(VENV)/.installed: pyproject.toml client/pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --progress-bar off -e '.[test]'
	$(BIN)/python -m pip install --quiet --progress-bar off -e client/
	$(BIN)/python -m pip install --quiet --progress-bar off --no-deps --ignore-requires-python '$(HELM_LIBRARY_PIN)'
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

# Sports, Toys, Yelp, ML-100K and the shared-vocabulary models live in git history, not in the
# checkout (so it travels to a GPU machine); this brings them back, checked (padrec/archive.py).
artifacts: setup
	$(BIN)/padrec restore-artifacts --all

# The target and drafts as ONNX graphs with their Python-backend models; redone when a checkpoint
# changes, or the library code that builds the graphs (any of padrec/, to be safe).
$(EXPORTED): artifacts/$(DATASET)/target.pt artifacts/$(DATASET)/draft_padrec.pt artifacts/$(DATASET)/draft_eagle.pt \
		$(shell find padrec -name '*.py') | $(VENV)/.installed
	$(BIN)/padrec export --dataset $(DATASET) --backend python --check-users 20

serve: setup $(EXPORTED)
	$(BIN)/padrec serve --model-repository model_repository $(SERVE_ARGS)

# N replicas on free ports; the command prints each endpoint and the client line that uses them all.
cluster: setup $(EXPORTED)
	$(BIN)/padrec cluster --replicas $(N) --model-repository model_repository

# The server runs in the background only as long as the demo does.
demo: setup $(EXPORTED)
	log=$$(mktemp -t padrec-demo-XXXX.log)
	$(BIN)/padrec serve --model-repository model_repository > "$$log" 2>&1 &
	server=$$!
	trap 'kill -INT $$server 2>/dev/null; wait $$server || true' EXIT
	$(BIN)/padrec-client ready --wait 300 || { cat "$$log" >&2; exit 1; }
	echo "== PAD-Rec speculative decoding (4 draft tokens per round), history $(DEMO_HISTORY)"
	$(BIN)/padrec-client recommend --history $(DEMO_HISTORY) --top-n 10
	echo "== plain decoding, same history: the same list"
	$(BIN)/padrec-client recommend --history $(DEMO_HISTORY) --top-n 10 --num-draft-tokens 0

# perf_analyzer against a server of its own on free ports: perf/results.json, then perf/REPORT.md (perf/README.md).
perf: setup $(EXPORTED)
	$(BIN)/python -m perf run $(PERF_ARGS)

perf-report: setup
	$(BIN)/python -m perf report

# Each dataset with trained drafts exported into build/perf-datasets/<dataset>/ (never model_repository/)
# and served on its own: perf/datasets/<dataset>/results.json, perf/DATASETS.md (about 5 minutes a dataset).
perf-datasets: setup artifacts
	$(BIN)/python -m perf datasets $(PERF_DATASETS_ARGS)

# Two replicas of model_repository/, 8 clients for 60 s, replica 0 SIGKILLed and restarted (perf/README.md).
perf-failover: setup $(EXPORTED)
	$(BIN)/python -m perf failover

# On a bare GPU machine with CUDA torch: the benchmark in 8 minutes, nothing installed (perf/gpu/run.sh).
perf-gpu:
	perf/gpu/run.sh

clean:
	rm -rf $(VENV) .cache
