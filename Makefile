# edgeprobe build. `make demo` and `make test` are the README's two commands.
# Further targets live in mk/*.mk, one file per area (packaging, benchmarks, ...).

GO       ?= go
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT_EPOCH := $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
LDFLAGS  := -s -w -X main.version=$(VERSION)
GOBUILD  := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
BIN      := bin/edgeprobe

.PHONY: all build deps test demo cross vet clean
all: build

build:
	$(GOBUILD) -o $(BIN) ./cmd/edgeprobe

# deps installs the Debian packages the tests and benchmarks use (listed in scripts/deps/*.txt).
deps:
	scripts/install-deps.sh

# test is the README's second command: installs what the tests use, then runs every test,
# fuzzes each fuzz target briefly (mk/fuzz.mk), and last, alone because it steps the
# machine's clock, the wall-clock jump test (mk/soak.mk).
test: deps build
	$(MAKE) vet
	$(BIN) check --config agent.toml.example >/dev/null
	$(GO) test -count=1 -timeout 30m ./...
	$(MAKE) --no-print-directory fuzz-short
	$(MAKE) --no-print-directory test-clock

# demo is the README's first command: a self-contained scenario on loopback.
demo: build
	$(BIN) demo

cross:
	GOOS=linux GOARCH=amd64 $(GOBUILD) -o bin/edgeprobe-linux-amd64 ./cmd/edgeprobe
	GOOS=linux GOARCH=arm64 $(GOBUILD) -o bin/edgeprobe-linux-arm64 ./cmd/edgeprobe
	GOOS=linux GOARCH=arm GOARM=7 $(GOBUILD) -o bin/edgeprobe-linux-armv7 ./cmd/edgeprobe
	GOOS=linux GOARCH=arm GOARM=6 $(GOBUILD) -o bin/edgeprobe-linux-armv6 ./cmd/edgeprobe

vet:
	test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...

clean:
	rm -rf bin dist

-include mk/*.mk
