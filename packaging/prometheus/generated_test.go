package prometheus_test

import (
	"bytes"
	"flag"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/edgeprobe/edgeprobe/packaging/prometheus"
)

var update = flag.Bool("update", false, "rewrite the generated rule files instead of comparing them")

// generated is one rule file that go generate writes, from the go:generate lines of
// rules.go: the one list of shipped files and their settings.
type generated struct {
	file   string
	params prometheus.Params
}

func generatedFiles(t *testing.T) []generated {
	t.Helper()
	src, err := os.ReadFile("rules.go")
	if err != nil {
		t.Fatal(err)
	}
	var out []generated
	for _, line := range strings.Split(string(src), "\n") {
		args, ok := strings.CutPrefix(line, "//go:generate go run ./rulesgen ")
		if !ok {
			continue
		}
		p, file, err := prometheus.ParseArgs(strings.Fields(args), io.Discard)
		if err != nil || file == "" {
			t.Fatalf("rules.go: %s: %v (want -o FILE)", line, err)
		}
		out = append(out, generated{file: file, params: p})
	}
	if len(out) == 0 {
		t.Fatal("rules.go has no go:generate lines")
	}
	return out
}

// TestRulesGenerated keeps the generated part of each shipped rule file equal to what
// the generator writes for its settings (go generate ./packaging/prometheus/, or go test
// -update, rewrites it); groups after prometheus.GeneratedEnd are left alone.
func TestRulesGenerated(t *testing.T) {
	for _, g := range generatedFiles(t) {
		want := prometheus.Generate(g.params)
		got, err := os.ReadFile(g.file)
		if *update {
			if err := os.WriteFile(g.file, prometheus.Merge(want, got), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(prometheus.GeneratedPart(got), want) {
			t.Errorf("%s differs from the generator's output for %+v: run go generate ./packaging/prometheus/", g.file, g.params)
		}
	}
}

func TestParseArgs(t *testing.T) {
	for _, tt := range []struct {
		args    []string
		want    prometheus.Params
		wantErr string
	}{
		{nil, prometheus.DefaultParams(), ""},
		{[]string{"-quorum", "3", "-quorum-by", "asn", "-max-up-fraction", "0.25"}, prometheus.Params{Quorum: 3, QuorumBy: "asn", MaxUpFraction: 0.25}, ""},
		{[]string{"-quorum", "majority"}, prometheus.Params{}, "no rule form"},
		{[]string{"-quorum", "0"}, prometheus.Params{}, "quorum"},
		{[]string{"-quorum-by", "not-a-label"}, prometheus.Params{}, "quorum_by"},
		{[]string{"-max-up-fraction", "1"}, prometheus.Params{}, "max_up_fraction"},
		{[]string{"-config", "x.toml", "-quorum", "3"}, prometheus.Params{}, "exclusive"},
	} {
		got, _, err := prometheus.ParseArgs(tt.args, io.Discard)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%v: error %v, want one naming %q", tt.args, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%v: %+v, %v; want %+v", tt.args, got, err, tt.want)
		}
	}
}
