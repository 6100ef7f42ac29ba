//go:build linux

package e2e

import (
	"os/exec"
	"runtime"
	"syscall"
)

// startPinned starts cmd so that it is killed when the test process dies, and returns
// a channel that receives cmd.Wait's result.
//
// Pdeathsig fires when the thread that forked the child ends, not the process, and the
// runtime ends threads: the network namespace helpers lock a goroutine to a thread and
// let it end with the thread, and that thread may be the one that forked an agent
// earlier. An agent started from an ordinary goroutine was killed that way in the middle
// of TestFpingLoopback. So the fork happens on a thread locked until the child exits, as
// internal/testnet does for processes in a namespace.
func startPinned(cmd *exec.Cmd) (<-chan error, error) {
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
