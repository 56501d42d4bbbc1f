# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config/gateway.toml
STAMP := $(VENV)/.installed

NODE_STAMP := tests/smsc/node_modules/.installed

.PHONY: run test install test-deps chromium lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

# The SMPP tests talk to a real SMSC: node-smpp, pinned by tests/smsc/package-lock.json.
$(NODE_STAMP): tests/smsc/package-lock.json
	npm ci --prefix tests/smsc --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

# The dashboard test drives Debian's Chromium (Playwright never downloads a browser).
# Outside CI a machine without root or apt just skips those tests.
chromium:
	@command -v chromium >/dev/null 2>&1 || { \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) \
		|| [ "$$CI" != "true" ]; }

test-deps: install $(NODE_STAMP) chromium

run: install
	mkdir -p var
	$(BIN)/sms-gateway db upgrade --config $(CONFIG)
	if $(BIN)/sms-gateway db is-empty --config $(CONFIG); then \
		$(BIN)/sms-gateway accounts import --config $(CONFIG) config/demo_accounts.csv; fi
	$(BIN)/sms-gateway serve --config $(CONFIG)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

test: test-deps lint typecheck
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/parse.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/smpp.py
	$(BIN)/python bench/webhook.py
	# scale needs node and the local PostgreSQL
	$(BIN)/python bench/scale.py

clean:
	rm -rf $(VENV) var/*.db var/*.db-*
