package failover

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeprobe/edgeprobe/internal/tomlconf"
)

// parseActions decodes text as a view.toml holding an [actions] table and checks it as
// the view does (config in dir, state in stateDir); it returns the config and the
// problems found.
func parseActions(tb testing.TB, dir, text, stateDir string) (*Config, error) {
	tb.Helper()
	var wrap struct {
		Actions Config `toml:"actions"`
	}
	path := filepath.Join(dir, "view.toml")
	doc, ok := tomlconf.Decode([]byte(text), path, &wrap, tomlconf.Options{
		ZeroAllowed: func(p string) bool { return ZeroAllowed("actions", p) }})
	if !ok {
		return nil, doc.Err()
	}
	wrap.Actions.Check(doc, "actions", stateDir)
	return &wrap.Actions, doc.Err()
}

func mustParse(tb testing.TB, text string) *Config {
	tb.Helper()
	dir := tb.TempDir()
	cfg, err := parseActions(tb, dir, text, filepath.Join(dir, "state"))
	if err != nil {
		tb.Fatalf("config:\n%s\n%v", text, err)
	}
	return cfg
}

// dnsAction is an [[actions.dns]] entry for the test server.
func dnsAction(srv *namedServer, site, name, primary, failover, keyFile, extra string) string {
	return fmt.Sprintf(`
[[actions.dns]]
site = %q
server = %q
zone = "example.test."
name = %q
type = "A"
primary = [%q]
failover = [%q]
ttl = "5s"
tsig_key_file = %q
timeout = "2s"
%s
`, site, srv.Addr, name, primary, failover, keyFile, extra)
}

// fastRetries makes the retry tests quick.
const fastRetries = `
[actions]
retry_min = "20ms"
retry_max = "100ms"
`

// alertLog collects the alerts a controller raises.
type alertLog struct {
	mu     sync.Mutex
	alerts []Alert
}

func (l *alertLog) add(a Alert) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.alerts = append(l.alerts, a)
}

func (l *alertLog) kinds() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, a := range l.alerts {
		out = append(out, a.Kind)
	}
	return out
}

func (l *alertLog) count(kind string) int {
	n := 0
	for _, k := range l.kinds() {
		if k == kind {
			n++
		}
	}
	return n
}

func newController(tb testing.TB, cfg *Config) (*Controller, *alertLog) {
	tb.Helper()
	alerts := &alertLog{}
	c, err := New(cfg, Options{Alert: alerts.add})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	return c, alerts
}

// idle waits until no attempt or runbook is under way.
func (c *Controller) idle() { c.jobs.Wait() }

func verdict(state string, at time.Time) Verdict {
	v := Verdict{State: state, Since: at, Witnesses: 3, Time: at}
	if state == "lost" {
		v.Down = 3
	}
	return v
}

func siteState(c *Controller, site string) string {
	for _, s := range c.Status().Sites {
		if s.Site == site {
			return s.State
		}
	}
	return ""
}

// waitFor polls cond until it holds or the time is up; the bound is generous for a
// loaded 2-core machine, and the test states what must hold, not how fast.
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// decisions lists the audit decisions oldest first.
func decisions(c *Controller) []string {
	recs := c.Audit(MaxAuditLimit)
	out := make([]string, len(recs))
	for i := range recs {
		out[len(recs)-1-i] = recs[i].Decision
	}
	return out
}

// auditFile reads the audit log from disk, one record a line, failing on a line that
// does not parse.
func auditFile(tb testing.TB, dir string) []Record {
	tb.Helper()
	data, err := os.ReadFile(filepath.Join(dir, AuditFile))
	if err != nil {
		tb.Fatal(err)
	}
	recs := readTail(filepath.Join(dir, AuditFile))
	lines := strings.Count(string(data), "\n")
	if lines != len(recs) {
		tb.Fatalf("audit.log has %d lines but %d parse:\n%s", lines, len(recs), data)
	}
	return recs
}

// listenSilent holds a UDP port that reads and never answers: a server that is gone.
func listenSilent(tb testing.TB, port int) net.PacketConn {
	tb.Helper()
	pc, err := net.ListenPacket("udp4", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
		}
	}()
	return pc
}

func itoa(n int) string { return strconv.Itoa(n) }

// gather scrapes the controller's collector: "name{label="v",...}" -> value.
func gather(tb testing.TB, c *Controller) map[string]float64 {
	tb.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			key := mf.GetName()
			if len(labels) > 0 {
				key += "{" + strings.Join(labels, ",") + "}"
			}
			switch {
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}
