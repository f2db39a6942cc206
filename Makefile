# The quickstart commands (see README.md) and what they rely on.
#   make setup && .venv/bin/sentinel train --epochs 5
#   make test-fast    the fast tier: unit and pure tests, under a minute (docs/testing.md)
#   make test         everything
# VENV may point elsewhere (CI keeps one per dependency set under ~/.cache/sentinel).

PYTHON ?= python3
VENV ?= .venv
# A local copy of the MovieLens archive, used to warm the data cache when present (machines with no
# route to GroupLens, such as CI); otherwise the first `sentinel train` downloads it.
DATA ?= $(wildcard ../shared/data/ml-100k.zip)

BIN := $(VENV)/bin
TEST_DATA = SENTINEL_TEST_DATA="$(abspath $(or $(DATA),../shared/data/ml-100k.zip))"

.PHONY: setup setup-dev test test-fast testenv lint lock lock-upgrade clean

# Every install comes from the lock (requirements/, made by tools/lock.py): exact versions and
# hashes, so a fresh machine gets what CI tested. pip and the build backend first, then the
# dependencies, then the project itself with no resolution and no download.
$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements/build.txt

setup: $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements/cli.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .
	@if [ -n "$(DATA)" ]; then $(BIN)/sentinel data fetch --data "$(DATA)"; fi

setup-dev: $(BIN)/python
	$(BIN)/pip install --quiet --require-hashes -r requirements/dev.txt
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e .

# After a dependency change in pyproject.toml: resolve again, keeping the locked versions that still
# fit (lock-upgrade: the newest the ranges allow). tests/test_lock.py fails until this is run.
lock: setup-dev
	$(BIN)/python tools/lock.py

lock-upgrade: setup-dev
	$(BIN)/python tools/lock.py --upgrade

# Builds (first time: many minutes) or reuses the Kubernetes test binaries (the real node's too)
# and the real node's images (Dockerfile.train/serve on a local Debian 12 base, with buildah) under
# ~/.cache/sentinel. See docs/testing.md.
testenv: setup-dev
	$(BIN)/python -m tests.testenv.env build
	$(BIN)/python -m tests.testenv.images build

# The whole suite: every tier (what .ci/run runs).
test: testenv
	$(TEST_DATA) $(BIN)/python -m pytest

# The fast tier: no Ray, no server process, no Go build, no Kubernetes (`pytest --fast`: every test
# without the markers of tests/support/plugin.py's HEAVY); needs only the dev venv and the MovieLens copy.
test-fast: setup-dev
	$(TEST_DATA) $(BIN)/python -m pytest --fast

lint: setup-dev
	$(BIN)/hadolint Dockerfile.train Dockerfile.serve Dockerfile.cli

clean:
	rm -rf $(VENV) .pytest_cache
