# Two commands on a fresh machine: `make demo` and `make test`. Everything else is created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test test-fast lint faults bench broker fonts db-stop clean help

help:
	@echo "make demo    - the main job on the embedded defaults (PostgreSQL, RabbitMQ, simulators)"
	@echo "make test    - lint + the whole test suite (real PostgreSQL and RabbitMQ)"
	@echo "make faults  - the long fault-injection suite"
	@echo "make bench   - benchmarks (prints tables, writes bench/results/)"

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

broker:
	@bash scripts/ensure_rabbitmq.sh

fonts:
	@bash scripts/ensure_fonts.sh

demo: $(STAMP) broker fonts
	$(BIN)/chatnation demo

lint: $(STAMP)
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

test: $(STAMP) broker fonts lint
	$(BIN)/python -m pytest -q -m "not slow"

faults: $(STAMP) broker
	$(BIN)/python -m pytest -q tests/faults -m slow

bench: $(STAMP) broker fonts
	$(BIN)/python bench/run_all.py

db-stop: $(STAMP)
	$(BIN)/chatnation db stop

clean:
	-$(BIN)/chatnation db stop
	rm -rf $(VENV) .data
