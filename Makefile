# buildkite_deployments_exporter — build, test and demo targets. `make help` lists them.
GO        ?= go
BINARY    ?= buildkite_deployments_exporter
PKG       := github.com/prometheus/common/version
VERSION   ?= $(shell cat VERSION 2>/dev/null || echo 0.0.0)
REVISION  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
BRANCH    ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -X $(PKG).Version=$(VERSION) -X $(PKG).Revision=$(REVISION) -X $(PKG).Branch=$(BRANCH) \
             -X $(PKG).BuildUser=$(shell whoami)@$(shell hostname) -X $(PKG).BuildDate=$(shell date -u +%Y%m%d-%H:%M:%S)
TOOL      := $(GO) tool -modfile=tools/go.mod
DOCKER    ?= docker
IMAGE     ?= buildkite_deployments_exporter
FUZZTIME  ?= 15s

.PHONY: all help build test unit lint rules-test deploy-test e2e demo run bench fuzz docker clean

all: build test

help: ## Show this help.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## Build the exporter binary with version information.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BINARY) .

test: lint unit rules-test deploy-test ## Lint, unit + end-to-end tests (race detector), rule tests: CI runs this, then make fuzz.

unit: ## Go tests with the race detector (includes the end-to-end alerting and dashboard tests).
	$(GO) test -race -timeout 30m ./...

lint: ## gofmt, go vet and staticcheck.
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(TOOL) staticcheck ./...

# deploy/ is a module of its own (Helm, Kubernetes and go-jsonnet stay out of the exporter's go.mod),
# so ./... of the root never reaches it: vet, staticcheck and test it here.
deploy-test: ## Helm chart, plain manifests, mixin: render, lint, strict decoding, promtool, go-jsonnet.
	$(GO) -C deploy vet ./...
	$(GO) build -modfile=tools/go.mod -o "$${TMPDIR:-/tmp}/bkde-staticcheck" honnef.co/go/tools/cmd/staticcheck
	cd deploy && "$${TMPDIR:-/tmp}/bkde-staticcheck" ./...
	$(GO) -C deploy test -timeout 10m ./...

rules-test: ## promtool check/test rules with Debian's promtool 2.42 and promtool 3.x; amtool check-config.
	./alerts/test.sh

demo: build ## Run the exporter against a built-in fake Buildkite organization (no token needed).
	./scripts/demo.sh

run: build ## Run against the real Buildkite API: BUILDKITE_API_TOKEN=… CATALOG=path/to/catalog make run
	./$(BINARY) --catalog.file="$${CATALOG:?set CATALOG to your catalog-info.yaml file or directory}" \
	  --storage.path=./data $(ARGS)

bench: ## Benchmarks: API economy, scrape cost, replay (see BENCHMARKS.md).
	./scripts/bench.sh

fuzz: ## Native Go fuzzing of every parser of outside input, FUZZTIME (default 15s) per target.
	FUZZTIME=$(FUZZTIME) ./scripts/fuzz.sh

docker: ## Build the container image with VERSION and the git revision as build arguments.
	$(DOCKER) build --build-arg VERSION=$(VERSION) --build-arg REVISION=$(REVISION) --build-arg BRANCH=$(BRANCH) \
	  -t $(IMAGE):$(VERSION) .

clean:
	rm -f $(BINARY)
