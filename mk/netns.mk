# Namespace test network (internal/testnet) and the detection benchmarks (agent, view). Root only.

TRIALS ?= 10

.PHONY: test-e2e bench-detect-agent bench-detect-guard bench-detect netns-clean

# test-e2e runs the namespace harness and the end-to-end agent scenarios alone.
test-e2e:
	$(GO) test -count=1 -timeout 10m ./internal/testnet/ ./e2e/

# bench-detect-agent measures agent-local detection at the default 1 s interval over
# $(TRIALS) trials per scenario and prints the table (issue 2's "Numbers to reach").
bench-detect-agent:
	$(GO) test -tags bench -count=1 -timeout 30m -run '^TestBenchDetect$$' -v ./e2e/ -args -trials $(TRIALS)

# bench-detect-guard measures what the lateness guard costs in detection time: an agent
# with it and one without, side by side on the same blackholes (agent/README.md, "Lateness").
bench-detect-guard:
	$(GO) test -tags bench -count=1 -timeout 30m -run '^TestBenchDetectGuard$$' -v ./e2e/ -args -trials $(TRIALS)

# bench-detect measures detection at the view (three edges, two sites) against
# prometheus-blackbox-exporter + Prometheus at 1 s in the same run, over $(TRIALS) trials
# per scenario, and prints the table (issue 3, item 5).
bench-detect:
	$(GO) test -tags bench -count=1 -timeout 30m -run '^TestBenchDetectView$$' -v ./e2e/ -args -trials $(TRIALS)

# netns-clean removes every namespace the harness created, including those of runs still
# going: use it after killed runs (a new run also sweeps those of dead processes).
netns-clean:
	ip netns list | grep -Eo '^ept[0-9a-z]{6}-[a-z0-9]+' | xargs -r -n1 ip netns delete
