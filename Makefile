# nymvpn — the two commands of the README are `make demo` and `make test`.
SHELL := /bin/bash
export PATH := $(PATH):/usr/local/go/bin
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/nymvpn/nymvpn/version.Version=$(VERSION)
BINARIES := nymvpn nymvpnd nym-node nym-localnet nymvpn-app
# What must also build for the other desktop systems (routes and DNS are Linux-only for now).
CROSS_PKGS := ./daemon/... ./platform/... ./cli/... ./cmd/nymvpn ./cmd/nymvpnd
# The app (Gio, cgo on Linux and macOS) builds for Windows without cgo; macOS: docs/app.md.
APP_CROSS_PKGS := ./app/... ./cmd/nymvpn-app
FUZZTIME ?= 10s

.PHONY: all build demo test test-short deps vet fmt fuzz bench clean packages

all: build

deps:
	@scripts/deps.sh

build:
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/ $(addprefix ./cmd/,$(BINARIES))

# Installers in dist/: .deb and .rpm (linux/amd64, arm64), .msi (windows/amd64),
# the darwin binaries (a .pkg on a macOS host); docs/packaging.md.
packages: deps
	@VERSION='$(VERSION)' scripts/packages.sh

# The product's main job on the local network: a web request through two
# nested WireGuard tunnels, client → entry → exit → server.
demo: deps build
	@scripts/demo.sh

# Everything CI runs. As root it includes the network-namespace tests.
test: deps vet build
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) test -count=1 -timeout 20m ./...
	@scripts/demo.sh >/dev/null && echo "demo: ok"

test-short: vet
	$(GO) test -short -count=1 ./...

vet:
	$(GO) vet ./...
	GOOS=darwin $(GO) vet $(CROSS_PKGS)
	GOOS=windows $(GO) vet $(CROSS_PKGS) $(APP_CROSS_PKGS)

fmt:
	gofmt -w $$(git ls-files '*.go')

# Runs every fuzz target briefly on top of its committed seed corpus.
fuzz:
	@scripts/fuzz.sh $(FUZZTIME)

bench:
	$(GO) test -run '^$$' -bench . -benchtime 2s ./...

clean:
	rm -rf bin dist
