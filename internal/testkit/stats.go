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

// GridSpread says how far starts, meant to be one interval apart, strayed from a single
// grid: the largest minus the smallest of starts[k] - k*interval. A start that comes late
// and a next one back on its slot keep it at that lateness; a slot skipped or used twice
// shifts every later start by a whole interval. So a spread under one interval means every
// start had a slot of its own, however late, and this holds on a loaded machine where
// spacings alone (a late start shortens the next) do not tell. 0 for fewer than two.
func GridSpread(starts []time.Time, interval time.Duration) time.Duration {
	if len(starts) < 2 {
		return 0
	}
	lo, hi := time.Duration(math.MaxInt64), time.Duration(math.MinInt64)
	for k, s := range starts {
		off := s.Sub(starts[0]) - time.Duration(k)*interval
		lo, hi = min(lo, off), max(hi, off)
	}
	return hi - lo
}
