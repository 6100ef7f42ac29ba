//go:build linux

package config_test

import (
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/edgeprobe/edgeprobe/agent"
	"github.com/edgeprobe/edgeprobe/config"
	"github.com/edgeprobe/edgeprobe/probes"
)

// TestBoundsAgree walks every integer bound of the probe specs (probes.Bounds) and proves
// that `edgeprobe check` (config.Parse), the prober (probes.New, given the spec as a
// program would build it) and the agent (agent.New on the checked config) accept and
// refuse the same values: just inside each end, and just outside.
func TestBoundsAgree(t *testing.T) {
	endpoint := map[probes.Kind]string{
		probes.KindICMP: `address = "127.0.0.1"`,
		probes.KindHTTP: `url = "http://127.0.0.1:1/"`,
	}
	for _, b := range probes.Bounds {
		var values []int64
		for _, v := range []int64{b.Min - 1, b.Min, b.Max, b.Max + 1} {
			// Skip the values past int64 and the far end of an open range.
			if (v == b.Min-1 && b.Min == math.MinInt64) || (v == b.Max+1 && b.Max == math.MaxInt64) || v == math.MaxInt64 {
				continue
			}
			values = append(values, v)
		}
		for _, v := range values {
			t.Run(fmt.Sprintf("%s.%s=%d", b.Kind, b.Key, v), func(t *testing.T) {
				inside := v >= b.Min && v <= b.Max
				target := fmt.Sprintf("%s\n%s = %d\n", endpoint[b.Kind], b.Key, v)
				file := fmt.Sprintf("[agent]\nname = \"e\"\nstate_dir = \"\"\n[[site]]\nname = \"s\"\n[[site.%s]]\n%s", b.Kind, target)
				cfg, err := config.Parse([]byte(file), "bounds.toml")
				if (err == nil) != inside {
					t.Fatalf("config.Parse: err = %v, want accepted = %v", err, inside)
				}
				if err != nil && !strings.Contains(err.Error(), "site[0]."+string(b.Kind)+"[0]."+b.Key+": ") {
					t.Errorf("config error does not name the key: %v", err)
				}

				spec := specOf(t, b.Kind, target)
				env := &probes.Env{}
				if b.Kind == probes.KindICMP {
					eng, err := probes.NewICMPEngine(probes.ICMPAuto)
					if err != nil {
						t.Fatal(err)
					}
					defer eng.Close()
					env.ICMP = eng
				}
				// In code a zero field means "the default" (nothing was written), so there a
				// zero below the bound is accepted; a file that writes the zero is refused.
				p, err := probes.New(b.Kind, spec, env)
				if (err == nil) != (inside || v == 0) {
					t.Fatalf("probes.New: err = %v, want accepted = %v", err, inside)
				}
				if p != nil {
					if c, ok := p.(interface{ Close() error }); ok {
						c.Close()
					}
				}
				if cfg == nil {
					return
				}
				a, err := agent.New(cfg, agent.Options{Env: env})
				if err != nil {
					t.Fatalf("agent.New refuses what check accepted: %v", err)
				}
				_ = a
			})
		}
	}
}

// specOf decodes one target's TOML into its probe spec, as a program building specs in
// code would have them, without the config's checks.
func specOf(t *testing.T, kind probes.Kind, text string) any {
	t.Helper()
	var spec any
	switch kind {
	case probes.KindICMP:
		spec = &probes.ICMPSpec{}
	case probes.KindHTTP:
		spec = &probes.HTTPSpec{}
	default:
		t.Fatalf("no spec type for kind %s", kind)
	}
	if _, err := toml.Decode(text, spec); err != nil {
		t.Fatal(err)
	}
	return spec
}
