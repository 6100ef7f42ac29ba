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

// ReadProc reads a process's figures from /proc/PID/stat, /proc/PID/status and
// /proc/PID/fd. Reading another user's fd directory needs root.
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
	return p, nil
}
