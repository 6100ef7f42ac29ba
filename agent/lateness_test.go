package agent

import (
	"strconv"
	"testing"
	"time"
)

// at is a made-up instant, ms milliseconds after an epoch.
func at(ms float64) time.Time {
	return time.Unix(1_800_000_000, 0).Add(time.Duration(ms * float64(time.Millisecond)))
}

// TestInconclusiveRule: which timed-out probes the agent distrusts, with an allowance of
// 5 ms. A sample is (event, due ms, happened ms); the probe starts at 0 ms, startLate ms
// after its slot, and its deadline is at 100 ms.
func TestInconclusiveRule(t *testing.T) {
	type sample struct {
		ev      LatenessEvent
		due, at float64
	}
	for _, tc := range []struct {
		name      string
		allowance time.Duration
		samples   []sample
		gaveUp    float64
		startLate float64
		retry     bool // the probe retries an inconclusive one
		want      bool
	}{
		{"on time", 5 * time.Millisecond, nil, 101, 0, false, false},
		{"just within the allowance", 5 * time.Millisecond, nil, 105, 0, false, false},
		{"deadline handled late", 5 * time.Millisecond, nil, 106, 0, false, true},
		{"deadline handled very late (a stopped process)", 5 * time.Millisecond, nil, 400, 0, false, true},
		{"a late wake-up across the deadline", 5 * time.Millisecond,
			[]sample{{LateWakeup, 90, 102}}, 102, 0, false, true},
		{"a late start across the deadline", 5 * time.Millisecond,
			[]sample{{LateStart, 95, 103}}, 101, 0, false, true},
		{"a late result across the deadline", 5 * time.Millisecond,
			[]sample{{LateResult, 99, 120}}, 101, 0, false, true},
		{"a stall that ended before the deadline", 5 * time.Millisecond,
			[]sample{{LateWakeup, 50, 80}}, 101, 0, false, false},
		{"a stall that began after the deadline", 5 * time.Millisecond,
			[]sample{{LateWakeup, 101, 150}}, 101, 0, false, false},
		{"lateness within the allowance is no stall", 5 * time.Millisecond,
			[]sample{{LateWakeup, 97, 101}}, 101, 0, false, false},
		{"two stalls that overlap make one", 5 * time.Millisecond,
			[]sample{{LateWakeup, 80, 98}, {LateStart, 90, 110}}, 101, 0, false, true},
		{"started within the allowance", 5 * time.Millisecond, nil, 101, 5, false, false},
		{"started late (the backlog after a stall)", 5 * time.Millisecond, nil, 101, 6, false, true},
		{"the retry of an inconclusive probe started late counts", 5 * time.Millisecond, nil, 101, 40, true, false},
		{"a retry handled late is still inconclusive", 5 * time.Millisecond, nil, 120, 40, true, true},
		{"guard off", 0, []sample{{LateWakeup, 90, 300}}, 300, 0, false, false},
		{"guard off, started late", 0, nil, 101, 300, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newSelfCheck(tc.allowance)
			for _, s := range tc.samples {
				c.sample(s.ev, at(s.due), at(s.at))
			}
			w := window{slot: at(-tc.startLate), deadline: at(100), retry: tc.retry}
			if got := c.inconclusive(w, at(0), at(tc.gaveUp)); got != tc.want {
				t.Errorf("inconclusive = %v, want %v", got, tc.want)
			}
			want := uint64(0)
			if tc.want {
				want = 1
			}
			if got := c.report.Inconclusive; got != want {
				t.Errorf("counted %d inconclusive, want %d", got, want)
			}
		})
	}
}

// TestStallRingRemembersTheRecent: more stalls than the ring holds forget the oldest, and
// the newest are still found.
func TestStallRingRemembersTheRecent(t *testing.T) {
	c := newSelfCheck(5 * time.Millisecond)
	for i := range 2 * stallRing {
		ms := float64(i * 100)
		c.sample(LateWakeup, at(ms), at(ms+20))
	}
	if !c.stalledAt(at(float64((2*stallRing-1)*100 + 10))) {
		t.Error("the newest stall is not found")
	}
	if c.stalledAt(at(10)) {
		t.Error("the oldest stall is still found beyond the ring's size")
	}
}

func TestLatenessHistogram(t *testing.T) {
	c := newSelfCheck(5 * time.Millisecond)
	c.sample(LateWakeup, at(10), at(9)) // early: counts as on time
	c.sample(LateWakeup, at(10), at(10.1))
	c.sample(LateWakeup, at(10), at(10.5))
	c.sample(LateWakeup, at(0), at(30))
	c.sample(LateWakeup, at(0), at(5000)) // beyond the last bucket
	h := c.report.Histograms[LateWakeup]
	if h.Count != 5 {
		t.Errorf("count %d, want 5", h.Count)
	}
	want := map[time.Duration]uint64{100 * time.Microsecond: 2, 500 * time.Microsecond: 1, 50 * time.Millisecond: 1}
	for i, le := range LatenessBuckets {
		if h.Buckets[i] != want[le] {
			t.Errorf("bucket le=%v: %d, want %d", le, h.Buckets[i], want[le])
		}
	}
	if wantSum := 5030600 * time.Microsecond; h.Sum != wantSum {
		t.Errorf("sum %v, want %v", h.Sum, wantSum)
	}
	if n := c.report.Histograms[LateStart].Count; n != 0 {
		t.Errorf("start samples %d, want 0", n)
	}
}

// TestImpaired: wake-ups every 25 ms in phases of made-up lateness; the agent turns
// impaired only on sustained lateness, and back once it is on time again.
func TestImpaired(t *testing.T) {
	type phase struct {
		name    string
		seconds int
		late    time.Duration // of every wake-up
		stallMs float64       // one stall of this length at the phase's start
	}
	for _, tc := range []struct {
		name   string
		phases []phase
		want   []string // "impaired@s" / "ok@s": changes, by the phase's name and whole second
	}{
		{"healthy", []phase{{"quiet", 20, 200 * time.Microsecond, 0}}, nil},
		{"busy but within the allowance", []phase{{"busy", 20, 4 * time.Millisecond, 0}}, nil},
		{"late beyond the allowance, less than a quarter of the time", []phase{{"busy", 20, 6 * time.Millisecond, 0}}, nil},
		{"one stall of 300 ms (a SIGSTOP)", []phase{{"quiet", 3, 0, 0}, {"stop", 10, 0, 300}}, nil},
		{"late 40% of the time", []phase{{"quiet", 3, 0, 0}, {"late", 20, 10 * time.Millisecond, 0}}, nil},
		{"late 80% of the time, then healthy", []phase{
			{"quiet", 3, 0, 0}, {"late", 10, 20 * time.Millisecond, 0}, {"healed", 10, 0, 0},
		}, []string{"impaired@late+4", "ok@healed+4"}},
		{"two long stalls", []phase{
			{"quiet", 3, 0, 0}, {"stalled", 1, 0, 800}, {"stalled", 1, 0, 800}, {"quiet", 10, 0, 0},
		}, nil},
		{"three stalls of 900 ms in a row", []phase{
			{"quiet", 3, 0, 0}, {"stalled", 1, 0, 900}, {"stalled", 1, 0, 900}, {"stalled3", 1, 0, 900}, {"quiet", 10, 0, 0},
		}, []string{"impaired@stalled3+0", "ok@quiet+4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newSelfCheck(5 * time.Millisecond)
			var got []string
			ms := 0.0
			for _, p := range tc.phases {
				begin := ms
				if p.stallMs > 0 {
					c.sample(LateWakeup, at(ms), at(ms+p.stallMs))
					ms += p.stallMs
				}
				for ms < begin+float64(p.seconds*1000) {
					due := at(ms)
					ms += 25
					c.sample(LateWakeup, due, due.Add(p.late))
					if _, changed := c.tick(due.Add(p.late)); changed {
						state := "ok"
						if c.impaired {
							state = "impaired"
						}
						got = append(got, state+"@"+p.name+"+"+strconv.Itoa(int((ms-begin)/1000)))
					}
				}
			}
			equal(t, "changes", got, tc.want)
		})
	}
}
