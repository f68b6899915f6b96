# flux-passwordless: `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PYTEST_ARGS ?=

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-16s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: pyproject.toml
	@command -v git >/dev/null || { echo "installing git"; apt-get install -y -q git >/dev/null || (apt-get update -q && apt-get install -y -q git); }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

.PHONY: venv
venv: $(VENV)/.installed ## Create .venv with the product and its test tools

.PHONY: control-plane
control-plane: ## Build kube-apiserver, etcd and kubectl from Go modules (cached; a second run is a no-op)
	@bash tests/controlplane/build.sh >/dev/null

# source-controller versions the e2e suite runs for real (tests/e2e/test_flux_e2e.py): the newest that builds from
# the module proxy here, and the oldest we claim.
FLUX_SOURCE_CONTROLLERS := v1.9.6 v1.8.5

.PHONY: flux
flux: ## Build Flux's source-controller from its Go module, per version in FLUX_SOURCE_CONTROLLERS (cached)
	@for v in $(FLUX_SOURCE_CONTROLLERS); do bash tests/flux/build.sh $$v >/dev/null || exit 1; done

.PHONY: run
run: venv ## The product's main job: on a local control plane (no KUBECONFIG) the whole story; DEMO_EXIT=1 exits after it
	@$(PY) -m demo

.PHONY: test
test: venv control-plane flux ## Install what the tests need, then run them all (unit + e2e on a real apiserver, real Flux)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

.PHONY: lint
lint: venv ## ruff and mypy --strict
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

.PHONY: fmt
fmt: venv ## Format and autofix
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

.PHONY: dev-up
dev-up: venv control-plane ## Start a local control plane (etcd + kube-apiserver) and print its kubeconfig
	@$(PY) -m tests.support.controlplane up

.PHONY: dev-down
dev-down: venv ## Stop the local control plane
	@$(PY) -m tests.support.controlplane down

.PHONY: clean
clean: dev-down ## Remove the venv and local state (the control-plane build cache stays)
	rm -rf $(VENV) .dev .mypy_cache .ruff_cache .pytest_cache

.PHONY: certs
certs: venv ## A CA and serving certificate for local runs (localhost, 127.0.0.1) in .dev/webhook-tls
	@$(VENV)/bin/flux-passwordless-certs files --dir .dev/webhook-tls

.PHONY: bench-webhook
bench-webhook: venv ## Benchmark: our webhook vs the Go yardstick (../shared/bench), pinned cores, wrk over TLS
	@command -v wrk >/dev/null || apt-get install -y -q wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	@$(PY) -m bench.webhook

.PHONY: soak
soak: venv control-plane ## Soak: 2 refresher replicas, 200 GitRepositories, a fault every 20-40 s (SOAK_MINUTES=10)
	@$(PY) -m bench.soak --minutes $${SOAK_MINUTES:-10}

.PHONY: bench-refresher
bench-refresher: venv control-plane ## Benchmark: 1k and 10k GitRepositories over 100 credentials, real apiserver
	@$(PY) -m bench.refresher
