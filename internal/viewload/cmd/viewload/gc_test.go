package main

import (
	"testing"
	"time"
)

// The runtime's gc lines are read into collections on the process's clock; other lines,
// and gc lines of a format not understood, are skipped.
func TestParseGCTrace(t *testing.T) {
	started := time.Date(2026, 12, 7, 2, 26, 13, 0, time.UTC)
	stderr := `time=2026-12-07T02:26:13.654Z level=INFO msg="view listening"
gc 13 @31.697s 2%: 0.30+330+0.012 ms clock, 0.60+74/183/0+0.025 ms cpu, 512->517->328 MB, 604 MB goal, 17 MB stacks, 0 MB globals, 2 P
gc 14 @40.5s 2%: garbled
gc 15 @44.762s 3%: 2.1+460+0.011 ms clock, 4.3+138/240/9.5+0.022 ms cpu, 563->568->417 MB, 575 MB goal, 17 MB stacks, 0 MB globals, 2 P (forced)
`
	cs := parseGCTrace(stderr, started)
	if len(cs) != 2 {
		t.Fatalf("got %d collections, want 2: %+v", len(cs), cs)
	}
	c := cs[0]
	if want := started.Add(31697 * time.Millisecond); !c.start.Equal(want) {
		t.Errorf("start %v, want %v", c.start, want)
	}
	if want := time.Duration(330.312 * float64(time.Millisecond)); c.clock != want {
		t.Errorf("clock %v, want %v", c.clock, want)
	}
	if c.assist != 74*time.Millisecond || c.background != 183*time.Millisecond || c.liveMB != 328 {
		t.Errorf("assist %v background %v live %d MB, want 74ms 183ms 328", c.assist, c.background, c.liveMB)
	}
	if cs[1].background != 240*time.Millisecond || cs[1].liveMB != 417 {
		t.Errorf("second: %+v", cs[1])
	}
}

// A latency counts as in a collection's shadow from the collection's start until
// gcShadow after its mark ended, and not before or after.
func TestSplitByGC(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)
	cs := []collection{{start: t0.Add(10 * time.Second), clock: 300 * time.Millisecond}}
	sent := []time.Time{
		t0.Add(9999 * time.Millisecond),                              // just before
		t0.Add(10 * time.Second),                                     // at its start
		t0.Add(10*time.Second + 300*time.Millisecond + gcShadow - 1), // the shadow's last moment
		t0.Add(10*time.Second + 300*time.Millisecond + gcShadow),     // just after
	}
	lat := []time.Duration{1, 2, 3, 4}
	in, out := splitByGC(cs, sent, lat)
	if len(in) != 2 || in[0] != 2 || in[1] != 3 || len(out) != 2 || out[0] != 1 || out[1] != 4 {
		t.Fatalf("in %v out %v, want [2 3] and [1 4]", in, out)
	}
	if got := within(cs, t0, t0.Add(10*time.Second)); len(got) != 0 {
		t.Errorf("a collection at the window's end counted in it: %v", got)
	}
	if got := within(cs, t0.Add(10*time.Second), t0.Add(11*time.Second)); len(got) != 1 {
		t.Errorf("a collection at the window's start not counted: %v", got)
	}
}

func TestWithGCTrace(t *testing.T) {
	if got := withGCTrace(""); got != "gctrace=1" {
		t.Errorf("empty: %q", got)
	}
	if got := withGCTrace("madvdontneed=1"); got != "madvdontneed=1,gctrace=1" {
		t.Errorf("kept: %q", got)
	}
}
