package tomlconf

import (
	"strconv"
	"strings"
)

// Error is one problem found in a configuration.
type Error struct {
	File string // as given to Decode; "" when the data came from elsewhere
	Line int    // 1-based line the problem is on or under; 0 when unknown
	Key  string // indexed key path such as site[1].http[0].url; "" for the file as a whole
	Msg  string // what is wrong and what is allowed
}

// Error formats the problem as FILE:LINE: KEY: MSG, leaving out the parts that are unknown.
func (e Error) Error() string {
	var parts []string
	switch {
	case e.File != "" && e.Line > 0:
		parts = append(parts, e.File+":"+strconv.Itoa(e.Line))
	case e.File != "":
		parts = append(parts, e.File)
	case e.Line > 0:
		parts = append(parts, "line "+strconv.Itoa(e.Line))
	}
	if e.Key != "" {
		parts = append(parts, e.Key)
	}
	return strings.Join(append(parts, e.Msg), ": ")
}

// Errors is every problem found in one configuration, in file order, so that a user
// fixes them all in one round instead of one per run.
type Errors struct {
	Errors []Error
}

// Error prints one problem per line.
func (e *Errors) Error() string {
	lines := make([]string, len(e.Errors))
	for i, ce := range e.Errors {
		lines[i] = ce.Error()
	}
	return strings.Join(lines, "\n")
}
