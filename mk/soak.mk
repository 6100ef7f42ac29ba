# Issue 6: the one-hour soak, and the wall-clock jump test. Root only (namespace network).

SOAK ?= 1h
SOAK_TIMEOUT ?= 90m

.PHONY: soak test-clock

# soak runs TestSoak for $(SOAK) (default one hour, within $(SOAK_TIMEOUT); `go test ./e2e/`
# runs it for 5 minutes):
# 100 targets at 100 ms on three agents, one view, a site dark for 20 s every minute. Prints
# goroutines, open files and RSS of every process at start and end, and the verdicts.
soak:
	$(GO) test -count=1 -timeout $(SOAK_TIMEOUT) -run '^TestSoak$$' -v ./e2e/ -args -soak $(SOAK)

# test-clock steps the machine's real clock an hour forwards and backwards while agents and a
# view run (build tag clockjump), and puts it back. Every process on the machine sees the
# steps, so it must run alone: `make test` calls it after `go test ./...`, and the test
# fails if another Go test binary is running.
test-clock:
	$(GO) test -tags clockjump -count=1 -timeout 5m -run '^TestClockJump$$' -v ./e2e/
