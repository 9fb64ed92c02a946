# Two commands on a fresh machine: `make demo` and `make test`. Everything else is created on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Exact versions with hashes: requirements-dev.lock (the runtime and the test tools) for this venv and CI,
# requirements.lock (the runtime alone) for the image. `make lock` writes both from pyproject.toml.
LOCK := requirements-dev.lock
COMPILE := $(BIN)/uv pip compile pyproject.toml --universal --python-version 3.11 --generate-hashes --quiet

.PHONY: demo test test-fast lint faults scale-test compat bench broker fonts db-stop clean help lock lock-upgrade

help:
	@echo "make demo    - the main job on the embedded defaults (PostgreSQL, RabbitMQ, simulators)"
	@echo "make test    - lint + the whole test suite (real PostgreSQL and RabbitMQ)"
	@echo "make faults  - the long fault-injection suite"
	@echo "make scale-test - a 3-node RabbitMQ cluster, workers on 3 hosts, nodes and hosts lost under load"
	@echo "make compat  - the broker-facing tests against RabbitMQ 4.0 and 4.3 (compose.yaml's), as root"
	@echo "make bench   - benchmarks (prints tables, writes bench/results/)"
	@echo "make lock    - refresh the lock files after a change of dependencies in pyproject.toml"

$(STAMP): pyproject.toml setup.py $(LOCK)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --require-hashes -r $(LOCK)
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	@$(BIN)/python -m pip check >/dev/null || { $(BIN)/python -m pip check; \
	  echo "$(LOCK) lacks a dependency pyproject.toml names: run 'make lock' and commit the lock files" >&2; exit 1; }
	@touch $(STAMP)

# Keeps every pinned version that still fits pyproject.toml (adding a dependency moves nothing else);
# lock-upgrade takes the newest versions the ranges allow.
lock:
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@test -x $(BIN)/uv || $(BIN)/python -m pip install --quiet uv
	$(COMPILE) $(UPGRADE) --extra test -o requirements-dev.lock
	$(COMPILE) $(UPGRADE) -c requirements-dev.lock -o requirements.lock

lock-upgrade:
	$(MAKE) lock UPGRADE=--upgrade

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

# Private RabbitMQ nodes clustered on loopback (tests/faults/cluster.py), worker hosts as network namespaces
# (tests/faults/netlab.py: root), two gateways behind haproxy, the scenarios of tests/faults/scale.py; prints the
# table and writes bench/results/scale.json (about 10 minutes).
scale-test: $(STAMP)
	@bash scripts/ensure_netlab.sh
	$(BIN)/python -m tests.faults.scale --nodes 3

# The broker-facing tests (parking above all) against RabbitMQ 4.0 and 4.3, each run from a chroot of a later
# Debian release (scripts/rabbitmq_compat.sh: root; about 2 minutes per version the first time, then ~1 minute
# of tests each); each broker is stopped afterwards.
COMPAT_TESTS := tests/test_parking.py tests/test_ops_cli.py tests/test_cli_errors.py tests/test_observability.py \
	tests/test_consumer.py tests/test_pipeline_e2e.py
compat: $(STAMP)
	@for suite in trixie forky; do \
	  broker=$$(bash scripts/rabbitmq_compat.sh start $$suite) || exit 1; \
	  echo "== RabbitMQ from Debian $$suite: $$(echo $$broker | cut -d' ' -f1)"; \
	  env $$broker $(BIN)/python -m pytest -q $(COMPAT_TESTS); rc=$$?; \
	  bash scripts/rabbitmq_compat.sh stop $$suite; [ $$rc = 0 ] || exit $$rc; \
	done

bench: $(STAMP) broker fonts
	$(BIN)/python bench/run_all.py

db-stop: $(STAMP)
	$(BIN)/chatnation db stop

clean:
	-$(BIN)/chatnation db stop
	rm -rf $(VENV) .data
