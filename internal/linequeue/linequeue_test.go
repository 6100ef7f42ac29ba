package linequeue

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// gate is a writer that blocks until it is opened, then keeps what it is given.
type gate struct {
	open chan struct{}
	testkit.Buffer
}

func (g *gate) Write(p []byte) (int, error) {
	<-g.open
	return g.Buffer.Write(p)
}

// A reader that does not read costs lines, counted, never the writer's time; the lines
// kept come out whole and in order once it reads again.
func TestQueueNeverBlocks(t *testing.T) {
	g := &gate{open: make(chan struct{})}
	var logs bytes.Buffer
	q := New(g, slog.New(slog.NewTextHandler(&logs, nil)), "lines dropped")
	n := 3 * MaxLines
	done := make(chan struct{})
	go func() {
		for i := range n {
			fmt.Fprintf(q, "line %d\n", i)
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Write blocked on a reader that does not read")
	}
	// MaxLines wait; the batch in the writer's hands holds at most as many again.
	if d := q.Dropped(); d < uint64(n-2*MaxLines) || d > uint64(n-MaxLines) {
		t.Errorf("dropped %d of %d lines with room for %d (and a batch being written), want %d to %d", d, n, MaxLines, n-2*MaxLines, n-MaxLines)
	}
	close(g.open)
	q.Flush(10 * time.Second)
	lines := strings.Split(strings.TrimSuffix(g.String(), "\n"), "\n")
	if uint64(len(lines))+q.Dropped() != uint64(n) {
		t.Errorf("%d lines written and %d dropped, want %d in all", len(lines), q.Dropped(), n)
	}
	prev := -1
	for i, l := range lines {
		var k int
		if _, err := fmt.Sscanf(l, "line %d", &k); err != nil || k <= prev {
			t.Fatalf("line %d is %q after line %d: torn or out of order", i, l, prev)
		}
		prev = k
	}
}

type failing struct{}

func (failing) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

// A writer that fails (stdout closed) drops every line, counts it and says so once.
func TestQueueCountsFailedWrites(t *testing.T) {
	var logs testkit.Buffer
	q := New(failing{}, slog.New(slog.NewTextHandler(&logs, nil)), "lines dropped")
	for range 10 {
		io.WriteString(q, "x\n")
		q.Flush(time.Second)
	}
	if q.Dropped() != 10 {
		t.Errorf("dropped %d, want 10", q.Dropped())
	}
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), "broken pipe"); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("no report of the drops: %q", logs.String())
		}
	}
	if c := strings.Count(logs.String(), "lines dropped"); c != 1 {
		t.Errorf("%d reports within %v, want 1:\n%s", c, reportEvery, logs.String())
	}
}
