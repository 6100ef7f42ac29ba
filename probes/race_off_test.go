//go:build linux && !race

package probes

const raceEnabled = false
