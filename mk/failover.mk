# The view's failover end to end (e2e/failover_test.go, bench_failover_test.go): Debian's
# named on a host of the namespace network, the view's [[actions.dns]] rewriting its
# records. Root only, with bind9 (scripts/deps/failover.txt) and the namespace tools.

.PHONY: test-failover-e2e bench-failover

# test-failover-e2e runs the failover scenarios alone (about two minutes, two at a time).
test-failover-e2e:
	$(GO) test -count=1 -timeout 15m -run '^TestFailover' -v ./e2e/

# bench-failover measures blackhole -> named answering the failover records (asked every
# 10 ms) over $(TRIALS) trials (mk/netns.mk), lost_for 0 and 1s in the same run, counts the
# updates sent outside a loss and the changes two views applied twice, and prints the
# load average of the run.
bench-failover:
	$(GO) test -tags bench -count=1 -timeout 30m -run '^TestBenchFailover$$' -v ./e2e/ -args -trials $(TRIALS)
