package testkit

import (
	"math"
	"slices"
	"time"
)

// Number is what Median and Percentile work on; time.Duration is one.
type Number interface {
	~int | ~int32 | ~int64 | ~uint | ~uint32 | ~uint64 | ~float32 | ~float64
}

// Median is the middle value of xs, the mean of the two middle values when len(xs) is
// even, and 0 for none. xs is not changed.
func Median[T Number](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	mid := len(s) / 2
	if len(s)%2 == 1 {
		return s[mid]
	}
	return (s[mid-1] + s[mid]) / 2
}

// Percentile is the p-th percentile (0 to 100) of xs by nearest rank: the smallest value
// that at least p% of xs are at or below; 0 for none. p 0 is the minimum, 100 the
// maximum, 50 the lower median. xs is not changed.
func Percentile[T Number](xs []T, p float64) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	// p*n first: for a whole p the product is exact and so is its division by 100 when
	// the rank is whole (p/100*n would make 99/100*100 a hair over 99, and rank 100).
	rank := int(math.Ceil(p * float64(len(s)) / 100))
	return s[max(0, min(len(s)-1, rank-1))]
}

// Slots is how starts meant to be one interval apart fell on their grid (GridSlots).
type Slots struct {
	Doubled int           // starts in a slot that an earlier start had taken
	Skipped int           // slots between two starts that no start took
	MaxLate time.Duration // the largest lateness of a start behind its slot
}

// GridSlots places starts, meant to be one interval apart and never early, on their
// grid, and counts the slots used twice and the slots skipped. A late start followed by
// one back on its slot is neither, however short the spacing between them: this is what
// a test of a scheduler can assert on a loaded machine, where spacings alone do not tell.
// A start late by a whole interval or more lands in a later slot and counts as a skip,
// which it is.
//
// The grid's phase is not known, so every start's offset within the interval is tried as
// the phase, and the one that explains the starts with the fewest slots doubled or
// skipped is taken (then the least lateness): the most charitable reading. A scheduler
// that starts a slot twice is caught by any phase.
func GridSlots(starts []time.Time, interval time.Duration) Slots {
	if len(starts) < 2 || interval <= 0 {
		return Slots{}
	}
	offs := make([]time.Duration, len(starts))
	for k, s := range starts {
		offs[k] = s.Sub(starts[0]) % interval
		if offs[k] < 0 {
			offs[k] += interval
		}
	}
	try := func(phase time.Duration) Slots {
		var out Slots
		var prev int64
		for k, s := range starts {
			late := (offs[k] - phase + interval) % interval
			out.MaxLate = max(out.MaxLate, late)
			// The slot's due time, in whole intervals after the first start's slot.
			j := int64((s.Sub(starts[0]) - late + (offs[0]-phase+interval)%interval + interval/2) / interval)
			switch {
			case k == 0:
			case j <= prev:
				out.Doubled++
			case j > prev+1:
				out.Skipped += int(j - prev - 1)
			}
			prev = max(prev, j)
		}
		return out
	}
	best := try(offs[0])
	tried := map[time.Duration]bool{offs[0]: true}
	for _, phase := range offs[1:] {
		if tried[phase] {
			continue
		}
		tried[phase] = true
		got := try(phase)
		if n, m := got.Doubled+got.Skipped, best.Doubled+best.Skipped; n < m || n == m && got.MaxLate < best.MaxLate {
			best = got
		}
	}
	return best
}
