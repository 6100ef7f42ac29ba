//go:build !linux

package failover

import "os/exec"

// dieWithTest: only Linux can tie a child's life to the test process; elsewhere the
// test's cleanup stops named.
func dieWithTest(*exec.Cmd) {}
