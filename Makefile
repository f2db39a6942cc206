# The two quickstart commands (see README.md) and what they rely on.
#   make setup && .venv/bin/sentinel train --epochs 5
#   make test
# VENV may point elsewhere (CI keeps one per dependency set under ~/.cache/sentinel).

PYTHON ?= python3
VENV ?= .venv
# A local copy of the MovieLens archive, used to warm the data cache when present (machines with no
# route to GroupLens, such as CI); otherwise the first `sentinel train` downloads it.
DATA ?= $(wildcard ../shared/data/ml-100k.zip)

BIN := $(VENV)/bin

.PHONY: setup setup-dev test testenv lint clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

setup: $(BIN)/python
	$(BIN)/pip install --quiet -e .
	@if [ -n "$(DATA)" ]; then $(BIN)/sentinel data fetch --data "$(DATA)"; fi

setup-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'

# Builds (first time: many minutes) or reuses the Kubernetes test binaries (the real node's too)
# and the real node's images (Dockerfile.train/serve on a local Debian 12 base, with buildah) under
# ~/.cache/sentinel. See docs/testing.md.
testenv: setup-dev
	$(BIN)/python -m tests.testenv.env build
	$(BIN)/python -m tests.testenv.images build

test: testenv
	SENTINEL_TEST_DATA="$(abspath $(or $(DATA),../shared/data/ml-100k.zip))" $(BIN)/python -m pytest

lint: setup-dev
	$(BIN)/hadolint Dockerfile.train Dockerfile.serve

clean:
	rm -rf $(VENV) .pytest_cache
