# The demo as a measurement: DEMO_CYCLES blackholes of the loopback site beta, each at a
# random moment of the 1 s interval, then the medians and maxima of blackhole -> down,
# first failed probe -> down, blackhole -> lost at the view, blackhole -> the demo's name
# server answering the failover address, heal -> up, and heal -> the failback (after the
# demo's recover_for). No root needed; loopback only, so TCP
# handshakes still complete (bench-detect-agent measures the real blackhole as root).

DEMO_CYCLES ?= 10

.PHONY: bench-demo

bench-demo: build
	$(BIN) demo --cycles $(DEMO_CYCLES)
