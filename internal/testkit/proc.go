package testkit

import "time"

// Proc is what ReadProc reads of a process at one moment.
type Proc struct {
	CPU time.Duration // user plus system time of every thread so far (utime+stime)
	RSS int64         // resident set size now (VmRSS), bytes
	HWM int64         // peak resident set size (VmHWM), bytes
	FDs int           // open file descriptors (entries of /proc/PID/fd)
	// RunDelay is how long the process's threads have waited, runnable, for a CPU so
	// far: the second field of /proc/PID/task/*/schedstat, summed (threads that ended
	// are not counted; 0 when the kernel keeps no schedstat). Beside CPU it says whether
	// the process was short of work or short of a CPU.
	RunDelay time.Duration
}

// RSSKiB is RSS in KiB, as /proc prints it.
func (p Proc) RSSKiB() int64 { return p.RSS >> 10 }
