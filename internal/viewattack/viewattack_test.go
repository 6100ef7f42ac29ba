package viewattack

import (
	"io"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/s2"
	"github.com/klauspost/compress/snappy"
)

// TestS2Bomb: the bomb is what the attack says, a valid S2 block of a few bytes that
// expands to 64 MiB, and no snappy block.
func TestS2Bomb(t *testing.T) {
	b := S2Bomb()
	if len(b) > 64 {
		t.Errorf("S2 bomb of %d bytes, want a few dozen", len(b))
	}
	if out, err := s2.Decode(nil, b); err != nil || len(out) != 64<<20 {
		t.Errorf("S2 decodes it to %d bytes, %v; want 64 MiB", len(out), err)
	}
	if _, err := snappy.DecodeStrict(nil, b); err == nil {
		t.Error("strict snappy decodes the S2 bomb")
	}
}

// TestAttackerBounds: the attacker side attacks only loopback, for a bounded time.
func TestAttackerBounds(t *testing.T) {
	for _, addr := range []string{"192.0.2.1:9470", "view.example:9470", "9470"} {
		if err := RunAttacker("baseline", addr, time.Second, 2, io.Discard); err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("RunAttacker against %s: %v, want refused", addr, err)
		}
	}
	if err := RunAttacker("baseline", "127.0.0.1:9", MaxDuration+time.Second, 2, io.Discard); err == nil {
		t.Error("RunAttacker beyond MaxDuration accepted")
	}
	if err := RunAttacker("no-such", "127.0.0.1:9", time.Second, 2, io.Discard); err == nil {
		t.Error("an unknown attack accepted")
	}
}
