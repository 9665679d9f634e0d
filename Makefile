# LifecycleZero: every command a developer needs. The first target that needs Python creates
# .venv and installs the project with its dev dependencies; nothing else is needed on a fresh machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PROTO_DIR := protos
PROTOS := $(wildcard $(PROTO_DIR)/lifecyclezero/v1/*.proto)
PYTEST_ARGS ?=
BUF := .tools/node_modules/.bin/buf

.PHONY: help install proto test lint up demo bench bench-quick certs lock deploy-render deploy-check clean

help:
	@echo "make demo        see the whole system work (embedded AWS, services, a simulated fleet)"
	@echo "make test        run the whole test suite"
	@echo "make up          run the local stack (Ctrl-C stops it); use it with the lz CLI"
	@echo "make lint        ruff, mypy and buf lint"
	@echo "make proto       regenerate the gRPC code from protos/"
	@echo "make bench       benchmarks and the report in bench-results/"
	@echo "make certs       a local CA and per-service TLS certificates in .lz/certs"
	@echo "                 (INGEST_SAN=\"agents.example.com ...\" adds the names agents dial to ingest's)"
	@echo "make lock        regenerate the image's hashed lock files (deploy/requirements*.lock) with uv"
	@echo "make deploy-check  render the kind overlay and the example EKS site, and cfn-lint the template"

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

proto: $(STAMP)
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m grpc_tools.protoc -I$(PROTO_DIR) \
		--python_out=$(PROTO_DIR) --grpc_python_out=$(PROTO_DIR) \
		--mypy_out=$(PROTO_DIR) --mypy_grpc_out=$(PROTO_DIR) $(PROTOS)

test: $(STAMP)
	$(BIN)/pytest -q $(PYTEST_ARGS)

lint: $(STAMP) $(BUF)
	$(BIN)/ruff check .
	$(BIN)/mypy services agent lz
	$(BUF) lint

$(BUF):
	npm install --silent --no-audit --no-fund --prefix .tools @bufbuild/buf@1 >/dev/null

INGEST_REPLICAS ?= 1
up: $(STAMP)
	$(BIN)/python -m services.kit.devstack up --ingest-replicas $(INGEST_REPLICAS)

demo: $(STAMP)
	$(BIN)/python -m lz.demo

bench: $(STAMP)
	$(BIN)/python -m benchmarks.run --out bench-results

bench-quick: $(STAMP)
	$(BIN)/python -m benchmarks.run --out bench-results --quick

certs: $(STAMP)
	$(BIN)/python -m services.kit.certs .lz/certs $(foreach san,$(INGEST_SAN),--ingest-san $(san))

# The image installs only what these pin, by hash (deploy/Dockerfile); run after changing dependencies.
UV_COMPILE = $(BIN)/uv pip compile --quiet --generate-hashes --universal --python-version 3.11 --no-header
lock: $(STAMP)
	$(BIN)/pip install --quiet 'uv>=0.4,<1'
	$(UV_COMPILE) pyproject.toml -o deploy/requirements.lock
	$(UV_COMPILE) pyproject.toml --extra embedded -o deploy/requirements-embedded.lock
	echo 'setuptools>=68' | $(UV_COMPILE) - -o deploy/requirements-build.lock

deploy-render: $(STAMP)
	$(BIN)/python -m deploy.aws.render --write

deploy-check: $(STAMP)
	kubectl kustomize deploy/k8s/overlays/local >/dev/null
	kubectl kustomize deploy/site-example >/dev/null
	$(BIN)/cfn-lint deploy/aws/lifecyclezero.yaml

clean:
	rm -rf $(VENV) .tools .lz bench-results .mypy_cache .ruff_cache .pytest_cache
