# CRM Collab — every command a developer or CI needs. `make help` lists them.
#   make run    start the service on the embedded default (no servers needed)
#   make test   install everything, start PostgreSQL + Kafka, run lint, types and all tests
SHELL := /bin/bash
.DEFAULT_GOAL := help
UV_VERSION := 0.13.9
UV := python3 -m uv
VENV := .venv
BIN := $(VENV)/bin
SERVICES_ENV := $(or $(CRM_SERVICES_DIR),var/services)/env
HOST ?= 127.0.0.1
PORT ?= 8000
NAME ?= sales

.PHONY: help venv run check lint types unit test integration services-up services-down \
        api relay consumer bench soak soak-quick contract browser screenshots

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

$(BIN)/uv-synced: pyproject.toml uv.lock
	@$(UV) --version >/dev/null 2>&1 || python3 -m pip install --quiet "uv==$(UV_VERSION)"
	$(UV) sync --frozen --quiet
	@touch $@

venv: $(BIN)/uv-synced ## create or update the virtualenv from uv.lock

run: venv ## start API + projections on the embedded default (SQLite in CRM_DATA_DIR)
	$(BIN)/crm run --host $(HOST) --port $(PORT)

check: lint types unit ## lint, type checks and unit tests (seconds)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

types: venv
	$(BIN)/mypy

unit: venv
	scripts/pytest.sh tests/unit

test: venv ## install everything, start PostgreSQL + Kafka, run check + every test, stop them
	scripts/test.sh

integration: venv ## integration + e2e tests against running services (make services-up first)
	source $(SERVICES_ENV) && scripts/pytest.sh tests/integration tests/e2e

browser: venv ## the console's tests in Debian's headless Chromium (installed if missing)
	scripts/browser.sh
	scripts/pytest.sh tests/browser

screenshots: venv ## regenerate the README's console screenshots (docs/console) from the demo
	scripts/console-screenshots.sh

services-up: venv ## start (installing if needed) PostgreSQL and Kafka on 127.0.0.1
	scripts/services.sh up

services-down: ## stop the PostgreSQL and Kafka that services-up started
	scripts/services.sh down

api: venv ## the HTTP API against PostgreSQL (after services-up)
	source $(SERVICES_ENV) && $(BIN)/crm api --host $(HOST) --port $(PORT)

relay: venv ## the relay, event store -> Kafka (after services-up)
	source $(SERVICES_ENV) && $(BIN)/crm relay

consumer: venv ## one projection consumer: make consumer NAME=sales
	source $(SERVICES_ENV) && $(BIN)/crm consume $(NAME)

bench: venv ## benchmarks with same-run baselines -> bench/results/latest.{json,md} (ARGS="http --quick")
	scripts/bench.sh $(ARGS)

soak: venv ## ~11 min: load + SIGKILLs + broker and PostgreSQL down a minute each, nothing lost (own services)
	scripts/soak.sh

soak-quick: venv ## the soak in ~3 minutes
	scripts/soak.sh --quick

contract: venv ## regenerate the event contract in docs/events
	$(BIN)/crm contract generate
