# The two set-up commands of the README. Each one builds its own virtualenv on first use, so a fresh
# clone needs nothing but python3 and make: uv (bootstrapped into ~/.cache with pip) installs exactly
# uv.lock, hashes checked, into .venv on Python 3.12, the Lambda runtime's version.
PYTHON ?= python3
# A real 3.12 (a version manager's shim may exist and still refuse to run: each candidate is tried).
# None found: uv downloads its own (--managed-python, so that it does not trip over such a shim either).
PYTHON312 ?= $(shell for py in python3.12 $$HOME/.pyenv/versions/3.12*/bin/python3.12; do \
	$$py -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null && command -v $$py && break; done)
VENV   ?= .venv
BIN    := $(VENV)/bin
# The same version as the `uv` pin of the dev extra (tests/artifacts/test_lock.py keeps them equal).
UV_VERSION := 0.13.9
UV_HOME    ?= $(HOME)/.cache/nextpick/uv-$(UV_VERSION)
UV         := $(UV_HOME)/bin/uv
UV_PYTHON  := $(if $(PYTHON312),--python $(PYTHON312),--python 3.12 --managed-python)
export UV_PROJECT_ENVIRONMENT := $(VENV)
# Re-install whenever the declared or the locked dependencies change.
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml uv.lock | cksum | cut -d' ' -f1)
# What each artifact installs, exported from uv.lock with hashes (`make lock` rewrites both files).
# The layer leaves out boto3, botocore and s3transfer: the Lambda runtime ships the ones that match.
LAYER_REQUIREMENTS ?= layers/runtime/requirements.txt
TRAIN_REQUIREMENTS ?= training/requirements.txt
LAYER_EXPORT := --no-dev --no-emit-project --no-emit-package boto3 --no-emit-package botocore --no-emit-package s3transfer
TRAIN_EXPORT := --no-dev --no-emit-project --extra train
GENERATED    := \# Generated from uv.lock by `make lock` (docs/deploy.md); do not edit by hand.

.PHONY: local test check lint lock requirements bench clean

$(UV):
	$(PYTHON) -m venv $(UV_HOME)
	$(UV_HOME)/bin/python -m pip install --quiet --disable-pip-version-check uv==$(UV_VERSION)

$(STAMP): | $(UV)
	$(UV) sync --locked --all-extras $(UV_PYTHON)
	rm -f $(VENV)/.installed-* && touch $@

## Run the whole system on this machine: embedded AWS stand-in, demo shop, first model, API + storefront.
local: $(STAMP)
	$(BIN)/nextpick serve --demo $(ARGS)

## Lint, type-check and run every test (what CI runs).
test: $(STAMP) lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## The inner loop: lint, types and the unit tests that train nothing and start nothing.
check: $(STAMP) lint
	$(BIN)/python -m pytest -q tests/unit -m 'not slow' $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy functions training local bench tests layers

## Re-resolve every dependency to its newest allowed version, then re-export the artifacts' requirements.
lock: | $(UV)
	$(UV) lock --upgrade $(UV_PYTHON)
	$(MAKE) requirements

## Re-export the layer's and the retrain image's requirements from uv.lock as it is.
requirements: | $(UV)
	{ echo '$(GENERATED)'; $(UV) export --frozen --quiet --no-header $(LAYER_EXPORT); } > $(LAYER_REQUIREMENTS)
	{ echo '$(GENERATED)'; $(UV) export --frozen --quiet --no-header $(TRAIN_EXPORT); } > $(TRAIN_REQUIREMENTS)

## Benchmarks (issue-level figures); QUICK=1 for the CI-sized run.
bench: $(STAMP)
	$(BIN)/python -m bench $(if $(QUICK),--quick,)

clean:
	rm -rf .aws-sam build .pytest_cache .mypy_cache .ruff_cache test-output
