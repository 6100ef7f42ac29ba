package main

import (
	"bytes"
	"strings"
	"testing"
)

// A --load-procs below one is refused before anything is started or pushed.
func TestLoadProcsRefused(t *testing.T) {
	var out, errb bytes.Buffer
	// With --view the check comes before the view is started: a binary that does not
	// exist would fail otherwise with exit 1.
	code := run([]string{"--view", "/nonexistent/edgeprobe", "--load-procs", "0"}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "--load-procs") {
		t.Fatalf("exit %d, stderr %q: want 2 and a message naming --load-procs", code, errb.String())
	}
}
