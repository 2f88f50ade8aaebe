# The two set-up commands of README.md: `make run` (the sandbox) and `make test` (the suite).
# Each creates .venv itself and installs what it needs; nothing has to be installed by hand.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: run test lint unit integration e2e bench faults load conformance mutants deb system-deps clean

$(BIN)/python:
	scripts/bootstrap-venv "$(PYTHON)" "$(VENV)"

$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --editable '.[sandbox]'
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --editable '.[test]'
	touch $@ $(VENV)/.installed-run

system-deps:
	scripts/install-system-deps

## make run: start the sandbox (a private systemd + journald + Caddy, the agent, the dashboard)
run: $(VENV)/.installed-run
	$(BIN)/pockestrator up

## make test: lint, type-check, then every suite (unit, integration, e2e, benchmarks' smoke),
## TEST_WORKERS modules at a time (each module's test beds stay in one process; 0: all in one),
## the longest modules first (tests/testbed/schedule.py). Five on two cores: a module spends
## most of its time waiting on systemd, PocketBase and timers, not on a CPU.
## Bytecode is written even where PYTHONDONTWRITEBYTECODE is set: otherwise every worker
## compiles and assertion-rewrites every module again (12 CPU-seconds each, 5 cached).
## Where the CPU goes: POCKESTRATOR_CPU_LEDGER=test-artifacts/cpu make test, then
## .venv/bin/python -m tests.testbed.cpu_ledger test-artifacts/cpu (tests/testbed/cpu_ledger.py).
TEST_WORKERS ?= 5
test: $(VENV)/.installed-test system-deps lint
	env -u PYTHONDONTWRITEBYTECODE $(BIN)/pytest --numprocesses $(TEST_WORKERS) \
		--dist loadfile --no-loadscope-reorder

lint: $(VENV)/.installed-test
	$(BIN)/ruff check pockestrator tests
	$(BIN)/ruff format --check pockestrator tests
	$(BIN)/mypy
	$(BIN)/lint-imports

unit: $(VENV)/.installed-test
	$(BIN)/pytest tests/unit

integration: $(VENV)/.installed-test
	$(BIN)/pytest tests/integration

e2e: $(VENV)/.installed-test system-deps
	$(BIN)/pytest tests/e2e

bench: $(VENV)/.installed-test
	$(BIN)/python -m tests.benchmarks

## make faults: kill -9 of the agent at 100 random points of a mixed workload (not in
## `make test`; many minutes); figures in test-artifacts/faults.json, see docs/reliability.md
faults: $(VENV)/.installed-test system-deps
	$(BIN)/python -m tests.faults --points 100

## make load: the API under load (100 clients, 60 s) and 200 log followers, on the test bed
load: $(VENV)/.installed-test
	$(BIN)/python -m tests.benchmarks.load

## make conformance: schemathesis at 200 examples per operation, every phase and check,
## against a live agent on the test bed (reports in test-artifacts/conformance/)
conformance: $(VENV)/.installed-test
	$(BIN)/python -m tests.conformance

## make mutants: mutation testing of the pure modules (not in `make test`); survivors that
## cannot be killed are explained in tests/mutants.md
mutants: $(VENV)/.installed-test
	rm -rf mutants
	HYPOTHESIS_PROFILE=mutants $(BIN)/mutmut run
	$(BIN)/mutmut results

## make deb: build dist/pockestrator_<version>_<arch>.deb (see docs/operations.md)
deb: $(BIN)/python
	PYTHON=$(BIN)/python packaging/build-deb dist

clean:
	rm -rf $(VENV) .cache .mypy_cache .ruff_cache .pytest_cache .import_linter_cache mutants test-artifacts
