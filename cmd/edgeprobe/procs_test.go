package main

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestAgentGC(t *testing.T) {
	prev := debug.SetGCPercent(100)
	defer debug.SetGCPercent(prev)

	t.Setenv("GOGC", "")
	agentGC()
	if got := debug.SetGCPercent(100); got != agentGCPercent {
		t.Errorf("GOGC unset: GC percent %d, want %d", got, agentGCPercent)
	}

	t.Setenv("GOGC", "100")
	agentGC()
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("GOGC=100 in the environment: GC percent %d, want it left at 100", got)
	}
}

func TestAgentProcs(t *testing.T) {
	prev := runtime.GOMAXPROCS(agentProcessors + 2)
	defer runtime.GOMAXPROCS(prev)

	t.Setenv("GOMAXPROCS", "")
	agentProcs()
	if got := runtime.GOMAXPROCS(0); got != agentProcessors {
		t.Errorf("GOMAXPROCS unset on %d processors: %d, want %d", agentProcessors+2, got, agentProcessors)
	}

	runtime.GOMAXPROCS(agentProcessors + 2)
	t.Setenv("GOMAXPROCS", "4")
	agentProcs()
	if got := runtime.GOMAXPROCS(0); got != agentProcessors+2 {
		t.Errorf("GOMAXPROCS set in the environment: %d, want it left at %d", got, agentProcessors+2)
	}
}
