package main

import (
	"os"
	"runtime"
)

// agentProcs gives the agent's Go code one processor unless GOMAXPROCS is set.
//
// The agent's work is a stream of tiny events (start a probe, read a reply, update a
// state): with two or more processors the runtime hands each one to another thread and
// wakes it through a futex, and those wake-ups cost more than the probes. On one
// processor the receiver reads a whole batch of replies at once after the scheduler has
// sent them. Measured with BenchmarkRunICMPLoopback (1000 loopback targets at 1 s, raw
// socket, 2-core amd64): 11.7-14.4 µs of CPU per probe on one processor against
// 17.7-24.0 µs on two. Probes that block (DNS, HTTP, TCP connects) run in goroutines
// and system calls and do not need the processor while they wait, and blocking system
// calls get a thread of their own either way. GOMAXPROCS=N in the environment (for
// instance in a systemd drop-in) overrides this.
func agentProcs() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
}
