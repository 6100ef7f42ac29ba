package testkit

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
)

// CIEnv is the environment variable that says the tests run in CI (.ci/run sets it). CI
// runs as root with every package of scripts/deps/*.txt installed, so there a missing
// tool or privilege is a broken CI, never a reason to skip.
const CIEnv = "CI"

// InCI says whether CIEnv is set to anything but "".
func InCI() bool { return os.Getenv(CIEnv) != "" }

// SkipUnlessCI is the one skip policy of the project's tests: it skips tb with the
// message on a developer's machine and fails it when CI is set. Every test that cannot
// run here (no root, a tool missing, -short) stops through it, so nothing skips silently
// in CI.
func SkipUnlessCI(tb TB, format string, args ...any) {
	tb.Helper()
	msg := fmt.Sprintf(format, args...)
	if InCI() {
		tb.Fatalf("%s (%s is set, so this is an error, not a skip)", msg, CIEnv)
		return
	}
	tb.Skipf("skipping: %s", msg)
}

// Require applies SkipUnlessCI to err, a prerequisite's failure; nil passes.
func Require(tb TB, err error) {
	tb.Helper()
	if err != nil {
		SkipUnlessCI(tb, "%v", err)
	}
}

// RequireRoot stops a test that needs root; why says what for.
func RequireRoot(tb TB, why string) {
	tb.Helper()
	if uid := os.Geteuid(); uid != 0 {
		SkipUnlessCI(tb, "needs root: %s (running as uid %d)", why, uid)
	}
}

// LookTool returns the path of the first of names found in PATH, or stops the test
// through SkipUnlessCI; hint says where the tool comes from (a Debian package and the
// scripts/deps list that names it).
func LookTool(tb TB, hint string, names ...string) string {
	tb.Helper()
	for _, name := range names {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	SkipUnlessCI(tb, "%v not found in PATH (%s)", names, hint)
	return ""
}

// SkipShort stops a test under go test -short, saying why it is long. Through
// SkipUnlessCI: CI runs every test, so -short there is an error.
func SkipShort(tb TB, why string) {
	tb.Helper()
	// testing.Short without importing testing (see the package comment): the flag
	// exists once testing.Init has run, which go test does before any test.
	if f := flag.Lookup("test.short"); f != nil && f.Value.String() == "true" {
		SkipUnlessCI(tb, "-short: %s", why)
	}
}
