//go:build !linux

package agent

import (
	"errors"
	"time"
)

// wakeTimer is the Linux timerfd's stand-in: the agent's scheduler sleeps on a timerfd
// (wake_linux.go), so elsewhere Run fails at start with errSchedulerNeedsLinux.
type wakeTimer struct{}

var errSchedulerNeedsLinux = errors.New("the agent's scheduler needs Linux (it sleeps on a timerfd)")

func newWakeTimer() (*wakeTimer, error) { return nil, errSchedulerNeedsLinux }
func (t *wakeTimer) set(time.Duration)  {}
func (t *wakeTimer) wait() error        { return errSchedulerNeedsLinux }
func (t *wakeTimer) close() error       { return nil }
