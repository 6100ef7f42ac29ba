# Footprint at scale (issue 5): edgeprobe beside its peers, and the hot paths' Go benchmarks.
# Root and Debian's prometheus-smokeping-prober, prometheus-blackbox-exporter and prometheus
# (scripts/deps/footprint.txt, `make deps`).

FOOTPRINT_DURATION ?= 60s
FOOTPRINT_TARGETS  ?= 1000
FOOTPRINT_REPS     ?= 3
FOOTPRINT_CASES    ?= icmp-raw,icmp-datagram,mixed

.PHONY: bench-footprint bench-footprint-peers bench-footprint-go test-fping

# bench-footprint: the side-by-side run (TestBenchFootprint in e2e/footprint_test.go, build
# tag bench; it builds the edgeprobe binary from the tree), then every Go benchmark of the
# hot-path packages with allocations. About 33 minutes with the defaults (10 tool sets x
# 3 rounds x 70 s).
bench-footprint: bench-footprint-peers bench-footprint-go

bench-footprint-peers:
	$(GO) test -tags bench -count=1 -timeout 150m -run '^TestBenchFootprint$$' -v ./e2e/ \
		-args -duration $(FOOTPRINT_DURATION) -targets $(FOOTPRINT_TARGETS) -reps $(FOOTPRINT_REPS) -cases $(FOOTPRINT_CASES)

bench-footprint-go:
	$(GO) test -count=1 -run '^$$' -bench . -benchmem ./agent/ ./probes/ ./exporters/ ./view/

# test-fping: edgeprobe's RTTs against fping's on the same targets (loopback and a veth
# pair between namespaces); part of `make test` too.
test-fping:
	$(GO) test -count=1 -timeout 5m -run '^TestFping' -v ./e2e/
