# salesforce-operator

IMG ?= ghcr.io/sfops/salesforce-operator:dev
# Control-plane binaries for envtest and the embedded local control plane; built from Go modules
# by hack/envtest because setup-envtest cannot download them here. Point it elsewhere if you have them.
KUBEBUILDER_ASSETS ?= $(CURDIR)/bin/k8s
export KUBEBUILDER_ASSETS
GO ?= go
CONTROLLER_GEN ?= $(GO) tool controller-gen
KUBECTL ?= kubectl

.DEFAULT_GOAL := help
.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n\n"} /^[a-zA-Z_-]+:.*?##/ { printf "  %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate CRDs, RBAC and webhook manifests into config/.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./api/...;./controllers/...;./internal/webhook/..." output:crd:artifacts:config=config/crd/bases

.PHONY: generate
generate: ## Generate DeepCopy methods (zz_generated.deepcopy.go).
	$(CONTROLLER_GEN) object:headerFile="hack/boilerplate.go.txt" paths="./api/..."

.PHONY: chart
chart: ## Generate the Helm chart's templates and CRDs (charts/salesforce-operator) from config/.
	cd hack/platform && $(GO) run . -root ../..

.PHONY: fmt
fmt: ## Run gofmt on the code.
	gofmt -l -w $$(git ls-files '*.go' | grep -v '^hack/envtest/')

.PHONY: vet
vet: ## Run go vet.
	$(GO) vet ./...

.PHONY: envtest
envtest: ## Build kube-apiserver and etcd into bin/k8s (once; skipped when present).
	@if [ "$(KUBEBUILDER_ASSETS)" = "$(CURDIR)/bin/k8s" ]; then bash hack/envtest/build.sh bin/k8s; \
	else test -x "$(KUBEBUILDER_ASSETS)/kube-apiserver" || { echo "KUBEBUILDER_ASSETS=$(KUBEBUILDER_ASSETS) has no kube-apiserver" >&2; exit 1; }; fi

.PHONY: test
test: envtest vet ## Run every test (unit and envtest) with the race detector.
	$(GO) test -race -count=1 ./... $(TESTFLAGS)

.PHONY: test-faults
test-faults: envtest ## Fault injection: the manager killed or stopped mid-rotation (40 trials per cell), an API-server outage under the leader, the lease hand-over.
	$(GO) run ./hack/faults $(FAULTSFLAGS)

.PHONY: fidelity
fidelity: ## Run the real Salesforce CLI against the fake Salesforce (installs it from npm into bin/fidelity once).
	bash hack/fidelity/run.sh $(ARGS)

.PHONY: bench-scale
bench-scale: envtest ## Scale benchmark: 500 to 10,000 orgs, 100 ms Salesforce latency; writes bin/bench/scale.{json,csv,png} (ORGS=500,2000 for a shorter run).
	$(GO) run ./hack/benchscale $(if $(ORGS),--orgs $(ORGS))

.PHONY: test-platform
test-platform: ## Test the Helm chart against config/ (helm lint, helm template), the alerts (promtool test rules) and the dashboard.
	bash hack/platform/promtool.sh bin/promtool
	@echo "building helm (pinned in hack/platform/go.mod; a few minutes the first time, cached after)" >&2
	cd hack/platform && $(GO) tool helm version >/dev/null
	cd hack/platform && $(GO) vet ./... && PROMTOOL=$(CURDIR)/bin/promtool $(GO) test -count=1 ./... $(TESTFLAGS)

.PHONY: bench
bench: envtest ## Run the benchmarks.
	$(GO) test -run '^$$' -bench . -benchmem ./...

##@ Build

.PHONY: build
build: ## Build the manager (bin/manager) and the kubectl plugin (bin/kubectl-salesforce).
	$(GO) build -o bin/manager .
	$(GO) build -o bin/kubectl-salesforce ./cmd/kubectl-salesforce

.PHONY: run
run: envtest ## Run the operator: against KUBECONFIG's cluster if reachable, else on an embedded local control plane.
	$(GO) run ./hack/localdev $(ARGS)

.PHONY: docker-build
docker-build: ## Build the container image (needs a Docker engine).
	docker build -t $(IMG) .

##@ Deployment

.PHONY: install
install: manifests ## Install the CRDs into the current cluster.
	$(KUBECTL) apply --server-side -k config/crd

.PHONY: uninstall
uninstall: manifests ## Remove the CRDs from the current cluster (deletes every object of these kinds).
	$(KUBECTL) delete --ignore-not-found -k config/crd

.PHONY: deploy
deploy: manifests ## Deploy the operator into the current cluster (needs cert-manager for the webhooks).
	$(KUBECTL) apply --server-side -k config/default

.PHONY: undeploy
undeploy: ## Remove the operator from the current cluster.
	$(KUBECTL) delete --ignore-not-found -k config/default
