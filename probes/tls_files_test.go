//go:build unix

package probes

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestTLSFilesMustBeFiles: ClientConfig reads the CA bundle and the client certificate
// (again whenever they change on disk) only from regular files: a FIFO or a link to
// /dev/zero put in their place fails at once instead of hanging the prober or filling
// its memory.
func TestTLSFilesMustBeFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	for name, spec := range map[string]TLSSpec{
		"CA bundle a FIFO":      {CAFile: fifo},
		"CA bundle /dev/zero":   {CAFile: zero},
		"certificate a FIFO":    {CertFile: fifo, KeyFile: zero},
		"certificate /dev/zero": {CertFile: zero, KeyFile: zero},
	} {
		t.Run(name, func(t *testing.T) {
			done := make(chan error, 1)
			go func() {
				_, err := spec.ClientConfig()
				done <- err
			}()
			select {
			case err := <-done:
				if err == nil || !strings.Contains(err.Error(), "not a regular file") {
					t.Errorf("ClientConfig: %v, want refused as not a regular file", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("ClientConfig still reading after 5 s")
			}
		})
	}
}
