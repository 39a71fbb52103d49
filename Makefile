# shadow-operator: `make help` lists the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CACHE_DIR ?= $(HOME)/.cache/shadow-operator
K8S_BIN := $(CACHE_DIR)/k8s-1.20.2
LOCAL_KUBECTL := $(K8S_BIN)/kubectl
CLUSTER_KUBECONFIG := $(CACHE_DIR)/cluster/kubeconfig
# deploy/undeploy talk to whatever cluster KUBECONFIG names, with the user's own kubectl.
KUBECTL ?= kubectl
# The one place the version lives is pyproject.toml; the image tag follows it.
VERSION := $(shell sed -n 's/^version = "\(.*\)"$$/\1/p' pyproject.toml | head -n1)
IMG ?= shadow-operator:$(VERSION)
PYTEST_ARGS ?=
DEMO_ARGS ?=
PY_SOURCES := operator tests examples benchmarks

.PHONY: help install manifests lint format test test-unit test-integration test-loaded test-e2e test-node run cluster \
        cluster-down deploy undeploy docker-build demo demo-cluster e2e bench-operator bench-analyze bench-router bench-verdict bench-aa \
        bench-deps clean mutants

##@ General

help: ## Show this help
	@awk 'BEGIN {FS = ":.*## "} /^##@/ {printf "\n\033[1m%s\033[0m\n", substr($$0, 5)} \
	  /^[a-zA-Z0-9_-]+:.*## / {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

##@ Development

install: $(VENV)/.installed ## Create the virtual environment and install the package with dev tools

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

manifests: install ## Regenerate the CRD, RBAC, webhook and API reference from the API types; set the operator image (IMG=name:tag)
	$(BIN)/shadowctl manifests --image $(IMG)

lint: install ## ruff format check and lint, and the import contracts (pyproject's [tool.importlinter])
	$(BIN)/ruff format --check $(PY_SOURCES)
	$(BIN)/ruff check $(PY_SOURCES)
	$(BIN)/lint-imports --no-cache

format: install ## Format the code
	$(BIN)/ruff format $(PY_SOURCES)
	$(BIN)/ruff check --fix $(PY_SOURCES)

##@ Test

# Coverage across tiers ([tool.coverage.*] in pyproject.toml): pytest runs under `coverage run`,
# whose subprocess patch measures the operator, router, collector and job processes the tests
# start too; the per-process data is combined, reported per module and held to per-package
# floors (hack/coverage_floors.py). COVERAGE_FLOORS=no reports without enforcing (a partial run,
# PYTEST_ARGS='-k ...'); COVERAGE=yes measures test-unit / test-integration too (report only).
COV := $(BIN)/coverage
COVERAGE ?= no
COVERAGE_FLOORS ?= yes
PYTEST_RUN = $(if $(filter yes,$(COVERAGE)),$(COV) run -m pytest,$(BIN)/python -m pytest)
# $(call with_report,command): run it, then combine the data and print the report either way; its status wins
with_report = status=0; $(1) || status=$$?; $(COV) combine -q && $(COV) report || true; exit $$status

test: install cluster-binaries test-deps images ## Everything: lint, unit, integration (control plane) and real-node tests, with coverage floors
	$(MAKE) --no-print-directory lint
	$(COV) erase
	$(call with_report,$(COV) run -m pytest tests $(PYTEST_ARGS))
	[ "$(COVERAGE_FLOORS)" = no ] || $(BIN)/python hack/coverage_floors.py

test-unit: install test-deps ## Unit tests only (no cluster); COVERAGE=yes to measure
	$(if $(filter yes,$(COVERAGE)),$(COV) erase)
	$(if $(filter yes,$(COVERAGE)),$(call with_report,$(PYTEST_RUN) tests/unit $(PYTEST_ARGS)),$(PYTEST_RUN) tests/unit $(PYTEST_ARGS))

test-integration: install cluster-binaries test-deps ## Integration tests: the real operator against a private control plane; COVERAGE=yes to measure
	$(if $(filter yes,$(COVERAGE)),$(COV) erase)
	$(if $(filter yes,$(COVERAGE)),$(call with_report,$(PYTEST_RUN) tests/integration $(PYTEST_ARGS)),$(PYTEST_RUN) tests/integration $(PYTEST_ARGS))

# Timing flakes show on a busy machine: the integration tier (not the node tier) LOADED_RUNS
# times in a row, each with a CPU hog per core that stops by itself after LOADED_HOG_SECONDS
# (and is killed when its run ends). Every run goes on; the target fails if any run failed.
LOADED_RUNS ?= 3
LOADED_HOG_SECONDS ?= 1200
test-loaded: install cluster-binaries test-deps ## The integration tier 3 times with every core kept busy (timing flakes; ~20-30 min)
	@failed=0; for run in $$(seq $(LOADED_RUNS)); do \
	  hogs=(); for _ in $$(seq $$(nproc)); do \
	    $(BIN)/python -c 'import itertools, time; end = time.monotonic() + $(LOADED_HOG_SECONDS); any(time.monotonic() > end for _ in itertools.count())' & \
	    hogs+=($$!); \
	  done; \
	  echo "== loaded run $$run/$(LOADED_RUNS): $${#hogs[@]} CPU hogs (at most $(LOADED_HOG_SECONDS)s)"; \
	  started=$$SECONDS; \
	  $(BIN)/python -m pytest tests/integration $(PYTEST_ARGS) && result=passed || { result=FAILED; failed=$$((failed + 1)); }; \
	  kill "$${hogs[@]}" 2>/dev/null || true; wait "$${hogs[@]}" 2>/dev/null || true; \
	  echo "== loaded run $$run/$(LOADED_RUNS): $$result in $$((SECONDS - started))s"; \
	done; \
	echo "== $$failed of $(LOADED_RUNS) loaded runs failed"; [ $$failed -eq 0 ]

test-e2e: install cluster-binaries test-deps images ## End-to-end: the demo's story through the operator, output shown
	$(BIN)/python -m pytest tests -m e2e -s $(PYTEST_ARGS)

test-node: install cluster-binaries test-deps images ## The real-node tests: the operator and the story in real Pods (needs root)
	$(BIN)/python -m pytest tests/node -s $(PYTEST_ARGS)

mutants: install ## Mutation testing of the verdict engine (slow, not in make test; MUTANTS_ARGS='--files checks.py'): docs/mutants.md
	$(BIN)/python hack/mutants.py $(MUTANTS_ARGS)

.PHONY: test-deps
DEBIAN_TEST_TOOLS := /usr/bin/prometheus:prometheus /usr/bin/lua5.4:lua5.4
test-deps: ## Install the Debian packages the tests use (prometheus, lua5.4) when missing
	@hack/debian-deps.sh $(DEBIAN_TEST_TOOLS)

##@ Local cluster

.PHONY: cluster-binaries
cluster-binaries: ## Build the Kubernetes 1.20 binaries (control plane, kubelet, kube-proxy, kubectl) once (cached in ~/.cache)
	hack/local-cluster.sh build

cluster: ## Start a local single-node cluster that runs Pods (hack/local-cluster.sh up --node) and install the CRDs
	hack/local-cluster.sh up --node
	$(LOCAL_KUBECTL) --kubeconfig $(CLUSTER_KUBECONFIG) apply -f crds/shadow.mlops.dev_shadowdeployments.yaml
	$(LOCAL_KUBECTL) --kubeconfig $(CLUSTER_KUBECONFIG) create -f third_party/istio/networking-crds.yaml 2>/dev/null \
	  || echo "Istio CRDs: already present"
	@echo; echo "  export KUBECONFIG=$(CLUSTER_KUBECONFIG) PATH=$(K8S_BIN):\$$PATH"

cluster-down: ## Stop the local cluster and undo its network changes (bridge, iptables, sysctls)
	hack/local-cluster.sh down

##@ Deploy

run: install ## Run the operator from the checkout against the current KUBECONFIG
	$(BIN)/shadowctl run

deploy: ## Install the CRD, RBAC and the operator Deployment into the current cluster
	$(KUBECTL) apply -k manifests

undeploy: ## Remove what deploy installed
	$(KUBECTL) delete -k manifests --ignore-not-found

docker-build: ## Build the operator image with a Docker engine (BuildKit); `make images` needs none
	docker build $$(ca=$${PIP_CERT:-$$($(PYTHON) -m pip config get global.cert 2>/dev/null || true)}; \
	  [ -s "$$ca" ] && echo --secret id=pip-ca,src=$$ca) -t $(IMG) .

##@ Demo

demo: install ## The story: v2 beats v1 offline, a shadow week shows why not to ship it, the fix passes (~1 min)
	@$(MAKE) --no-print-directory demo-deps || true
	PYTHONPATH=examples $(BIN)/python -m shadow_demo $(DEMO_ARGS)

.PHONY: demo-servers
demo-servers: install ## The story with real model servers: MLServer, KServe v1/V2, MLflow (SERVER=mlserver|kserve-v1|kserve-v2|mlflow; ~3 min)
	PYTHONPATH=examples $(BIN)/python -m shadow_demo.servers_demo --server $(or $(SERVER),all) $(DEMO_ARGS)

.PHONY: demo-deps
demo-deps: ## Install Debian's prometheus for the demo when missing and possible (without it the demo uses records alone)
	@hack/debian-deps.sh --optional /usr/bin/prometheus:prometheus; \
	[ -x /usr/bin/prometheus ] || echo "without prometheus the demo analyses from records alone"

demo-cluster: install cluster-binaries test-deps images ## The demo's story on a private real node: kubectl get at every phase, describe at the end (~8 min, root)
	$(BIN)/python -m pytest tests/node/test_real_pods.py::test_the_story_on_real_pods -s -q $(PYTEST_ARGS)

e2e: test-e2e ## The demo's story through the operator on a private local control plane

##@ Benchmarks

bench-operator: install cluster-binaries ## Converge 200 (OBJECTS=1000) ShadowDeployments beside kubectl; time, memory, API requests converging and idle
	$(BIN)/python -m benchmarks.operator_convergence --count $(or $(OBJECTS),200) $(BENCH_ARGS)

bench-analyze: install ## Analyse 100k/1M/3M generated pair records; time and memory beside DuckDB
	$(BIN)/python -m benchmarks.analyze

bench-aa: install ## A/A through the router (candidate = primary): latency ratios and intervals, with and without a busy core
	$(BIN)/python -m benchmarks.aa $(BENCH_ARGS)

bench-verdict: install ## Verdict: false-Failed rate of equivalent candidates (target 0) and power against injected faults
	$(BIN)/python -m benchmarks.verdict $(BENCH_ARGS)

bench-router: install bench-deps ## Router vs direct and nginx (mirror): throughput and primary latency with fast/slow/failing/resetting/hanging candidates
	$(BIN)/python -m benchmarks.router $(BENCH_ARGS)

DEBIAN_BENCH_TOOLS := /usr/sbin/nginx:nginx /usr/bin/wrk:wrk /usr/bin/hey:hey
bench-deps: ## Install the Debian packages the router benchmark uses (nginx, wrk, hey) when missing
	@hack/debian-deps.sh $(DEBIAN_BENCH_TOOLS)

##@ Housekeeping

clean: ## Remove the virtual environment and caches in the checkout
	rm -rf $(VENV) .pytest_cache .ruff_cache operator/*.egg-info

##@ Images

.PHONY: images
images: ## Build the pause, base, operator and demo-model images with buildah into ~/.cache/shadow-operator/images (only what changed; SHADOW_CACHE_DIR moves it)
	hack/images.sh
