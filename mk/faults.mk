# remote_write faults (issue 6): e2e/faults_remotewrite_test.go against the built agent on
# loopback. TestFaultReceiverDown keeps the receiver down for OUTAGE (default 5m, the
# issue's figure); the others take under a minute each and run alongside it. The disk
# full and read-only cases mount a tmpfs and need root (they skip without it, and fail
# when CI is set).

OUTAGE ?= 5m
FAULT_TESTS := ^TestFault(ReceiverDown|ReceiverBroken|SpoolDiskFull|SpoolReadOnly|KillDuringFlush|NoneControl)$$

.PHONY: test-faults

test-faults:
	$(GO) test -count=1 -timeout 30m -v -run '$(FAULT_TESTS)' ./e2e/ -args -outage=$(OUTAGE)
