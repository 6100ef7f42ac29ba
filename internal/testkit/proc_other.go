//go:build !linux

package testkit

import (
	"errors"
	"runtime"
)

// ReadProc reads /proc, which only Linux has.
func ReadProc(pid int) (Proc, error) {
	return Proc{}, errors.New("testkit: ReadProc reads /proc, which " + runtime.GOOS + " does not have")
}
