// Package testkit is the test support that the tests of several packages need alike: a
// throwaway CA and its certificates, the skip policy (skip with a clear message on a
// developer's machine, fail when CI is set), a /proc reader for a process's CPU time,
// memory and open files, medians and percentiles, a client of server-sent events,
// starting a child process that dies with the test, and a BIND (named) test server
// holding the TSIG keys of the failover tests. Each of these was once copied into
// the tests of every package that used it, and the copies drifted (one median returned
// the upper of the two middle values, one skip forgot CI); docs/architecture.md's "one rule,
// one place" holds for tests too.
//
// testkit does not import the testing package. Its helpers take a TB, the few methods
// of testing.TB they call, which *testing.T, *testing.B and *testing.F have; so a
// program that is not a test, internal/viewload/cmd/viewload, uses the /proc reader, the
// percentiles and the event client without testkit adding the testing package to it.
// Production code (cmd/edgeprobe and everything it imports) must not import testkit;
// TestNotInTheBinary checks that.
package testkit

// TB is the part of testing.TB that testkit calls. *testing.T, *testing.B, *testing.F
// and any testing.TB satisfy it.
type TB interface {
	Helper()
	Cleanup(func())
	Failed() bool
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Logf(format string, args ...any)
	TempDir() string
}
