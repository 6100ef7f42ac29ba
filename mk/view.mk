# The central view: fuzz its push decoder, keep the live page's screenshot, benchmark it.
.PHONY: view-fuzz view-page view-bench bench-view-load bench-view-attacks
VIEW_FUZZTIME ?= 30s

view-fuzz:
	$(GO) test -run '^$$' -fuzz FuzzDecodeWrite -fuzztime $(VIEW_FUZZTIME) ./view/
	$(GO) test -run '^$$' -fuzz FuzzPush -fuzztime $(VIEW_FUZZTIME) ./view/
	$(GO) test -run '^$$' -fuzz FuzzSnappyStrict -fuzztime $(VIEW_FUZZTIME) ./view/
	$(GO) test -run '^$$' -fuzz FuzzHostAllowed -fuzztime $(VIEW_FUZZTIME) ./view/

# view-page saves the board's screenshot under out/view (needs chromium).
view-page:
	mkdir -p out/view
	$(GO) test -count=1 -run TestLivePage -v -artifacts -outputdir $(CURDIR)/out/view ./view/

# view-bench: decode of one 20-site push (in place and the former decoder side by side),
# applying it to an engine of 1000 agents, and both together.
view-bench:
	$(GO) test -run '^$$' -bench 'BenchmarkDecodePush|BenchmarkApplyPush|BenchmarkPush' -benchtime 2s ./view/

# bench-view-load: VIEW_AGENTS agents x VIEW_SITES sites pushing every second for
# VIEW_DURATION to an `edgeprobe view` started as its own process on loopback; prints the
# view's CPU and RSS, pushes/s, errors and verdict latency. VIEW_LOAD_ARGS adds flags of
# internal/viewload/cmd/viewload (e.g. --cpuprofile out/view-load.pprof).
VIEW_AGENTS   ?= 1000
VIEW_SITES    ?= 20
VIEW_DURATION ?= 60s
bench-view-load:
	mkdir -p out
	$(GO) build -o out/edgeprobe ./cmd/edgeprobe
	$(GO) build -o out/viewload ./internal/viewload/cmd/viewload
	out/viewload --view out/edgeprobe --agents $(VIEW_AGENTS) --sites $(VIEW_SITES) --duration $(VIEW_DURATION) $(VIEW_LOAD_ARGS)

# bench-view-attacks: the hostile clients of internal/viewattack (view/README.md, "Hostile
# input"), each for VIEW_ATTACK_DURATION against a fresh `edgeprobe view` of this tree on
# loopback while honest agents push; prints the view's peak RSS, the honest pushes'
# latency, forged and stuck verdicts. VIEW_ATTACK_BEFORE=REV (a commit) attacks a view
# built from that commit first, for the before/after table; VIEW_ATTACKS picks attacks.
VIEW_ATTACK_DURATION ?= 10s
VIEW_ATTACK_BEFORE   ?=
VIEW_ATTACKS         ?=
bench-view-attacks:
	mkdir -p out
	$(GO) build -o out/edgeprobe ./cmd/edgeprobe
	$(GO) build -o out/viewattack ./internal/viewattack/cmd/viewattack
	@if [ -n "$(VIEW_ATTACK_BEFORE)" ]; then \
	  dir=$$(mktemp -d) && git archive $(VIEW_ATTACK_BEFORE) | tar -x -C $$dir && \
	  (cd $$dir && CGO_ENABLED=0 $(GO) build -o $(CURDIR)/out/edgeprobe-before ./cmd/edgeprobe) && rm -rf $$dir; fi
	out/viewattack --view out/edgeprobe --duration $(VIEW_ATTACK_DURATION) \
	  $(if $(VIEW_ATTACK_BEFORE),--before out/edgeprobe-before) $(if $(VIEW_ATTACKS),--attacks $(VIEW_ATTACKS))
