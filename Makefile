# shoal: the targets are the contract (see README.md).
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(HOME)/go/bin:$(PATH)
export GOFLAGS := -buildvcs=false
BIN := bin/shoal
# Packages whose concurrency matters run again under the race detector.
RACE_PKGS := ./raftstore/... ./scheduler/... ./manager/... ./worker/... ./containerd/logs/... ./containerd/shim/... ./daemon/... ./overlaynet/encrypt/... ./cli/apiclient/...
APT_TEST := busybox-static iproute2 iptables nftables python3-docker tmux docker-registry apache2-utils skopeo tcpdump
APT_BENCH := crun runc iperf3

.PHONY: all build deps bench-deps test unit race e2e oci-validation registry-conformance bench chaos demo fuzz lint generate check clean

all: build

# Install what is missing: Debian packages through apt-get, Go modules through the proxy.
deps:
	@command -v go >/dev/null || { echo "Go is required (/usr/local/go/bin)"; exit 1; }
	@missing=""; for p in $(APT_TEST); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi
	@go mod download

bench-deps: deps
	@missing=""; for p in $(APT_BENCH); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then echo "installing:$$missing"; apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; fi

# Static (no cgo): the binary also runs as every container's init, from a
# sealed copy (containerd/runtime/seal.go), and must need no host library.
# Without DWARF and the symbol table (tracebacks keep their names): a third
# less to copy into the seal and to page in at every start.
# The shim and container init are a small binary of their own, built first
# and embedded (containerd/shimbin): every container start executes them.
# The engine (daemon) and the client are two programs too, in one file: the
# client, which every CLI command starts, embeds the engine (cmd/shoal).
SHIMBIN := containerd/shimbin/bin/shoal-shim
ENGINEBIN := cmd/shoal/bin/shoal-engine
# The commit built, for `version` (empty outside a git checkout).
BUILDINFO := -X github.com/shoal-project/shoal/daemon.GitCommit=$(shell git rev-parse --short=7 HEAD 2>/dev/null) \
	-X github.com/shoal-project/shoal/daemon.BuildTime=$(shell git log -1 --format=%cI 2>/dev/null)
build: deps
	CGO_ENABLED=0 go build -ldflags "-s -w" -o $(SHIMBIN) ./cmd/shoal-shim
	CGO_ENABLED=0 go build -ldflags "-s -w $(BUILDINFO)" -o $(ENGINEBIN) ./cmd/shoal
	CGO_ENABLED=0 go build -ldflags "-s -w" -tags shoalclient -o $(BIN) ./cmd/shoal

# Every test: vet, OCI validation, the registry conformance suite, unit tests, race tests,
# end-to-end tests on the built binary.
test: build
	go vet ./...
	go vet -tags shoalclient ./cmd/shoal
	$(MAKE) --no-print-directory oci-validation registry-conformance unit race e2e

unit:
	go test -count=1 -p 2 $$(go list ./... | grep -v '/tests')

race:
	go test -race -count=1 -p 1 $(RACE_PKGS)

e2e:
	SHOAL_BIN=$(CURDIR)/$(BIN) go test -count=1 -p 1 -timeout 40m ./tests/...

oci-validation:
	bash tests/oci-validation/run.sh $(CURDIR)/$(BIN)

# The OCI distribution-spec conformance suite against the cluster registry's
# handler (seconds): v1.1.1 when the module proxy serves it, else the later
# commit it serves (the script says which ran); CONFORMANCE_TEST=PATH runs an
# already built conformance.test.
registry-conformance:
	bash tests/registry-conformance/run.sh

# Figures beside their anchors, measured in the same run. Never fails on speed.
bench: build bench-deps
	bash bench/run.sh $(CURDIR)/$(BIN)

# The chaos test for longer than in `make test` (SHOAL_CHAOS_MINUTES, 10 by
# default): load, kill -9, partitions, a full disk; prints its counts.
SHOAL_CHAOS_MINUTES ?= 10
chaos: build
	SHOAL_CHAOS_MINUTES=$(SHOAL_CHAOS_MINUTES) SHOAL_BIN=$(CURDIR)/$(BIN) go test -count=1 -p 1 -timeout 3h -v -run '^TestClusterChaos$$' ./tests/

# The main job with embedded defaults: a daemon, a busybox image, containers.
demo: build
	bash tests/demo.sh $(CURDIR)/$(BIN)

fuzz:
	go test -run '^$$' -fuzz FuzzApply -fuzztime 30s ./containerd/archive/
	go test -run '^$$' -fuzz FuzzParseReference -fuzztime 30s ./containerd/images/
	go test -run '^$$' -fuzz FuzzParseToken -fuzztime 30s ./manager/ca/
	go test -run '^$$' -fuzz FuzzParseChanges -fuzztime 30s ./daemon/
	go test -run '^$$' -fuzz FuzzParseFilters -fuzztime 30s ./daemon/
	go test -run '^$$' -fuzz FuzzCreateRequest -fuzztime 30s ./daemon/
	go test -run '^$$' -fuzz FuzzParseConstraint -fuzztime 30s ./scheduler/
	go test -run '^$$' -fuzz FuzzParseManifest -fuzztime 30s ./manager/registry/
	go test -run '^$$' -fuzz FuzzDockerfile -fuzztime 30s ./containerd/build/

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	go vet ./...
	@if [ -f $(ENGINEBIN) ]; then go vet -tags shoalclient ./cmd/shoal; else echo "lint: the client build of cmd/shoal (tag shoalclient) needs make build first; not vetted"; fi

generate:
	bash api/gen.sh

# Regenerating the protobuf code must change nothing.
check: lint
	bash api/gen.sh && git diff --exit-code -- api/

clean:
	rm -rf bin $(SHIMBIN) $(ENGINEBIN)
