# The central view: fuzz its push decoder, keep the live page's screenshot, benchmark it.
.PHONY: view-fuzz view-page view-bench bench-view-load
VIEW_FUZZTIME ?= 30s

view-fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeWrite -fuzztime $(VIEW_FUZZTIME) ./view/
	$(GO) test -run '^$$' -fuzz FuzzPush -fuzztime $(VIEW_FUZZTIME) ./view/

# view-page saves the page's screenshots under out/view (needs chromium).
view-page:
	mkdir -p out/view
	$(GO) test -count=1 -run TestLivePage -v -artifacts -outputdir $(CURDIR)/out/view ./view/

# view-bench: decode of one 20-site push (in place and the former decoder side by side),
# applying it to an engine of 1000 agents, and both together; then the heap per target
# the view keeps at 10,000 agents x 20 sites x 2 targets (once: it builds them all).
view-bench:
	$(GO) test -run '^$$' -bench 'BenchmarkDecodePush|BenchmarkApplyPush|BenchmarkPush' -benchtime 2s ./view/
	$(GO) test -run '^$$' -bench 'BenchmarkTargetMemory' -benchtime 1x ./view/

# bench-view-load: VIEW_AGENTS agents x VIEW_SITES sites pushing every second for
# VIEW_DURATION to an `edgeprobe view` started as its own process on loopback; prints the
# view's CPU and RSS, pushes/s, errors, verdict latency and the latency of reads of the
# sites API, the page and /metrics every VIEW_READ_EVERY beside the pushes. VIEW_LOAD_ARGS adds flags of
# internal/viewload/cmd/viewload (e.g. --cpuprofile out/view-load.pprof).
VIEW_AGENTS   ?= 10000
VIEW_SITES    ?= 20
VIEW_DURATION ?= 60s
VIEW_READ_EVERY ?= 1s
bench-view-load:
	mkdir -p out
	$(GO) build -o out/edgeprobe ./cmd/edgeprobe
	$(GO) build -o out/viewload ./internal/viewload/cmd/viewload
	out/viewload --view out/edgeprobe --agents $(VIEW_AGENTS) --sites $(VIEW_SITES) --duration $(VIEW_DURATION) \
		--read-every $(VIEW_READ_EVERY) $(VIEW_LOAD_ARGS)
