# The two commands: `make dev` runs the stack, `make test` runs the whole suite. Both create .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

TS := tests/timescale
TS_STAMP := $(TS)/node_modules/.installed

.PHONY: dev test fuzz lint typecheck install timescale-harness clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The TimescaleDB build the timescaledb-engine contract tests run against (npm, versions pinned in the lock file).
# A failed install is not fatal: those tests are then skipped, naming the reason from the log.
$(TS_STAMP): $(TS)/package.json $(TS)/package-lock.json
	@if npm ci --prefix $(TS) --no-audit --no-fund > $(TS)/npm-install.log 2>&1; then touch $@; \
	else echo "warning: npm ci in $(TS) failed (see $(TS)/npm-install.log): the TimescaleDB contract tests will be skipped"; fi

timescale-harness: $(TS_STAMP)

dev: $(STAMP)
	$(BIN)/analytics dev

lint: $(STAMP)
	$(BIN)/ruff check service tests
	$(BIN)/ruff format --check service tests

typecheck: $(STAMP)
	$(BIN)/mypy

test: lint typecheck timescale-harness
	$(BIN)/pytest $(PYTEST_ARGS)

# Before a release: the OpenAPI fuzzing of the suite, longer (FUZZ_EXAMPLES generated requests per operation,
# default 250), with a summary of operations, requests and answers by status. Fails on any 5xx or on a status
# an operation does not declare.
fuzz: $(STAMP)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-250} $(BIN)/pytest tests/test_openapi_schema.py -q -p no:randomly

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(TS)/node_modules $(TS)/npm-install.log
