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
control-plane: ## Build kube-apiserver, etcd and kubectl from Go modules, per Kubernetes version in K8S_VERSIONS (cached)
	@bash tests/controlplane/build.sh >/dev/null
	@for v in $(K8S_VERSIONS); do K8S_VERSION=$$v bash tests/controlplane/build.sh >/dev/null || exit 1; done

# Kubernetes versions the admission and refresher e2e also run on (tests/support/controlplane.py K8S_MATRIX): one of
# each other minor the module proxy serves, pinned in tests/controlplane/versions by pin.sh. The default version
# (tests/controlplane/go.mod) runs everything.
K8S_VERSIONS := v1.34.4 v1.36.3 v1.37.2

# source-controller versions the e2e suite runs for real (tests/e2e/test_flux_e2e.py): the newest that builds from
# the module proxy here, and the oldest we claim.
FLUX_SOURCE_CONTROLLERS := v1.9.6 v1.8.5

.PHONY: flux
flux: ## Build Flux's source-controller from its Go module, per version in FLUX_SOURCE_CONTROLLERS (cached)
	@for v in $(FLUX_SOURCE_CONTROLLERS); do bash tests/flux/build.sh $$v >/dev/null || exit 1; done

# A real one-node cluster (tests/support/node.py): kubelet & co. from the same Go module as the control plane,
# containerd, runc and the CNI plugins from Debian's packages; images built here (no registry is reachable).
NODE_PACKAGES := containerd runc containernetworking-plugins iptables conntrack podman mmdebstrap uidmap tinyproxy
IMAGE_BASE ?= local

.PHONY: node-deps
node-deps: ## Install the Debian packages the node and the image builds need (a no-op once installed)
	@missing=$$(for p in $(NODE_PACKAGES); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then echo "installing $$missing"; \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null \
	  || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing >/dev/null; }; fi

.PHONY: node
node: control-plane ## Build kubelet, kube-proxy, kube-scheduler, kube-controller-manager from Go modules (cached)
	@bash tests/controlplane/build.sh node >/dev/null

.PHONY: node-up
node-up: venv node-deps node ## Start a real one-node cluster (containerd, kubelet...) and print its KUBECONFIG
	@$(PY) -m tests.support.node up
	@if podman image exists $(IMAGE) 2>/dev/null; then $(PY) -m tests.support.node load $(IMAGE); fi

.PHONY: node-down
node-down: venv ## Stop the node started by node-up, by PID, and remove its network namespace and cgroups
	@$(PY) -m tests.support.node down

IMAGE ?= ghcr.io/flux-passwordless/flux-passwordless:0.1.0

.PHONY: image
image: venv node-deps ## Build the image from the Dockerfile (IMAGE_BASE=local: a Debian base made here); loads it into a running node
	@$(PY) -m tests.support.node image $(IMAGE) --base $(IMAGE_BASE)

.PHONY: run
run: venv ## The product's main job: on a local control plane (no KUBECONFIG) the whole story; DEMO_EXIT=1 exits after it
	@$(PY) -m demo

.PHONY: test
test: venv control-plane flux peers node-deps node ## Install what the tests need, then run them all (unit + e2e on a real apiserver, real Flux)
	$(VENV)/bin/pytest $(PYTEST_ARGS)

.PHONY: peers
peers: ## Build the pod mutation of the webhooks we stand in for (Azure Workload Identity, EKS) from their Go modules (cached)
	@bash tests/peers/build.sh >/dev/null

.PHONY: peer-goldens
peer-goldens: venv peers ## Rewrite the peer fixtures' answers (tests/fixtures/pods/peers) from the peers' own code; read the diff
	@$(PY) -m tests.peers.refresh

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
clean: dev-down node-down ## Remove the venv and local state (the control-plane build cache stays)
	rm -rf $(VENV) .dev .mypy_cache .ruff_cache .pytest_cache

.PHONY: certs
certs: venv ## A CA and serving certificate for local runs (localhost, 127.0.0.1) in .dev/webhook-tls
	@$(VENV)/bin/flux-passwordless-certs files --dir .dev/webhook-tls

.PHONY: bench-webhook
bench-webhook: venv ## Benchmark: our webhook vs the Go yardstick (../shared/bench), pinned cores, wrk over TLS
	@command -v wrk >/dev/null || apt-get install -y -q wrk >/dev/null || (apt-get update -q && apt-get install -y -q wrk)
	@$(PY) -m bench.webhook

.PHONY: bench-hostile
bench-hostile: venv ## Memory under hostile clients: each pattern against our webhook and the Go yardstick, one run
	@$(PY) -m bench.hostile

.PHONY: soak
soak: venv control-plane ## Soak: 2 refresher replicas, 200 GitRepositories, a fault every 20-40 s (SOAK_MINUTES=10)
	@$(PY) -m bench.soak --minutes $${SOAK_MINUTES:-10}

.PHONY: bench-refresher
bench-refresher: venv control-plane ## Benchmark: 1k and 10k GitRepositories over 100 credentials against the raw-write floor, create-to-usable p99
	@$(PY) -m bench.refresher

.PHONY: bench-shards
bench-shards: venv control-plane ## Benchmark: 100k GitRepositories over 1,000 credentials, 4 refresher shards, one control plane
	@$(PY) -m bench.shards

FUZZ_SECONDS ?= 120

.PHONY: fuzz
fuzz: venv ## Coverage-guided fuzzing (atheris) of review decoding and both admission cores, FUZZ_SECONDS long
	@mkdir -p .dev/fuzz-corpus
	PYTHONPATH=. $(PY) tests/fuzz/fuzz_reviews.py .dev/fuzz-corpus tests/fuzz/corpus \
	  -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 -timeout=10 -artifact_prefix=.dev/fuzz-
