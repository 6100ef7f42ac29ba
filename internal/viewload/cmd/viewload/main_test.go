package main

import (
	"bytes"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
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

// A run against a view it starts reports the view's allocation and its collections in
// the window, and splits the sampled pushes by them without losing one. The view runs
// at GOGC=1 here, so that it collects many times even at this small load.
func TestReportsTheViewsCollections(t *testing.T) {
	if testing.Short() {
		testkit.SkipUnlessCI(t, "-short: builds edgeprobe and runs a view for some seconds")
	}
	bin := filepath.Join(t.TempDir(), "edgeprobe")
	build := exec.Command("go", "build", "-o", bin, "github.com/edgeprobe/edgeprobe/cmd/edgeprobe")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	t.Setenv("GOGC", "1") // read by the view's runtime; this process's has started
	var out, errb bytes.Buffer
	code := run([]string{"--view", bin, "--agents", "40", "--sites", "2", "--duration", "3s"}, &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, out.String(), errb.String())
	}
	report := out.String()
	number := func(pattern string) int {
		t.Helper()
		m := regexp.MustCompile(pattern).FindStringSubmatch(report)
		if m == nil {
			t.Fatalf("no %q in the report:\n%s", pattern, report)
		}
		n, err := strconv.Atoi(m[1])
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := number(`(?m)^view garbage collections\s+(\d+) \(`); n < 1 {
		t.Errorf("%d collections in the window at GOGC=1", n)
	}
	if m := regexp.MustCompile(`(?m)^view allocated\s+[\d.]+ MB/s, ([\d.]+) KB a push`).FindStringSubmatch(report); m == nil {
		t.Errorf("no allocation a push in the report:\n%s", report)
	} else if kb, err := strconv.ParseFloat(m[1], 64); err != nil || kb <= 0 {
		t.Errorf("allocated %q KB a push, want more than 0", m[1])
	}
	all := number(`(?m)^any push -> response \(1 in 10\).*\(n=(\d+)\)`)
	in := number(`(?m)^any push -> response \(1 in 10\).*\n  sent in a collection.*\(n=(\d+)\)`)
	other := number(`(?m)^any push -> response \(1 in 10\).*\n.*\n  sent at other times.*\(n=(\d+)\)`)
	if all == 0 || in+other != all {
		t.Errorf("pushes sampled %d, split into %d in a collection's shadow and %d not", all, in, other)
	}
}
