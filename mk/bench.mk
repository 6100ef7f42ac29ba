# Every benchmark: detection times, probe timing under faults, footprint beside the
# peers, the Go micro-benchmarks, the view under load, the demo as a measurement. Each
# prints its figures for the record and asserts none of them (a wrong verdict, a missed
# probe or a crash still fails a run): timing bounds belong here, not in tests, because a
# loaded 2-core machine breaks them. Root for those on namespaces or raw ICMP; the peers'
# Debian packages from scripts/deps/*.txt (make deps).

TRIALS             ?= 10
TIMING_FOR         ?= 30s
BENCHTIME          ?= 1s
BENCH_PKGS         ?= ./agent/ ./probes/ ./exporters/ ./view/
FOOTPRINT_DURATION ?= 60s
FOOTPRINT_TARGETS  ?= 1000
FOOTPRINT_REPS     ?= 3
FOOTPRINT_CASES    ?= icmp-raw,icmp-datagram,mixed
VIEW_AGENTS        ?= 10000
VIEW_SITES         ?= 20
VIEW_DURATION      ?= 60s
VIEW_READ_EVERY    ?= 1s
DEMO_CYCLES        ?= 10
VIEW_ATTACK_DURATION ?= 10s
VIEW_ATTACK_BEFORE   ?=
VIEW_ATTACKS         ?=

.PHONY: bench-detect-agent bench-detect-guard bench-detect bench-faults bench-footprint bench-footprint-peers \
	bench-go bench-probes bench-prom bench-rules view-bench bench-view-load bench-demo \
	bench-failover bench-view-attacks

# Per trial it waits a random fraction of the 1 s interval, blackholes site a and times
# the agent's down line, heals and times up; then the web-only and uplink-cut cases.
## bench-detect-agent: agent-local detection at the 1 s interval, TRIALS trials per scenario (root)
bench-detect-agent:
	$(GO) test -tags bench -count=1 -timeout 30m -run '^TestBenchDetect$$' -v ./e2e/ -args -trials $(TRIALS)

# An agent with the lateness guard and one without (lateness_allowance = "0s") on the same
# blackholes, side by side (agent/README.md, "Lateness").
## bench-detect-guard: what the lateness guard costs in detection time, TRIALS trials (root)
bench-detect-guard:
	$(GO) test -tags bench -count=1 -timeout 30m -run '^TestBenchDetectGuard$$' -v ./e2e/ -args -trials $(TRIALS)

## bench-detect: detection at the view (three edges) against blackbox_exporter + Prometheus, TRIALS trials (root)
bench-detect:
	$(GO) test -tags bench -count=1 -timeout 30m -run '^TestBenchDetectView$$' -v ./e2e/ -args -trials $(TRIALS)

# The agent of the remote_write fault tests under each receiver condition for TIMING_FOR,
# one after the other: |spacing - interval| p50, p99 and max, beside a no-fault control.
## bench-faults: probe timing (jitter) under remote_write faults, TIMING_FOR per case
bench-faults:
	$(GO) test -tags bench -count=1 -timeout 30m -run '^TestBenchFaultTiming$$' -v ./e2e/ -args -timing-for $(TIMING_FOR)

# edgeprobe beside prometheus-smokeping-prober and blackbox_exporter + Prometheus
# (TestBenchFootprint, build tag bench), then the Go micro-benchmarks. About 33 minutes
# with the defaults (10 tool sets x 3 rounds x 70 s).
## bench-footprint: bench-footprint-peers, then bench-go
bench-footprint: bench-footprint-peers bench-go

## bench-footprint-peers: CPU and RSS of edgeprobe and its peers on FOOTPRINT_TARGETS targets (root)
bench-footprint-peers:
	$(GO) test -tags bench -count=1 -timeout 150m -run '^TestBenchFootprint$$' -v ./e2e/ \
		-args -duration $(FOOTPRINT_DURATION) -targets $(FOOTPRINT_TARGETS) -reps $(FOOTPRINT_REPS) -cases $(FOOTPRINT_CASES)

# bench-probes, bench-prom and view-bench below are selections of these.
## bench-go: every Go benchmark of BENCH_PKGS (agent, probes, exporters, view), with allocations
bench-go:
	$(GO) test -count=1 -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(BENCH_PKGS)

## bench-probes: the probes' benchmarks (ICMP raw and datagram on loopback, TCP connect), 2 s each (root)
bench-probes:
	$(GO) test -count=1 -run '^$$' -bench . -benchmem -benchtime 2s ./probes/

## bench-prom: encoding one remote_write push (10 sites x 5 targets) and its size
bench-prom:
	$(GO) test -count=1 -run '^$$' -bench EncodeSnapshot -benchmem ./exporters/

# The rules at 1 s on Prometheus and on VictoriaMetrics + vmalert, beside the view's lost,
# over 5 trials of the same pushes (Debian's prometheus and victoria-metrics; loopback).
## bench-rules: failure -> EdgeprobeSiteLost firing on Prometheus and VictoriaMetrics
bench-rules:
	$(GO) test -tags benchrules -count=1 -run '^TestRuleLatency$$' -v ./packaging/prometheus/

# Then the push p99 while readers list 200,000 sites, and the heap per target the view
# keeps at 10,000 agents x 20 sites x 2 targets (once: it builds them all).
## view-bench: decoding one 20-site push, applying it to 1000 and 10,000 agents, both, reads beside pushes, heap per target, the collector's cost at 10,000 agents
view-bench:
	$(GO) test -count=1 -run '^$$' -bench 'BenchmarkDecodePush|BenchmarkApplyPush|BenchmarkPush|BenchmarkApplyDuringReads' -benchmem -benchtime 2s ./view/
	$(GO) test -count=1 -run '^$$' -bench 'BenchmarkTargetMemory' -benchtime 1x ./view/
	$(GO) test -count=1 -run '^$$' -bench 'BenchmarkApplyAtLoad' -benchmem -benchtime 200000x ./view/
	$(GO) test -count=1 -run '^$$' -bench 'BenchmarkMarkLiveHeap' -benchtime 9x ./view/

# VIEW_AGENTS agents x VIEW_SITES sites pushing every second for VIEW_DURATION to an
# `edgeprobe view` started as its own process on loopback, while readers fetch the sites
# API, the page and /metrics every VIEW_READ_EVERY; prints the view's CPU and RSS,
# pushes/s, errors, push -> event latency and the readers' latency. VIEW_LOAD_ARGS adds
# flags of internal/viewload/cmd/viewload (e.g. --cpuprofile out/view-load.pprof).
## bench-view-load: the view's CPU, RSS, pushes/s and verdict latency under VIEW_AGENTS agents
bench-view-load:
	mkdir -p out
	$(GO) build -o out/edgeprobe ./cmd/edgeprobe
	$(GO) build -o out/viewload ./internal/viewload/cmd/viewload
	out/viewload --view out/edgeprobe --agents $(VIEW_AGENTS) --sites $(VIEW_SITES) --duration $(VIEW_DURATION) \
		--read-every $(VIEW_READ_EVERY) $(VIEW_LOAD_ARGS)

# The hostile clients of internal/viewattack (view/README.md, "Hostile input"), each for
# VIEW_ATTACK_DURATION against a fresh `edgeprobe view` of this tree on loopback while
# honest agents push: the view's peak RSS, the honest pushes' latency, forged and stuck
# verdicts. VIEW_ATTACK_BEFORE=REV attacks a view built from that commit first, for the
# before/after table; VIEW_ATTACKS picks attacks.
## bench-view-attacks: the view under hostile clients, RSS and honest push latency (VIEW_ATTACK_BEFORE=REV to compare)
bench-view-attacks:
	mkdir -p out
	$(GO) build -o out/edgeprobe ./cmd/edgeprobe
	$(GO) build -o out/viewattack ./internal/viewattack/cmd/viewattack
	@if [ -n "$(VIEW_ATTACK_BEFORE)" ]; then \
	  dir=$$(mktemp -d) && git archive $(VIEW_ATTACK_BEFORE) | tar -x -C $$dir && \
	  (cd $$dir && CGO_ENABLED=0 $(GO) build -o $(CURDIR)/out/edgeprobe-before ./cmd/edgeprobe) && rm -rf $$dir; fi
	out/viewattack --view out/edgeprobe --duration $(VIEW_ATTACK_DURATION) \
	  $(if $(VIEW_ATTACK_BEFORE),--before out/edgeprobe-before) $(if $(VIEW_ATTACKS),--attacks $(VIEW_ATTACKS))

# DEMO_CYCLES blackholes of the loopback site beta at random moments of the 1 s interval,
# then medians and maxima of blackhole -> down at the agent, -> lost at the view, -> the
# demo DNS server answering the failover address, and heal -> up -> failback. Loopback
# only, so TCP handshakes still complete (bench-detect-agent measures the real blackhole
# as root).
## bench-demo: the demo as a measurement, DEMO_CYCLES cycles, no root
bench-demo: build
	$(BIN) demo --cycles $(DEMO_CYCLES)

# Blackhole -> Debian's named answering the failover records (asked every 10 ms) over
# TRIALS trials, lost_for 0 and 1s in the same run; counts the updates sent outside a
# loss and the changes two views applied twice, and prints the run's load average (root,
# bind9 from scripts/deps/failover.txt).
## bench-failover: blackhole -> DNS failover answer at named, TRIALS trials (root)
bench-failover:
	$(GO) test -tags bench -count=1 -timeout 30m -run '^TestBenchFailover$$' -v ./e2e/ -args -trials $(TRIALS)
