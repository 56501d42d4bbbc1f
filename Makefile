# Two commands set everything up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
CONFIG ?= config/gateway.toml
STAMP := $(VENV)/.installed

.PHONY: run test install lint typecheck bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

run: install
	mkdir -p var
	$(BIN)/sms-gateway db upgrade --config $(CONFIG)
	if $(BIN)/sms-gateway db is-empty --config $(CONFIG); then \
		$(BIN)/sms-gateway accounts import --config $(CONFIG) config/demo_accounts.csv; fi
	$(BIN)/sms-gateway serve --config $(CONFIG)

lint: install
	$(BIN)/ruff check .

typecheck: install
	$(BIN)/mypy

test: install lint typecheck
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/parse.py
	$(BIN)/python bench/pipeline.py

clean:
	rm -rf $(VENV) var/*.db var/*.db-*
