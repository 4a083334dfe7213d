# The two set-up commands of the README. Each one builds its own virtualenv on first use,
# so a fresh clone needs nothing but python3 (>= 3.11) and make.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
# Re-install whenever the declared dependencies change.
STAMP  := $(VENV)/.installed-$(shell cksum pyproject.toml | cut -d' ' -f1)

.PHONY: local test lint bench clean

$(STAMP):
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[train,local,dev]'
	rm -f $(VENV)/.installed-* && touch $@

## Run the whole system on this machine: embedded AWS stand-in, demo shop, first model, API + storefront.
local: $(STAMP)
	$(BIN)/nextpick serve --demo $(ARGS)

## Lint, type-check and run every test.
test: $(STAMP) lint
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy functions training local

## Benchmarks (issue-level figures); QUICK=1 for the CI-sized run.
bench: $(STAMP)
	$(BIN)/python -m bench $(if $(QUICK),--quick,)

clean:
	rm -rf .aws-sam build .pytest_cache .mypy_cache .ruff_cache test-output
