//go:build linux

package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"text/template"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testnet"
)

// binary is the edgeprobe executable built by TestMain.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "edgeprobe-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temporary directory:", err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "edgeprobe")
	// Built as the Makefile builds the shipped binary (static, stripped), so that what the
	// footprint benchmark measures is what a package installs.
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", binary, "github.com/edgeprobe/edgeprobe/cmd/edgeprobe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build ./cmd/edgeprobe: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// event is one JSON line of the stdout exporter (exporters/stdout.go), plus the moment
// this process read it.
type event struct {
	Time          time.Time `json:"time"`
	Type          string    `json:"type"` // probe, target, site, agent
	Agent         string    `json:"agent"`
	Site          string    `json:"site"`
	Target        string    `json:"target"`
	Kind          string    `json:"kind"`
	OK            *bool     `json:"ok"`
	Reason        string    `json:"reason"`
	From          string    `json:"from"`
	To            string    `json:"to"`
	DetectSeconds float64   `json:"detect_seconds"`

	arrived time.Time
	line    string
}

func (e event) String() string { return e.line }

// Predicates over events.
func siteIs(site, state string) func(event) bool {
	return func(e event) bool { return e.Type == "site" && e.Site == site && e.To == state }
}

func agentIs(state string) func(event) bool {
	return func(e event) bool { return e.Type == "agent" && e.To == state }
}

// siteWorse matches a site reported worse than up: what an agent must never
// say about sites it simply cannot reach.
func siteWorse(e event) bool {
	return e.Type == "site" && (e.To == "down" || e.To == "degraded")
}

// agentRun is one `edgeprobe agent` process inside the test network.
type agentRun struct {
	t    testing.TB
	proc *testnet.Proc
}

// siteTargets is what one site offers the agent: the services testnet.Serve started.
type siteTargets struct {
	Name string
	testnet.Services
}

// agentConfig is what startAgent writes into the agent's TOML file.
type agentConfig struct {
	Name    string // the agent's name and the edge it runs on
	Sites   []siteTargets
	Control string // optional: an address whose ICMP answers prove the agent's uplink
	Push    string // optional: a remote_write URL (the view's /api/v1/write)
}

var configTemplate = template.Must(template.New("agent.toml").Parse(`[agent]
name = "{{.Name}}"
state_dir = ""
{{range .Sites}}
[[site]]
name = "{{.Name}}"
  [[site.icmp]]
  address = "{{.Addr}}"
  [[site.dns]]
  server = "{{.DNS}}"
  query = "www.{{.Name}}.test."
  [[site.http]]
  url = "{{.URL}}"
  [[site.tcp]]
  address = "{{.TCP}}"
{{end}}
{{- with .Control}}
[control]
  [[control.icmp]]
  address = "{{.}}"
{{end}}
[exporters.stdout]
format = "json"
results = "changes"
{{- with .Push}}
[[exporters.remote_write]]
url = "{{.}}"
{{- end}}
`))

// startAgent writes a config with every site's four targets (ICMP, DNS, HTTP, TCP) at the
// default interval, timeout and thresholds, and runs the agent on the edge cfg.Name.
func startAgent(t testing.TB, n *testnet.Net, cfg agentConfig) *agentRun {
	t.Helper()
	var file strings.Builder
	if err := configTemplate.Execute(&file, cfg); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "agent.toml")
	if err := os.WriteFile(path, []byte(file.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := n.Start(cfg.Name, binary, "agent", "--config", path)
	if err != nil {
		t.Fatal(err)
	}
	a := &agentRun{t: t, proc: p}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("agent on %s: stopped with %v; stderr:\n%s", cfg.Name, err, p.Stderr())
		}
	})
	return a
}

// next returns the next event, or an error when none comes before the deadline or the
// agent exits.
func (a *agentRun) next(deadline time.Time) (event, error) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	l, err := a.proc.Next(ctx)
	if errors.Is(err, io.EOF) {
		return event{}, fmt.Errorf("agent exited (%v); stderr:\n%s", a.proc.Err(), a.proc.Stderr())
	}
	if err != nil {
		return event{}, err
	}
	var e event
	if err := json.Unmarshal([]byte(l.Text), &e); err != nil {
		return event{}, fmt.Errorf("agent stdout line %q is not JSON: %v", l.Text, err)
	}
	e.arrived, e.line = l.Time, l.Text
	return e, nil
}

// waitFor reads events until one matches want, and returns it with every event read on
// the way (want's included). It fails the test after timeout.
func (a *agentRun) waitFor(what string, timeout time.Duration, want func(event) bool) (event, []event) {
	a.t.Helper()
	e, read, err := a.until(time.Now().Add(timeout), want)
	if err != nil {
		a.t.Fatalf("waiting %v for %s: %v; events read meanwhile:\n%s", timeout, what, err, lines(read))
	}
	return e, read
}

// until reads events until one matches want or the deadline passes.
func (a *agentRun) until(deadline time.Time, want func(event) bool) (event, []event, error) {
	var read []event
	for {
		e, err := a.next(deadline)
		if err != nil {
			return event{}, read, err
		}
		read = append(read, e)
		if want(e) {
			return e, read, nil
		}
	}
}

// during returns every event that arrives within d.
func (a *agentRun) during(d time.Duration) []event {
	a.t.Helper()
	_, read, err := a.until(time.Now().Add(d), func(event) bool { return false })
	if !errors.Is(err, context.DeadlineExceeded) {
		a.t.Fatalf("reading agent events: %v", err)
	}
	return read
}

// waitUp waits until every named site has been reported up.
func (a *agentRun) waitUp(timeout time.Duration, sites ...string) []event {
	a.t.Helper()
	var all []event
	pending := map[string]bool{}
	for _, s := range sites {
		pending[s] = true
	}
	deadline := time.Now().Add(timeout)
	for len(pending) > 0 {
		e, read, err := a.until(deadline, func(e event) bool { return e.Type == "site" && pending[e.Site] })
		all = append(all, read...)
		if err != nil {
			a.t.Fatalf("waiting %v for sites %v to be up: %v; events:\n%s", timeout, sites, err, lines(all))
		}
		if e.To == "up" {
			delete(pending, e.Site)
		}
	}
	return all
}

func lines(es []event) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "  %s\n", e.line)
	}
	return b.String()
}

// twoSites is the usual network: sites a and b, and one edge, e0.
var twoSites = testnet.Spec{Sites: []testnet.SiteSpec{{Name: "a"}, {Name: "b"}}, Edges: []string{"e0"}}

// siteNet builds spec's network and starts all four services on the first host of every
// site.
func siteNet(t testing.TB, spec testnet.Spec) (*testnet.Net, []siteTargets) {
	t.Helper()
	n := testnet.New(t, spec)
	var sites []siteTargets
	for _, site := range spec.Sites {
		svc, err := n.Serve(site.Name, 0)
		if err != nil {
			t.Fatal(err)
		}
		sites = append(sites, siteTargets{Name: site.Name, Services: svc})
	}
	return n, sites
}
