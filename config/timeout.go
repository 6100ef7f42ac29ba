package config

import (
	"fmt"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/tomlconf"
)

// Timeout is "auto" or a fixed duration.
type Timeout struct {
	Auto  bool
	Fixed time.Duration
}

// timeoutAuto is the spelling of an adaptive timeout.
const timeoutAuto = "auto"

// UnmarshalText reads "auto" or a duration string with a unit.
func (t *Timeout) UnmarshalText(text []byte) error {
	if string(text) == timeoutAuto {
		*t = Timeout{Auto: true}
		return nil
	}
	d, err := tomlconf.ParseDuration(string(text))
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

// Sign is 1 for "auto", else the sign of the fixed duration: the config refuses a
// timeout that is not positive.
func (t Timeout) Sign() int {
	switch {
	case t.Auto || t.Fixed > 0:
		return 1
	case t.Fixed < 0:
		return -1
	}
	return 0
}

// isSet tells a configured timeout from the zero value, which means "inherit".
func (t Timeout) isSet() bool { return t.Auto || t.Fixed != 0 }
