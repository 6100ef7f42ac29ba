# The end-to-end tests, as root: e2e/ against the built binary on namespace networks
# (internal/testnet) and on loopback, and the harness's own tests. `go test ./...` (make
# test) runs them all at their defaults; the targets here run one part alone, longer, or
# beside busy loops. Root, ip and nft (scripts/deps/netns.txt); the fping and fault tests
# need fping and a tmpfs mount. Every test skips without them, and fails when CI is set.
# Figures (detection times, probe jitter) are mk/bench.mk's.

OUTAGE       ?= 5m
SOAK         ?= 1h
SOAK_TIMEOUT ?= 90m
FAULT_TESTS  := ^TestFault
# The second pass of .ci/run: the fault tests and the soak (its 5-minute default).
LOADED_TESTS := ^(TestFault.*|TestSoak)$$
LOADED_TEST_BIN := bin/e2e.test

.PHONY: test-e2e test-faults test-fping test-failover-e2e soak test-clock test-loaded netns-clean

## test-e2e: every end-to-end test (e2e/, internal/testnet) and nothing else
test-e2e:
	$(GO) test -count=1 -timeout 30m ./internal/testnet/ ./e2e/

# The view's faults (restart, two views, flapping) and the remote_write faults (receiver
# down for OUTAGE, broken, spool disk full or read-only, kill during flush, the control).
## test-faults: the fault tests (TestFault*) alone; OUTAGE=5m keeps the receiver down that long
test-faults:
	$(GO) test -count=1 -timeout 30m -v -run '$(FAULT_TESTS)' ./e2e/ -args -outage=$(OUTAGE)

## test-fping: edgeprobe's RTTs against fping's (loopback and a veth pair)
test-fping:
	$(GO) test -count=1 -timeout 5m -run '^TestFping' -v ./e2e/

# Debian's named on a host of the namespace network, the view's [[actions.dns]] rewriting
# its records (e2e/failover_test.go); bind9 from scripts/deps/failover.txt.
## test-failover-e2e: the failover scenarios against BIND alone (about two minutes)
test-failover-e2e:
	$(GO) test -count=1 -timeout 15m -run '^TestFailover' -v ./e2e/

# 100 targets at 100 ms on three agents, one view, a site dark for 20 s every minute;
# prints goroutines, open files and RSS of every process at start and end, and the
# verdicts. `go test ./e2e/` runs it for 5 minutes.
## soak: TestSoak for SOAK (default 1h, within SOAK_TIMEOUT)
soak:
	$(GO) test -count=1 -timeout $(SOAK_TIMEOUT) -run '^TestSoak$$' -v ./e2e/ -args -soak $(SOAK)

# The machine's real clock stepped an hour forwards and backwards while agents and a view
# run (build tag clockjump), then put back. Every process on the machine sees the steps,
# so it runs alone: make test calls it after `go test ./...`, and the test fails if
# another Go test binary is running.
## test-clock: the wall-clock jump test, alone
test-clock:
	$(GO) test -tags clockjump -count=1 -timeout 5m -run '^TestClockJump$$' -v ./e2e/

# .ci/run's second pass: what must hold on a loaded machine must hold beside two CPU
# hogs too (two `while :` shell loops, one per core of the 2-core CI host, killed by their
# pids when the run ends, however it ends). The test binary is built first, so the hogs
# load the tests and not the compiler.
## test-loaded: TestFault* and TestSoak again beside two busy loops (after make test in CI)
test-loaded:
	$(GO) test -c -o $(LOADED_TEST_BIN) ./e2e/
	@set -e; pids=""; trap 'kill $$pids 2>/dev/null || true' EXIT INT TERM; \
	for i in 1 2; do sh -c 'while :; do :; done' & pids="$$pids $$!"; done; \
	echo "test-loaded: busy loops (pids$$pids) beside $(LOADED_TESTS)"; \
	cd e2e && ../$(LOADED_TEST_BIN) -test.count=1 -test.timeout 45m -test.v -test.run '$(LOADED_TESTS)' -outage=$(OUTAGE)

# A new run also sweeps the namespaces of dead processes; this removes those of runs
# still going too: use it after killed runs.
## netns-clean: remove every namespace the test harness created
netns-clean:
	ip netns list | grep -Eo '^ept[0-9a-z]{6}-[a-z0-9]+' | xargs -r -n1 ip netns delete
