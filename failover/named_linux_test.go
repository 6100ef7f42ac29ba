package failover

import (
	"os/exec"
	"syscall"
)

// dieWithTest has the kernel kill the child when the test process dies, so that a
// killed test run leaves no named behind.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
