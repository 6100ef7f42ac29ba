# edgeprobe build. `make demo` and `make test` are the README's two commands; `make check`
# is the quick gate before a commit; `make help` lists every target.
#
# This file holds building, vetting and the test entry points. Further targets live in
# mk/*.mk, one file per area, each saying at its top what it owns:
#   mk/e2e.mk        the end-to-end tests as root (namespaces, faults, soak, clock steps)
#   mk/bench.mk      every benchmark: figures are printed, never asserted
#   mk/fuzz.mk       fuzzing
#   mk/packaging.mk  deb and rpm packages and their tests
#   mk/prom.mk       the Prometheus rules and the remote_write protobuf
#   mk/view.mk       the view's page screenshot
# A target is documented by a "## name: what it does" line above it (make help reads them).

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT_EPOCH := $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
LDFLAGS  := -s -w -X main.version=$(VERSION)
GOBUILD  := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
BIN      := bin/edgeprobe

# The unit tests: every package but the end-to-end tests (e2e/ and the namespace harness,
# mk/e2e.mk), the package builds and the rules against the Prometheus stack (packaging/,
# mk/packaging.mk and mk/prom.mk).
CHECK_PKGS = $(shell $(GO) list ./... | grep -v -e '/e2e$$' -e '/internal/testnet$$' -e '/packaging')

.PHONY: all build deps vet check test check-examples demo cross clean help
## all: the same as build
all: build

## build: bin/edgeprobe, static (CGO_ENABLED=0), stripped, version stamped
build:
	$(GOBUILD) -o $(BIN) ./cmd/edgeprobe

## deps: install the Debian packages the tests and benchmarks use (scripts/deps/*.txt)
deps:
	scripts/install-deps.sh

## vet: gofmt check, go vet, and go vet as for macOS (Linux-only code carries build tags)
vet:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	GOOS=darwin $(GO) vet ./...

## check: the quick gate before a commit (about a minute): vet and the unit tests; no apt, no e2e, no packages, no Prometheus stack, no fuzzing
check: vet
	$(GO) test -count=1 -timeout 10m $(CHECK_PKGS)

## test: everything: deps, build, vet, the example configs, go test ./..., fuzz-short, then test-clock alone
test: deps build
	$(MAKE) --no-print-directory vet
	$(MAKE) --no-print-directory check-examples
	$(GO) test -count=1 -timeout 30m ./...
	$(MAKE) --no-print-directory fuzz-short
	$(MAKE) --no-print-directory test-clock

# Every config we ship, the examples and the ones the packages install, must pass
# `edgeprobe check`; another one is one more line here.
## check-examples: bin/edgeprobe check on the example configs and the packaged ones
check-examples: build
	$(BIN) check --quiet --config agent.toml.example
	$(BIN) check --quiet --view-config view.toml.example
	$(BIN) check --quiet --config packaging/agent.toml
	$(BIN) check --quiet --view-config packaging/view.toml

## demo: the README's first command: a site goes dark and comes back, on loopback, no root
demo: build
	$(BIN) demo

## cross: bin/edgeprobe-linux-{amd64,arm64,armv7,armv6}
cross:
	GOOS=linux GOARCH=amd64 $(GOBUILD) -o bin/edgeprobe-linux-amd64 ./cmd/edgeprobe
	GOOS=linux GOARCH=arm64 $(GOBUILD) -o bin/edgeprobe-linux-arm64 ./cmd/edgeprobe
	GOOS=linux GOARCH=arm GOARM=7 $(GOBUILD) -o bin/edgeprobe-linux-armv7 ./cmd/edgeprobe
	GOOS=linux GOARCH=arm GOARM=6 $(GOBUILD) -o bin/edgeprobe-linux-armv6 ./cmd/edgeprobe

## clean: remove bin/ and dist/
clean:
	rm -rf bin dist

# help prints the "## name: text" lines of this file and mk/*.mk, by file, and names any
# target that has none.
## help: this list
help:
	@awk ' \
	  FNR == 1 { if (NR > 1) print ""; print FILENAME ":" } \
	  /^## [^:]+:/ { name = substr($$0, 4, index($$0, ":") - 4); doc[name] = 1; \
	    printf "  %-22s %s\n", name, substr($$0, index($$0, ":") + 2) } \
	  /^[a-z][a-z0-9_-]*( [a-z][a-z0-9_-]*)*:([^=]|$$)/ { split(substr($$0, 1, index($$0, ":") - 1), ts, " "); \
	    for (i in ts) defined[ts[i]] = FILENAME } \
	  END { for (t in defined) if (!(t in doc)) missing = missing " " t " (" defined[t] ")"; \
	    if (missing != "") { print "\nundocumented targets:" missing; exit 1 } }' \
	  $(filter-out %.d,$(MAKEFILE_LIST))

-include mk/*.mk
