package viewload

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/golang/snappy"
)

// TestStampedBlock pushes agents' states at many timestamps and state changes: every
// body is a snappy block (decoded by the decoder the view uses) of exactly the request
// marshalled afresh at that timestamp (also for blocks compressed anew for each push, as
// those that cannot be restamped are), and most agents' blocks are restamped rather
// than compressed for each push, or the generator's CPU grows unnoticed.
func TestStampedBlock(t *testing.T) {
	cfg := Config{URL: "http://127.0.0.1:1", Agents: 200, Sites: 20}
	cfg.defaults()
	start := time.Now()
	rng := rand.New(rand.NewPCG(1, 2))
	agents, restamped := 0, 0
	for n := range cfg.Agents {
		a, err := newSimAgent(siteName(n/10, n%10), cfg.group(n), &cfg, start)
		if err != nil {
			t.Fatal(err)
		}
		agents++
		now := start
		for step := range 30 {
			now = now.Add(time.Duration(rng.IntN(3000)) * time.Millisecond)
			if rng.IntN(5) == 0 {
				a.setDown(rng.IntN(cfg.Sites), rng.IntN(2) == 0, now)
			}
			a.encode(now)
			if step == 0 && a.block.ok {
				restamped++
			}
			if n%10 == 0 {
				a.block.ok = false // every tenth agent takes the way of a block that cannot be restamped
			}
			got, err := snappy.Decode(nil, a.block.block)
			if err != nil {
				t.Fatalf("agent %d step %d: %v", n, step, err)
			}
			a.marshal(a.lastMs) // the request as marshalled afresh at the push's stamp
			if !bytes.Equal(got, a.raw) {
				t.Fatalf("agent %d step %d (restamped %v): the body decodes to %d bytes unlike the request of %d", n, step, a.block.ok, len(got), len(a.raw))
			}
		}
	}
	t.Logf("%d of %d agents' blocks restamped", restamped, agents)
	if restamped < agents*9/10 {
		t.Errorf("only %d of %d agents' blocks restamped", restamped, agents)
	}
}
