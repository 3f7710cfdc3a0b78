# gate — the two commands that matter: `make run` and `make test`. Both set up everything they need.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
GATE_LISTEN ?= 127.0.0.1:50051
export GATE_LISTEN

.PHONY: run test demo proto proto-check lint bench system-deps unit clean

$(STAMP): pyproject.toml
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $(STAMP)

# Debian packages the integration tests need (a real OCI registry, a real Docker engine). Installed
# only when missing and only when we are root; otherwise the tests report what is missing.
system-deps:
	@bash tests/support/system-deps.sh

run: $(STAMP)
	$(VENV)/bin/gate serve --listen $(GATE_LISTEN)

test: $(STAMP) system-deps proto-check lint
	$(PY) -m pytest -q tests

unit: $(STAMP)
	$(PY) -m pytest -q tests/unit

demo: $(STAMP)
	$(PY) -m tests.support.demo

proto: $(STAMP)
	$(PY) -m grpc_tools.protoc -Iproto --python_out=. --pyi_out=. --grpc_python_out=. proto/gate/v1/*.proto

# Regenerates the stubs into a scratch dir and fails when the committed ones differ (or are missing/extra).
proto-check: $(STAMP)
	@tmp=$$(mktemp -d) && \
	$(PY) -m grpc_tools.protoc -Iproto --python_out=$$tmp --pyi_out=$$tmp --grpc_python_out=$$tmp proto/gate/v1/*.proto && \
	for f in $$tmp/gate/v1/*; do \
	  name=$$(basename $$f); \
	  diff -q $$f gate/v1/$$name >/dev/null 2>&1 || { echo "gate/v1/$$name is stale: run 'make proto'"; rm -rf $$tmp; exit 1; }; \
	done; \
	for f in gate/v1/*_pb2*.py*; do \
	  [ -e $$tmp/gate/v1/$$(basename $$f) ] || { echo "$$f has no .proto any more: delete it"; rm -rf $$tmp; exit 1; }; \
	done; rm -rf $$tmp; echo "proto stubs up to date"

lint: $(STAMP)
	$(VENV)/bin/ruff check gate scanners tests bench
	$(VENV)/bin/ruff format --check gate scanners tests bench
	$(VENV)/bin/mypy

bench: $(STAMP) system-deps
	$(PY) -m bench.run

clean:
	rm -rf var .mypy_cache .ruff_cache .pytest_cache
