package main

import (
	"bytes"
	"strings"
	"testing"
)

// A --load-procs below one is refused before anything is started or pushed.
func TestLoadProcsRefused(t *testing.T) {
	var out, errb bytes.Buffer
	code := run([]string{"--url", "http://127.0.0.1:9", "--load-procs", "0"}, &out, &errb)
	if code != 2 || !strings.Contains(errb.String(), "--load-procs") {
		t.Fatalf("exit %d, stderr %q: want 2 and a message naming --load-procs", code, errb.String())
	}
}
