package view

import (
	"encoding/json"
	"math"
	"testing"
	"time"
)

// FuzzSiteViewJSON: appendJSON writes every SiteView byte for byte as encoding/json
// does, whatever its strings, numbers and times.
func FuzzSiteViewJSON(f *testing.F) {
	f.Add("pangyo", "lost", int64(1_700_000_000_123_456_789), 3, 2, 1, "edge1", "down", "kr", true, false, 0.443, uint8(3))
	f.Add("a<b>&\"\\\n\t\x01\u2028\u2029\xff", "up", int64(0), -1, 0, 0, "é\x7f", "", "", false, true, 1e-7, uint8(0))
	f.Add("", "", int64(math.MinInt64), 0, 0, 0, "", "", "", true, true, 1e21, uint8(1))
	f.Add("x", "y", int64(math.MaxInt64), 1, 1, 1, "z", "w", "d", false, false, math.Inf(1), uint8(2))
	f.Fuzz(func(t *testing.T, name, state string, since int64, witnesses, down, up int, agent, agentState, domain string, isolated, stale bool, detect float64, flags uint8) {
		v := SiteView{Name: name, State: state, Since: time.Unix(0, since).In(time.FixedZone("", int(since%86400))),
			Witnesses: witnesses, Down: down, Up: up, Silenced: flags&1 != 0}
		if flags&2 != 0 && !math.IsNaN(detect) && !math.IsInf(detect, 0) { // the view's are finite
			v.DetectSeconds = &detect
		}
		if flags&4 == 0 {
			v.Agents = []AgentView{{Name: agent, State: agentState, Isolated: isolated, Impaired: stale != isolated, Stale: stale, Domain: domain}, {Name: name}}
		}
		if flags&8 != 0 {
			v.Agents = []AgentView{}
		}
		want, err := json.Marshal(&v)
		got := v.appendJSON(nil)
		if err != nil {
			if string(got) != "null" {
				t.Fatalf("encoding/json refuses %+v (%v); appendJSON wrote %s", v, err, got)
			}
			return
		}
		if string(got) != string(want) {
			t.Fatalf("appendJSON\n%s\nencoding/json\n%s", got, want)
		}
	})
}

// BenchmarkSitesJSON: one site of 10 agents written by appendJSON and by encoding/json.
func BenchmarkSitesJSON(b *testing.B) {
	detect := 0.443
	v := SiteView{Name: "g0042-site007", State: "up", Since: time.Now(), Witnesses: 10, Up: 10, DetectSeconds: &detect}
	for i := range 10 {
		v.Agents = append(v.Agents, AgentView{Name: "load" + string(rune('0'+i)), State: "up"})
	}
	b.Run("appendJSON", func(b *testing.B) {
		var buf []byte
		for b.Loop() {
			buf = v.appendJSON(buf[:0])
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		for b.Loop() {
			if _, err := json.Marshal(&v); err != nil {
				b.Fatal(err)
			}
		}
	})
}
