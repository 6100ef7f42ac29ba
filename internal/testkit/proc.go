package testkit

import "time"

// Proc is what ReadProc reads of a process at one moment.
type Proc struct {
	CPU time.Duration // user plus system time of every thread so far (utime+stime)
	RSS int64         // resident set size now (VmRSS), bytes
	HWM int64         // peak resident set size (VmHWM), bytes
	FDs int           // open file descriptors (entries of /proc/PID/fd)
}

// RSSKiB is RSS in KiB, as /proc prints it.
func (p Proc) RSSKiB() int64 { return p.RSS >> 10 }
