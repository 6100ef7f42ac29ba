package agent

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// parseDuration reads a duration as the config writes it: a Go duration string with a
// unit. A bare number is refused because readers disagree on what it means (seconds to
// a person, nanoseconds to time.Duration); the toml decoder hands integers and floats to
// UnmarshalText as their decimal text, so this check also catches `interval = 5`.
func parseDuration(s string) (time.Duration, error) {
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
	v, err := parseDuration(string(text))
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

// timeoutAuto is the spelling of an adaptive timeout.
const timeoutAuto = "auto"

// UnmarshalText reads "auto" or a duration string with a unit.
func (t *Timeout) UnmarshalText(text []byte) error {
	if string(text) == timeoutAuto {
		*t = Timeout{Auto: true}
		return nil
	}
	d, err := parseDuration(string(text))
	if err != nil {
		return fmt.Errorf("%v, or \"auto\"", err)
	}
	*t = Timeout{Fixed: d}
	return nil
}

// MarshalText writes "auto" or the fixed duration.
func (t Timeout) MarshalText() ([]byte, error) {
	return []byte(t.String()), nil
}

// String is "auto" or the fixed duration.
func (t Timeout) String() string {
	if t.Auto {
		return timeoutAuto
	}
	return t.Fixed.String()
}

// isSet tells a configured timeout from the zero value, which means "inherit".
func (t Timeout) isSet() bool { return t.Auto || t.Fixed != 0 }
