# fairlane: `make run` starts it on a fresh machine, `make test` sets up and runs the tests.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: help install run test lint bench psql stop clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

install: $(VENV)/.installed  ## create .venv and install fairlane with its test tools

run: install  ## start fairlane on the embedded PostgreSQL (example configuration on first start)
	$(BIN)/fairlane run

test: install  ## run the test suite against a real (embedded) PostgreSQL (installs Debian's chromium if missing)
	@test -x /usr/bin/chromium || { echo "installing chromium (the dashboard test's headless browser)"; \
		$$( [ "$$(id -u)" = 0 ] || echo sudo ) sh -c 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
		apt-get install -y -qq --no-install-recommends chromium >/dev/null'; }
	$(BIN)/pytest

lint: install  ## ruff, mypy and the import layers (import-linter)
	$(BIN)/ruff check db service tools tests migrations
	$(BIN)/ruff format --check db service tools tests migrations
	$(BIN)/mypy db service/model
	$(BIN)/lint-imports

bench: install  ## benchmarks that print figures
	$(BIN)/fairlane bench outbox

psql: install  ## psql on the database in use
	$(BIN)/fairlane db psql

stop: install  ## stop the embedded PostgreSQL
	$(BIN)/fairlane db stop

clean:  ## remove .venv (the embedded database in .fairlane/ stays)
	rm -rf $(VENV)
