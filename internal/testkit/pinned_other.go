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
