//go:build linux

package probes

import (
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	e, err := NewICMPEngine(ICMPAuto)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	env := &Env{ICMP: e}
	tests := []struct {
		kind Kind
		spec any
		want string // "" for success, else a substring of the error
	}{
		{KindICMP, ICMPSpec{Address: "127.0.0.1"}, ""},
		{KindICMP, &ICMPSpec{Address: "127.0.0.1"}, ""},
		{KindDNS, DNSSpec{Server: "127.0.0.1", Query: "example.test"}, ""},
		{KindHTTP, &HTTPSpec{URL: "http://127.0.0.1/"}, ""},
		{KindTCP, TCPSpec{Address: "127.0.0.1:22"}, ""},
		{"smtp", TCPSpec{Address: "127.0.0.1:25"}, `probe kind "smtp": unknown`},
		{KindTCP, HTTPSpec{URL: "http://127.0.0.1/"}, "tcp probe: spec is probes.HTTPSpec, want probes.TCPSpec"},
		{KindDNS, (*DNSSpec)(nil), "dns probe: spec is a nil *probes.DNSSpec"},
		{KindHTTP, nil, "http probe: spec is <nil>"},
	}
	for _, tt := range tests {
		p, err := New(tt.kind, tt.spec, env)
		if tt.want == "" {
			if err != nil || p == nil {
				t.Errorf("New(%s, %#v): %v", tt.kind, tt.spec, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tt.want) || p != nil {
			t.Errorf("New(%s, %#v): %v, %v; want error with %q", tt.kind, tt.spec, p, err, tt.want)
		}
	}
	for kind := range constructors {
		if !strings.Contains("icmp dns http tcp", string(kind)) {
			t.Errorf("constructor for %q, which the unknown-kind error does not list", kind)
		}
	}
}
