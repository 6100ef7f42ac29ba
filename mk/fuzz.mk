# Fuzzing: the decoders of bad input (DNS replies, HTTP bodies, configs, pushes). `make fuzz` runs each target for FUZZTIME (default 1m),
# `make fuzz-short` for FUZZSHORTTIME (default 12s, for CI); both end with a table of
# executions per target and fail when any target fails. A failing input is written by
# go test to <package>/testdata/fuzz/<target>/ and replayed by every later `go test`.
# go test -fuzz accepts one package and one target per run, so the targets run in turn.
# Pick targets with FUZZ_TARGETS="./probes:FuzzDNSReply ./config:FuzzParse".

FUZZTIME      ?= 1m
FUZZSHORTTIME ?= 12s
# go test minimizes each newly interesting input for up to 60 s by default, which stalls a
# short run on a large seed (a 40-record DNS reply): a bounded count keeps the time on
# fuzzing. Failing inputs are minimized under the same bound.
FUZZMINIMIZE  ?= 500x
FUZZ_TARGETS  ?= ./probes:FuzzDNSReply ./probes:FuzzHTTPBody ./config:FuzzParse ./view:FuzzDecodeWrite ./view:FuzzDecodeShape ./view:FuzzPush \
                 ./view:FuzzSnappyStrict ./view:FuzzHostAllowed ./view:FuzzSilence ./view:FuzzSiteViewJSON ./internal/tomlconf:FuzzWebConfigFiles \
                 ./failover:FuzzKeyFile

VIEW_FUZZTIME ?= 30s

.PHONY: fuzz fuzz-short fuzz-run view-fuzz

## fuzz: every fuzz target (FUZZ_TARGETS) for FUZZTIME each, then a table of executions
fuzz:
	@$(MAKE) --no-print-directory fuzz-run FUZZRUNTIME=$(FUZZTIME)

## fuzz-short: every fuzz target for FUZZSHORTTIME each (make test runs it)
fuzz-short:
	@$(MAKE) --no-print-directory fuzz-run FUZZRUNTIME=$(FUZZSHORTTIME)

## view-fuzz: the view's push decoder and Host check targets only, VIEW_FUZZTIME each
view-fuzz:
	@$(MAKE) --no-print-directory fuzz-run FUZZRUNTIME=$(VIEW_FUZZTIME) FUZZ_TARGETS="./view:FuzzDecodeWrite ./view:FuzzDecodeShape ./view:FuzzPush ./view:FuzzSnappyStrict ./view:FuzzHostAllowed"

# fuzz-run parses go test's last "fuzz: elapsed: 12s, execs: 123456 (10288/sec), ..." line
# of each target. A target that fails with nothing but "context deadline exceeded" and
# writes no failing input hit a race of Go's fuzzing coordinator at its -fuzztime
# deadline on a busy machine (golang/go#75804, fixed in Go 1.27): it runs once more, and
# fails the run if it fails again. Any failing input fails at once.
## fuzz-run: FUZZ_TARGETS for FUZZRUNTIME each (what fuzz and fuzz-short call)
fuzz-run:
	@dir=$$(mktemp -d); status=0; \
	for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; name=$${t##*:}; \
	  echo "fuzz: $$name in $$pkg for $(FUZZRUNTIME)"; \
	  res=FAIL; for try in 1 2; do \
	    if $(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZRUNTIME) \
	        -fuzzminimizetime $(FUZZMINIMIZE) $$pkg >$$dir/log 2>&1; then res=ok; break; fi; \
	    grep -q 'Failing input written' $$dir/log && break; \
	    grep -q '^    context deadline exceeded$$' $$dir/log && [ $$try = 1 ] || break; \
	    echo "fuzz: $$name: go's fuzzing coordinator lost the race with its own -fuzztime deadline (no failing input; golang/go#75804); once more"; \
	  done; \
	  if [ $$res = FAIL ]; then status=1; tail -n 40 $$dir/log; fi; \
	  awk -v pkg="$$pkg" -v name="$$name" -v res="$$res" ' \
	    /^fuzz: elapsed: .*execs: / { line = $$0 } \
	    END { elapsed = "-"; execs = 0; \
	      if (match(line, /elapsed: [0-9a-z.]+/)) elapsed = substr(line, RSTART + 9, RLENGTH - 9); \
	      if (match(line, /execs: [0-9]+/)) execs = substr(line, RSTART + 7, RLENGTH - 7); \
	      printf "%-10s %-16s %8s %12d %8s\n", pkg, name, elapsed, execs, res }' \
	    $$dir/log >>$$dir/table; \
	done; \
	echo; printf '%-10s %-16s %8s %12s %8s\n' package target elapsed execs result; \
	cat $$dir/table; rm -rf $$dir; exit $$status
