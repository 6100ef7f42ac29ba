# Probe benchmarks (probes/): one ICMP probe on loopback in raw and datagram mode, one TCP
# connect probe; ns/op and allocs/op. Root only (ICMP sockets, network namespaces).

BENCHTIME ?= 2s

.PHONY: bench-probes

bench-probes:
	$(GO) test -count=1 -run '^$$' -bench . -benchtime $(BENCHTIME) ./probes/
