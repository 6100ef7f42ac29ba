package probes

import (
	"os"
	"strings"
	"testing"
)

// requireRoot skips a test that needs root, except in CI, where nothing may skip.
func requireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI must run as root: %s", why)
	}
	t.Skipf("needs root: %s", why)
}

const pingGroupRange = "/proc/sys/net/ipv4/ping_group_range"

// setPingGroupRange sets net.ipv4.ping_group_range for the test and restores the old
// value when it ends.
func setPingGroupRange(t testing.TB, value string) {
	t.Helper()
	requireRoot(t, "sets net.ipv4.ping_group_range")
	old, err := os.ReadFile(pingGroupRange)
	if err != nil {
		t.Fatalf("read %s: %v", pingGroupRange, err)
	}
	if err := os.WriteFile(pingGroupRange, []byte(value), 0o644); err != nil {
		t.Fatalf("write %q to %s: %v", value, pingGroupRange, err)
	}
	t.Cleanup(func() {
		restore := strings.Join(strings.Fields(string(old)), " ")
		if err := os.WriteFile(pingGroupRange, []byte(restore), 0o644); err != nil {
			t.Errorf("restore %s to %q: %v", pingGroupRange, restore, err)
		}
	})
}

// hasIPv6Loopback reports whether ::1 is configured, as it is on CI's Debian.
func requireIPv6Loopback(t testing.TB) {
	t.Helper()
	data, err := os.ReadFile("/proc/net/if_inet6")
	if err == nil && strings.Contains(string(data), "00000000000000000000000000000001") {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("CI needs ::1 on lo")
	}
	t.Skip("no IPv6 loopback (::1) on this host")
}
