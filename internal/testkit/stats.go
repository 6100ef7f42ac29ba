package testkit

import (
	"math"
	"slices"
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
