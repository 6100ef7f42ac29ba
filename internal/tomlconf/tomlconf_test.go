package tomlconf

import (
	"reflect"
	"testing"
	"time"
)

func TestDurationText(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		wantErr string
	}{
		{"250ms", 250 * time.Millisecond, ""},
		{"1m30s", 90 * time.Second, ""},
		{"0s", 0, ""},
		{"5", 0, `bare number 5 is not a duration; use a string with a unit, e.g. "500ms"`},
		{"0.5", 0, `bare number 0.5 is not a duration; use a string with a unit, e.g. "500ms"`},
		{"5.000000", 0, `bare number 5.000000 is not a duration; use a string with a unit, e.g. "500ms"`},
		{"soon", 0, `"soon" is not a duration; use a number with a unit (ms, s, m, h), e.g. "500ms"`},
		{"", 0, `"" is not a duration; use a number with a unit (ms, s, m, h), e.g. "500ms"`},
	}
	for _, tt := range tests {
		var d Duration
		err := d.UnmarshalText([]byte(tt.in))
		if tt.wantErr != "" {
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("UnmarshalText(%q) error = %v, want %q", tt.in, err, tt.wantErr)
			}
			continue
		}
		if err != nil || d.Duration != tt.want {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", tt.in, d.Duration, err, tt.want)
			continue
		}
		text, _ := d.MarshalText()
		var back Duration
		if err := back.UnmarshalText(text); err != nil || back != d {
			t.Errorf("MarshalText(%v) = %q does not read back: %v, %v", d, text, back, err)
		}
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		err  Error
		want string
	}{
		{Error{File: "a.toml", Line: 3, Key: "agent.interval", Msg: "bad"}, "a.toml:3: agent.interval: bad"},
		{Error{File: "a.toml", Key: "site", Msg: "no sites"}, "a.toml: site: no sites"},
		{Error{File: "a.toml", Line: 7, Msg: "invalid TOML"}, "a.toml:7: invalid TOML"},
		{Error{Line: 2, Key: "k", Msg: "m"}, "line 2: k: m"},
		{Error{Msg: "m"}, "m"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("%+v.Error() = %q, want %q", tt.err, got, tt.want)
		}
	}
	list := &Errors{Errors: []Error{tests[0].err, tests[1].err}}
	if got, want := list.Error(), tests[0].want+"\n"+tests[1].want; got != want {
		t.Errorf("Errors.Error() = %q, want %q", got, want)
	}
}

// TestKeyLines checks the line scan on TOML that would mislead a line-by-line reader.
func TestKeyLines(t *testing.T) {
	src := `# [[site]] in a comment
title = """
[[site]]
x = 1
"""
lit = '''
[agent] '''''
"quoted.key" = 'v' # comment [x]
dotted . key = 1
arr = [
  1, # [[site]]
  { k = "}" },
]
[[site]]
name = "a"
labels = { region = "kr", "odd key" = "x" }
  [[site.icmp]]
  address = "198.51.100.11"
  [[site.icmp]]
  address = "198.51.100.12"
[site.extra]
[[site]]
  [[site.icmp]]
  address = "198.51.100.13"
[ agent . "sub" ]
`
	kl := scanKeyLines(src)
	tests := []struct {
		path string
		line int
	}{
		{"title", 2},
		{"lit", 6},
		{`"quoted.key"`, 8},
		{"dotted.key", 9},
		{"arr", 10},
		{"arr[0]", 11},
		{"arr[1].k", 12},
		{"site[0]", 14},
		{"site[0].name", 15},
		{"site[0].labels.region", 16},
		{`site[0].labels."odd key"`, 16},
		{"site[0].icmp[1].address", 20},
		{"site[0].icmp[1].timeout", 19}, // not written: its table
		{"site[0].extra", 21},
		{"site[1].icmp[0].address", 24},
		{"agent.sub", 25},
		{"nothing.here", 0},
	}
	for _, tt := range tests {
		if got := kl.lineOf(tt.path); got != tt.line {
			t.Errorf("lineOf(%s) = %d, want %d", tt.path, got, tt.line)
		}
	}
	if got, want := kl.plain["site.icmp.address"], []string{"site[0].icmp[0].address", "site[0].icmp[1].address", "site[1].icmp[0].address"}; !reflect.DeepEqual(got, want) {
		t.Errorf("plain[site.icmp.address] = %v, want %v", got, want)
	}
}
