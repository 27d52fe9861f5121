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
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n\n"} /^[a-zA-Z0-9_-]+:.*?##/ { printf "  %-14s %s\n", $$1, $$2 }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: ## Generate CRDs, RBAC and webhook manifests into config/.
	$(CONTROLLER_GEN) rbac:roleName=manager-role crd webhook paths="./api/...;./controllers/...;./internal/webhook/...;./internal/certs/..." output:crd:artifacts:config=config/crd/bases

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
	cd hack/cluster && $(GO) vet ./... && $(GO) test -count=1 ./...

# Debian's Chromium for the browser test, installed when missing (as hack/cluster installs its packages).
.PHONY: chromium
chromium:
	@command -v chromium >/dev/null || command -v "$(CHROMIUM)" >/dev/null 2>&1 || { echo "installing Debian's chromium for the browser test" >&2; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq chromium; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq chromium; fi; }

.PHONY: test-browser
test-browser: envtest chromium ## A person with headless Chromium follows make run's banner: plugin login, reconnect and open against the demo's fake Salesforce; screenshots in bin/browser/.
	SFOPS_BROWSER_REQUIRED=1 $(GO) test -count=1 -v -timeout 15m -run '^TestBrowserConnectsTheDemo$$' ./hack/localdev $(TESTFLAGS)

.PHONY: test-faults
test-faults: envtest ## Fault injection: the manager killed or stopped mid-rotation (40 trials per cell), hand-overs during rotation (leader, shard, one Secret key), an API-server outage under the leader, the lease hand-over.
	$(GO) run ./hack/faults $(FAULTSFLAGS)

.PHONY: test-chains
test-chains: envtest ## One owner per credential chain under load: production + 6 sandboxOf sandboxes needing its rotating token at once, 300 rounds (CHAIN_STRESS_ITERATIONS), a table of spent tokens presented.
	CHAIN_STRESS_ITERATIONS=$(or $(CHAIN_STRESS_ITERATIONS),300) $(GO) test -count=1 -v -timeout 30m -run '^TestProductionChainUnderLoad$$' ./controllers/

.PHONY: fidelity
fidelity: envtest ## Run the real Salesforce CLI against the fake Salesforce (installs it from npm into bin/fidelity once), and through kubectl salesforce exec with the operator in-process.
	bash hack/fidelity/run.sh $(ARGS)

.PHONY: bench-scale
bench-scale: envtest ## Scale benchmark: 500 to 10,000 orgs, 100 ms Salesforce latency; writes bin/bench/scale.{json,csv,png} (ORGS=500,2000 for a shorter run).
	$(GO) run ./hack/benchscale $(if $(ORGS),--orgs $(ORGS))

.PHONY: test-platform
test-platform: envtest ## Test the Helm chart against config/ (helm lint, helm template, a server-side dry run of the sharded install), the alerts (promtool test rules) and the dashboard.
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
run: envtest ## Run the operator: against KUBECONFIG's cluster if reachable, else on an embedded local control plane with a demo (builds the kubectl plugin into bin/ too).
	$(GO) build -o bin/kubectl-salesforce ./cmd/kubectl-salesforce
	$(GO) run ./hack/localdev $(ARGS)

# The image `make image` writes: an OCI image layout tarball that is also a docker-archive.
IMAGE_TAR ?= bin/image/salesforce-operator.tar
IMAGE_ARCH ?= $(shell $(GO) env GOARCH)
# The image's org.opencontainers.image.revision label.
IMAGE_REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
# The CA certificates the image trusts: Debian's ca-certificates package, installed when missing.
CA_CERTS ?= /etc/ssl/certs/ca-certificates.crt

.PHONY: ca-certificates
ca-certificates:
	@test -s $(CA_CERTS) || { echo "installing Debian's ca-certificates for $(CA_CERTS)" >&2; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq --no-install-recommends ca-certificates; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq --no-install-recommends ca-certificates; fi; }

.PHONY: image
image: ca-certificates ## Build the manager's image IMG without Docker into IMAGE_TAR and print its digest (reproducible).
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath -buildvcs=false -ldflags="-s -w" -o bin/manager-linux-$(IMAGE_ARCH) .
	$(GO) run ./hack/image -binary bin/manager-linux-$(IMAGE_ARCH) -arch $(IMAGE_ARCH) -ca-file $(CA_CERTS) \
	  -name $(IMG) -revision "$(IMAGE_REVISION)" -out $(IMAGE_TAR)

.PHONY: image-check
image-check: image ## Build the image a second time with an empty Go build cache and fail unless the digests match.
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) GOCACHE=$$tmp/cache $(GO) build -trimpath -buildvcs=false -ldflags="-s -w" -o $$tmp/manager . && \
	$(GO) run ./hack/image -binary $$tmp/manager -arch $(IMAGE_ARCH) -ca-file $(CA_CERTS) \
	  -name $(IMG) -revision "$(IMAGE_REVISION)" -out $$tmp/image.tar > $$tmp/digest && \
	cmp -s $(IMAGE_TAR) $$tmp/image.tar && echo "reproducible: $$(cut -d' ' -f1 $$tmp/digest), twice" || \
	{ echo "not reproducible: $$(cut -d' ' -f1 $$tmp/digest) differs from $(IMAGE_TAR)" >&2; exit 1; }

.PHONY: docker-build
docker-build: ## Build the same image with a Docker engine.
	docker build -t $(IMG) .

##@ Deployment

.PHONY: install
install: manifests ## Install the CRDs into the current cluster.
	$(KUBECTL) apply --server-side -k config/crd

.PHONY: uninstall
uninstall: manifests ## Remove the CRDs from the current cluster (deletes every object of these kinds).
	$(KUBECTL) delete --ignore-not-found -k config/crd

# What `make deploy` applies: config/default needs nothing in the cluster (the manager keeps its
# own webhook certificate); config/default-certmanager has cert-manager issue it.
DEPLOY_CONFIG ?= config/default

.PHONY: deploy-manifests
deploy-manifests: manifests ## Render DEPLOY_CONFIG with the manager image set to IMG into bin/deploy.yaml (the repository stays untouched).
	@mkdir -p bin
	$(KUBECTL) kustomize $(DEPLOY_CONFIG) > bin/deploy.yaml.tmp
	@grep -q 'image: ghcr.io/sfops/salesforce-operator:dev$$' bin/deploy.yaml.tmp || { echo "$(DEPLOY_CONFIG) has no image ghcr.io/sfops/salesforce-operator:dev to replace" >&2; exit 1; }
	sed 's|image: ghcr.io/sfops/salesforce-operator:dev$$|image: $(IMG)|' bin/deploy.yaml.tmp > bin/deploy.yaml
	@rm -f bin/deploy.yaml.tmp
	@echo "bin/deploy.yaml: $(DEPLOY_CONFIG) with image $(IMG)"

.PHONY: deploy
deploy: deploy-manifests ## Deploy the operator with image IMG into the current cluster (no cert-manager needed; see DEPLOY_CONFIG).
	$(KUBECTL) apply --server-side -f bin/deploy.yaml

.PHONY: undeploy
undeploy: ## Remove the operator from the current cluster.
	$(KUBECTL) delete --ignore-not-found -k $(DEPLOY_CONFIG)

##@ End to end

# The single-node cluster of `make e2e-cluster` (hack/cluster): containerd, etcd, the control plane,
# a kubelet and kube-proxy run as root processes of this machine, with their PKI, state, logs and
# the admin kubeconfig in E2E_CLUSTER_DIR. The Kubernetes binaries are built into KUBEBUILDER_ASSETS
# by hack/envtest, like envtest's; the pause image (pods' sandbox) and the probe image (the smoke
# test's workload) by hack/image. E2E_NODE_IP overrides the node address (default: the default
# route's interface's).
E2E_CLUSTER_DIR ?= $(CURDIR)/bin/cluster
E2E_BIN := $(CURDIR)/bin/e2e
E2E_CLUSTER = $(E2E_BIN)/cluster -dir $(E2E_CLUSTER_DIR) -bin $(KUBEBUILDER_ASSETS) \
  -pause-tar $(E2E_BIN)/pause.tar -probe-tar $(E2E_BIN)/probe.tar $(if $(E2E_NODE_IP),-node-ip $(E2E_NODE_IP))

.PHONY: e2e-cluster-tool
e2e-cluster-tool:
	@cd hack/cluster && $(GO) build -o $(E2E_BIN)/cluster .

.PHONY: e2e-cluster-images
e2e-cluster-images: ca-certificates
	@cd hack/cluster && for p in pause probe; do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath -ldflags="-s -w" -o $(E2E_BIN)/$$p-linux-$(IMAGE_ARCH) ./$$p || exit 1; done
	@for p in pause probe; do $(GO) run ./hack/image -binary $(E2E_BIN)/$$p-linux-$(IMAGE_ARCH) -arch $(IMAGE_ARCH) \
	  -ca-file $(CA_CERTS) -name localhost/e2e/$$p:v1 -out $(E2E_BIN)/$$p.tar >/dev/null || exit 1; done

.PHONY: e2e-cluster
e2e-cluster: e2e-cluster-tool e2e-cluster-images ## Start a single-node Kubernetes v1.36.3 cluster here (root; apt-get installs containerd, runc, conntrack if missing) or report it running; prints `export KUBECONFIG=...`.
	@bash hack/envtest/build.sh $(KUBEBUILDER_ASSETS) etcd kube-apiserver kubelet kube-controller-manager kube-scheduler kube-proxy kubectl
	@$(E2E_CLUSTER) up

.PHONY: e2e-cluster-down
e2e-cluster-down: e2e-cluster-tool ## Stop the cluster and remove what it left in the host: processes, mounts, cgroups, KUBE-*/CNI-* chains, cni0 (keeps its logs).
	@$(E2E_CLUSTER) down

.PHONY: e2e-cluster-load
e2e-cluster-load: e2e-cluster-tool ## Import IMAGE_TAR (default: `make image`'s; several allowed) into the cluster; pods use imagePullPolicy: Never.
	@$(E2E_CLUSTER) load $(IMAGE_TAR)

.PHONY: e2e-cluster-status
e2e-cluster-status: e2e-cluster-tool ## Show the cluster's components and node.
	@$(E2E_CLUSTER) status

.PHONY: e2e-cluster-check
e2e-cluster-check: e2e-cluster-tool e2e-cluster-images ## Smoke-test the running cluster: a Deployment behind a Service, reached from the host and a pod; a pod reaching https://10.96.0.1.
	@$(E2E_CLUSTER) check

# `make e2e`: the manager's image twice (the second differs in its revision label, for the rolling
# upgrade) and the probe image (the pipeline Job of the hand-out test: the node has no curl image),
# imported into the cluster of `make e2e-cluster`, then hack/e2e's suite with the
# cluster's own kubectl (v1.36.3) and the chart's helm (hack/platform). The cluster is brought down
# afterwards, pass or fail, unless E2E_KEEP=1.
E2E_IMG ?= ghcr.io/sfops/salesforce-operator:e2e

.PHONY: e2e
e2e: e2e-cluster ## End-to-end suite in a real cluster: install (config/default, then the Helm chart), demo orgs Connected in-pod, webhooks, leader failover, securityContext, rolling upgrade, a pipeline Job on a SalesforceAccessToken.
	@mkdir -p $(E2E_BIN)
	$(MAKE) --no-print-directory image IMG=$(E2E_IMG)-a IMAGE_TAR=$(E2E_BIN)/operator-a.tar IMAGE_REVISION=e2e-a
	$(MAKE) --no-print-directory image IMG=$(E2E_IMG)-b IMAGE_TAR=$(E2E_BIN)/operator-b.tar IMAGE_REVISION=e2e-b
	@$(E2E_CLUSTER) load $(E2E_BIN)/operator-a.tar $(E2E_BIN)/operator-b.tar $(E2E_BIN)/probe.tar
	cd hack/platform && $(GO) build -o $(E2E_BIN)/helm helm.sh/helm/v4/cmd/helm
	@rc=0; PATH="$(KUBEBUILDER_ASSETS):$$PATH" E2E_KUBECONFIG=$(E2E_CLUSTER_DIR)/kubeconfig \
	  E2E_IMAGE=$(E2E_IMG)-a E2E_IMAGE_NEXT=$(E2E_IMG)-b E2E_HELM=$(E2E_BIN)/helm E2E_PROBE_IMAGE=localhost/e2e/probe:v1 \
	  $(GO) test -count=1 -v -timeout 30m ./hack/e2e $(TESTFLAGS) || rc=$$?; \
	  if [ -z "$(E2E_KEEP)" ]; then $(E2E_CLUSTER) down; fi; exit $$rc
