//go:build !unix

package failover

import "os/exec"

// ownGroup has no process groups to use here: only the runbook itself is killed on
// timeout, not its children.
func ownGroup(*exec.Cmd) {}

func killGroup(cmd *exec.Cmd) {
	if cmd.Process != nil {
		_ = cmd.Process.Kill()
	}
}
