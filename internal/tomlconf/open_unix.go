//go:build unix

package tomlconf

import (
	"os"
	"syscall"
)

// openNonBlocking opens name for reading without waiting for a writer (a FIFO) or a
// device.
func openNonBlocking(name string) (*os.File, error) {
	return os.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
}
