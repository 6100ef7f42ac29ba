package tomlconf

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration written in TOML as a string with a unit ("250ms", "1s").
// A bare number is an error, never nanoseconds.
type Duration struct{ time.Duration }

// ParseDuration reads a duration as a config writes it: a Go duration string with a
// unit. A bare number is refused because readers disagree on what it means (seconds to
// a person, nanoseconds to time.Duration); the toml decoder hands integers and floats to
// UnmarshalText as their decimal text, so this check also catches `interval = 5`.
func ParseDuration(s string) (time.Duration, error) {
	if _, err := strconv.ParseFloat(strings.TrimSpace(s), 64); err == nil {
		return 0, fmt.Errorf("bare number %s is not a duration; use a string with a unit, e.g. \"500ms\"", s)
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration; use a number with a unit (ms, s, m, h), e.g. \"500ms\"", s)
	}
	return d, nil
}

// UnmarshalText reads a duration string with a unit ("250ms", "1s").
func (d *Duration) UnmarshalText(text []byte) error {
	v, err := ParseDuration(string(text))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// MarshalText writes the duration in the form UnmarshalText reads.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(d.Duration.String()), nil
}

// Sign is -1, 0 or 1: Decode refuses durations that are not positive unless the key
// may be zero (Options.ZeroAllowed).
func (d Duration) Sign() int {
	switch {
	case d.Duration < 0:
		return -1
	case d.Duration == 0:
		return 0
	}
	return 1
}

// Or is d, or def when d is zero (not set).
func (d Duration) Or(def time.Duration) time.Duration {
	if d.Duration == 0 {
		return def
	}
	return d.Duration
}
