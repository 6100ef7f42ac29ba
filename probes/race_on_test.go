//go:build linux && race

package probes

// raceEnabled: the race detector multiplies allocations, so byte budgets are not checked.
const raceEnabled = true
