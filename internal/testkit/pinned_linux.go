//go:build linux

package testkit

import (
	"os/exec"
	"runtime"
	"syscall"
)

// StartPinned starts cmd so that the kernel kills it (SIGKILL) when the test process
// dies, and returns a channel that receives cmd.Wait's result once it has exited. It
// keeps cmd's other SysProcAttr settings.
//
// The death signal (Pdeathsig) fires when the thread that forked the child ends, not
// the process, and the Go runtime ends threads: code that locks a goroutine to a thread
// to enter a network namespace (internal/testnet, the probes' isolated threads) lets the
// thread end with it, and that thread may be the one that forked a child earlier. An
// agent started from an ordinary goroutine was killed that way in the middle of a test.
// So the fork happens on a goroutine locked to its thread until the child has exited.
//
// Wait runs on that goroutine as soon as the child started, so a caller that reads
// cmd.StdoutPipe must have read everything it needs before the child exits.
func StartPinned(cmd *exec.Cmd) (<-chan error, error) {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	started := make(chan error, 1)
	exited := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		exited <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return exited, nil
}
