//go:build !linux

package testkit

import (
	"errors"
	"os/exec"
	"runtime"
)

// StartPinned needs Linux's parent-death signal (Pdeathsig).
func StartPinned(cmd *exec.Cmd) (<-chan error, error) {
	return nil, errors.New("testkit: StartPinned needs Linux's parent-death signal; " + runtime.GOOS + " has none")
}

// startChild starts a server a test needs. Nothing ties its life to the test process
// here, so only the test's cleanup stops it (a killed test run leaves it behind).
func startChild(cmd *exec.Cmd) (<-chan error, error) {
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	return exited, nil
}
