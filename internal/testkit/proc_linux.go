//go:build linux

package testkit

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is USER_HZ, the unit of the times in /proc/PID/stat: 100 on every Linux
// port (the kernel converts from its own HZ).
const clockTick = 100

// ReadProc reads a process's figures from /proc/PID/stat, /proc/PID/status,
// /proc/PID/fd and /proc/PID/task/*/schedstat. Reading another user's fd directory needs
// root.
func ReadProc(pid int) (Proc, error) {
	var p Proc
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return p, err
	}
	// The command name, field 2, is in parentheses and may hold spaces and parentheses:
	// count the fields from after its last ')'.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return p, fmt.Errorf("/proc/%d/stat: no ')' after the command name: %q", pid, stat)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return p, fmt.Errorf("/proc/%d/stat: %d fields after the command name, want at least 13", pid, len(f))
	}
	// After the name: state(0) ppid pgrp session tty_nr tpgid flags minflt cminflt majflt
	// cmajflt utime(11) stime(12), in clock ticks, every thread's.
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return p, fmt.Errorf("/proc/%d/stat: utime or stime: %v", pid, err)
		}
		ticks += n
	}
	p.CPU = time.Duration(ticks) * time.Second / clockTick

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return p, err
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if err != nil {
			return p, fmt.Errorf("/proc/%d/status: %s: %v", pid, k, err)
		}
		if k == "VmRSS" {
			p.RSS = kb << 10
		} else {
			p.HWM = kb << 10
		}
	}
	if p.RSS == 0 || p.HWM == 0 {
		// A zombie, or a kernel thread: no memory lines.
		return p, fmt.Errorf("/proc/%d/status: no VmRSS or VmHWM", pid)
	}

	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return p, err
	}
	p.FDs = len(fds)
	p.RunDelay = runDelay(pid)
	return p, nil
}

// runDelay sums the run-queue delay (nanoseconds, the second field of schedstat) of
// pid's threads; a thread that ends between the listing and the read is left out.
func runDelay(pid int) time.Duration {
	tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	if err != nil {
		return 0
	}
	var sum time.Duration
	for _, t := range tasks {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/schedstat", pid, t.Name()))
		if err != nil {
			continue
		}
		if f := strings.Fields(string(b)); len(f) >= 2 {
			if ns, err := strconv.ParseInt(f[1], 10, 64); err == nil {
				sum += time.Duration(ns)
			}
		}
	}
	return sum
}
