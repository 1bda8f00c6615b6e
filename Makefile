# stead: one binary. `make` builds it; `make test` runs every test, as CI does.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
KUBE_VERSION := v1.37.2
STEAD_VERSION ?= $(KUBE_VERSION)-stead.0
VERSION_PKG := k8s.io/component-base/version
LDFLAGS := -s -w \
	-X $(VERSION_PKG).gitVersion=$(STEAD_VERSION) \
	-X $(VERSION_PKG).gitMajor=1 \
	-X $(VERSION_PKG).gitMinor=37 \
	-X $(VERSION_PKG).gitTreeState=clean \
	-X $(VERSION_PKG).buildDate=1970-01-01T00:00:00Z

BIN := bin/stead

# kubectl's kustomize imports Go's plugin package for Go-plugin transformers,
# which kubectl never enables; linking it makes the linker export every symbol
# (36 MB of dynamic symbol table) and keep methods it would otherwise drop.
TAGS := kustomize_disable_go_plugin_support

TESTIMAGES := bin/testimages

.PHONY: all build test unit e2e bench clean testimages
all: build

build:
	$(GO) build -trimpath -tags '$(TAGS)' -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/stead

# Unit tests for every package, then the end-to-end tests against the binary.
test: build unit e2e

unit: testimages
	STEAD_TESTIMAGES=$(CURDIR)/$(TESTIMAGES) $(GO) test -count=1 ./pkg/... ./cmd/... ./hack/...

# Real images (busybox:1.28.4, nginx:1.9.1) built offline from Debian's packages.
testimages:
	GO=$(GO) $(GO) run ./hack/testimages -out $(TESTIMAGES)

e2e: build testimages
	STEAD_BIN=$(CURDIR)/$(BIN) STEAD_TESTIMAGES=$(CURDIR)/$(TESTIMAGES) $(GO) test -count=1 -timeout 20m -v ./test/e2e/...

# Benchmarks print tables; docs/benchmarks.md has the figures measured here.
bench: build testimages
	$(GO) run ./bench/startup -stead $(CURDIR)/$(BIN)
	$(GO) run ./bench/dns -stead $(CURDIR)/$(BIN)
	$(GO) run ./bench/statefulset -stead $(CURDIR)/$(BIN)
	$(GO) run ./bench/seed -stead $(CURDIR)/$(BIN) -images $(CURDIR)/$(TESTIMAGES)
	$(GO) run ./bench/seed -agent -pods 100 -runs 1 -stead $(CURDIR)/$(BIN) -images $(CURDIR)/$(TESTIMAGES)

clean:
	rm -rf bin
