package main

import (
	"strings"
	"testing"
	"time"
)

// TestViewRefusesOpenListen: a view asked to listen beyond loopback without tokens exits
// with status 2 and names the address and both ways out, before it binds anything.
func TestViewRefusesOpenListen(t *testing.T) {
	r := runBinary(t, 10*time.Second, "view", "--listen", "0.0.0.0:0")
	if r.status != 2 {
		t.Fatalf("status %d, want 2; stderr:\n%s", r.status, r.stderr)
	}
	for _, want := range []string{"0.0.0.0:0", "tokens or agent_tokens", "--allow-unauthenticated"} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("stderr does not name %q:\n%s", want, r.stderr)
		}
	}
}
