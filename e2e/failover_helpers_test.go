//go:build linux

package e2e

// Helpers of the failover tests (failover_test.go) and benchmark (bench_failover_test.go):
// a network with named on a host "dns" beside the view's host, views whose view.toml has
// [actions], and readers of the view's failover API (failover/README.md, "HTTP API").

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/failover"
	"github.com/edgeprobe/edgeprobe/internal/testnet"
)

// The zone named serves and the service name the views fail over: www points at site a
// in normal times and at site b while a is lost.
const (
	svcZone = "svc.test."
	svcName = "www.svc.test."
)

// adminToken is the admin token of every failover test view (hold, release, failback).
const adminToken = "e2e-admin-token"

// failoverTimeout bounds the wait for an action a loss or a recovery must bring: the
// verdict (about half a second), the update and its fsyncs, on a loaded 2-core machine.
const failoverTimeout = 20 * time.Second

// failoverNet is the failover tests' network: sites a and b, three edges, a host
// "view" for the views and a host "dns" where named serves svcZone.
type failoverNet struct {
	t        *testing.T // the test that owns the network: cleanups go there
	n        *testnet.Net
	sites    []siteTargets
	dns      *namedRun
	primary  string // www's A record in normal times: site a's address
	failover string // while a is lost: site b's address
	agents   map[string]*failoverAgent
}

type failoverAgent struct {
	run    *agentRun
	config string
}

// newFailoverNet builds the network and starts named with www, and each of more (names
// relative to svcZone), holding the primary record.
func newFailoverNet(t *testing.T, more ...string) *failoverNet {
	t.Helper()
	requireNamed(t)
	n, sites := siteNet(t, testnet.Spec{Sites: twoSites.Sites, Edges: threeEdges, Hosts: []string{"view", "dns"}})
	f := &failoverNet{t: t, n: n, sites: sites, primary: sites[0].Addr.String(), failover: sites[1].Addr.String(), agents: map[string]*failoverAgent{}}
	records := map[string][]string{"www": {f.primary}}
	for _, name := range more {
		records[name] = []string{f.primary}
	}
	f.dns = startNamed(t, n, "dns", "view", svcZone, records)
	return f
}

// actionSpec is a view's [actions] table with one [[actions.dns]] for site a.
type actionSpec struct {
	LostFor    string // default "0s"
	Failback   string // default "auto"
	RecoverFor string // default "3s"
	Name       string // the RRset's owner; default svcName
	KeyFile    string // default the key named grants updates
	RetryMin   string // default: the package's
	RetryMax   string
	Hook       string // a webhook URL, "" for none
}

// viewTOML is the rest of a failover view's view.toml after its tokens line.
func (f *failoverNet) viewTOML(stateDir string, s actionSpec) string {
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	var b strings.Builder
	fmt.Fprintf(&b, "state_dir = %q\nadmin_tokens = [%q]\n", stateDir, adminToken)
	if s.Hook != "" {
		fmt.Fprintf(&b, "\n[[notifiers.webhook]]\nurl = %q\n", s.Hook)
	}
	// max_failovers_per_hour is raised because the tests fail one site over several times.
	fmt.Fprintf(&b, "\n[actions]\nlost_for = %q\nmax_failovers_per_hour = 100\n", or(s.LostFor, "0s"))
	if s.RetryMin != "" {
		fmt.Fprintf(&b, "retry_min = %q\nretry_max = %q\n", s.RetryMin, s.RetryMax)
	}
	fmt.Fprintf(&b, `
[[actions.dns]]
site = "a"
server = %q
zone = %q
name = %q
type = "A"
primary = [%q]
failover = [%q]
ttl = "5s"
tsig_key_file = %q
failback = %q
recover_for = %q
`, f.dns.Addr, svcZone, or(s.Name, svcName), f.primary, f.failover, or(s.KeyFile, f.dns.KeyFile), or(s.Failback, failover.FailbackAuto), or(s.RecoverFor, "3s"))
	return b.String()
}

// failoverView is a view with [actions] and the readers of its failover API.
type failoverView struct {
	*viewRun
	stateDir  string
	tokenFile string // holds adminToken, for the CLI
}

func (f *failoverNet) startView(t *testing.T, port int, s actionSpec) *failoverView {
	t.Helper()
	dir := t.TempDir()
	v := &failoverView{stateDir: filepath.Join(dir, "state"), tokenFile: filepath.Join(dir, "admin-token")}
	if err := os.WriteFile(v.tokenFile, []byte(adminToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	v.viewRun = startView(t, f.n, "view", port, f.viewTOML(v.stateDir, s))
	return v
}

// reconfigure rewrites the view's [actions] (same state directory) and restarts it.
func (v *failoverView) reconfigure(f *failoverNet, s actionSpec) {
	v.t.Helper()
	text := fmt.Sprintf("tokens = [%q]\n%s", viewToken, f.viewTOML(v.stateDir, s))
	if err := os.WriteFile(v.config, []byte(text), 0o600); err != nil {
		v.t.Fatal(err)
	}
	v.restart()
}

// startAgents runs e0..e2, each pushing to every view, and remembers their configs.
func (f *failoverNet) startAgents(t *testing.T, views ...*failoverView) {
	t.Helper()
	var push []string
	for _, v := range views {
		push = append(push, v.pushURL())
	}
	for _, e := range threeEdges {
		run, path := startAgentSpec(t, f.n, agentSpec{Name: e, Sites: f.sites, Push: push})
		f.agents[e] = &failoverAgent{run: run, config: path}
	}
}

// restartAgent stops an agent (SIGTERM, waiting for its exit) and starts it again with
// the same config.
func (f *failoverNet) restartAgent(t *testing.T, edge string) {
	t.Helper()
	a := f.agents[edge]
	if err := a.run.proc.Stop(); err != nil {
		t.Fatalf("agent %s: stopping: %v; stderr:\n%s", edge, err, a.run.proc.Stderr())
	}
	p, err := f.n.Start(edge, binary, "agent", "--config", a.config)
	if err != nil {
		t.Fatal(err)
	}
	// startAgentSpec's cleanup stops the first process, which has ended: this one needs
	// its own, on the network's test (t may be a subtest, which ends sooner).
	f.t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("restarted agent on %s: stopped with %v; stderr:\n%s", edge, err, p.Stderr())
		}
	})
	a.run = &agentRun{t: f.t, proc: p}
}

func (v *failoverView) get(path string, into any) error {
	resp, err := v.client.http.Get("http://" + v.listen + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(into)
}

// status is GET /api/v1/failover.
func (v *failoverView) status() (failover.Status, error) {
	var st failover.Status
	return st, v.get(failover.PathStatus, &st)
}

// audit is every record the view keeps (up to failover.MaxAuditLimit), oldest first.
func (v *failoverView) audit() []failover.Record {
	v.t.Helper()
	var body struct{ Records []failover.Record }
	var err error
	for try := 0; try < 50; try++ { // the view may be restarting
		if err = v.get(failover.PathAudit+"?limit="+strconv.Itoa(failover.MaxAuditLimit), &body); err == nil {
			recs := body.Records
			for i, j := 0, len(recs)-1; i < j; i, j = i+1, j-1 {
				recs[i], recs[j] = recs[j], recs[i]
			}
			return recs
		}
		time.Sleep(100 * time.Millisecond)
	}
	v.t.Fatalf("reading the audit log of the view on %s: %v", v.listen, err)
	return nil
}

// siteStatus is the failover state of site a (every test's actions are for a).
func (v *failoverView) siteStatus(site string) (failover.SiteStatus, error) {
	st, err := v.status()
	if err != nil {
		return failover.SiteStatus{}, err
	}
	for _, s := range st.Sites {
		if s.Site == site {
			return s, nil
		}
	}
	return failover.SiteStatus{}, fmt.Errorf("no site %s in the failover status", site)
}

// waitState waits until the view's failover shows site in state.
func (v *failoverView) waitState(site, state string, timeout time.Duration) {
	v.t.Helper()
	deadline := time.Now().Add(timeout)
	var last failover.SiteStatus
	var err error
	for {
		if last, err = v.siteStatus(site); err == nil && last.State == state {
			return
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("waiting %v for the view on %s to show site %s %s: last %+v (error %v)", timeout, v.listen, site, state, last, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitAudit waits until the view's audit log holds a record for which match is true,
// and returns the records then (oldest first).
func (v *failoverView) waitAudit(what string, timeout time.Duration, match func([]failover.Record) bool) []failover.Record {
	v.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		recs := v.audit()
		if match(recs) {
			return recs
		}
		if time.Now().After(deadline) {
			v.t.Fatalf("waiting %v for %s in the audit log of the view on %s; it holds:\n%s", timeout, what, v.listen, describeAudit(recs))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// describeAudit lists records one a line for a failure message.
func describeAudit(recs []failover.Record) string {
	if len(recs) == 0 {
		return "  (nothing)\n"
	}
	var b strings.Builder
	for _, r := range recs {
		fmt.Fprintf(&b, "  %s %s %s/%s who=%q rcode=%s attempt=%d reason=%q error=%q", r.Time.Format("15:04:05.000"), r.Site,
			r.Decision, r.Action, r.Who, r.Rcode, r.Attempt, r.Reason, r.Error)
		if r.DNS != nil {
			fmt.Fprintf(&b, " dns %s %v->%v found=%v", r.DNS.Name, r.DNS.From, r.DNS.To, r.DNS.Found)
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// decisions lists the decision/action of records, in order.
func decisions(recs []failover.Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.Decision+"/"+r.Action)
	}
	return out
}

// count counts the records with the given decision.
func count(recs []failover.Record, decision string) int {
	n := 0
	for _, r := range recs {
		if r.Decision == decision {
			n++
		}
	}
	return n
}

// dnsSteps are the records of DNS attempts: each one an update sent (or the last look of
// one given up).
func dnsSteps(recs []failover.Record) []failover.Record {
	var out []failover.Record
	for _, r := range recs {
		if r.DNS != nil {
			out = append(out, r)
		}
	}
	return out
}

// cli runs `edgeprobe failover ARGS --view URL --token-file F` inside the view's
// namespace and returns its output.
func (v *failoverView) cli(args ...string) (string, error) {
	args = append([]string{binary, "failover"}, args...)
	args = append(args, "--view", "http://"+v.listen, "--token-file", v.tokenFile)
	out, err := v.n.Exec(v.node, args...)
	return string(out), err
}

func (v *failoverView) mustCLI(args ...string) string {
	v.t.Helper()
	out, err := v.cli(args...)
	if err != nil {
		v.t.Fatalf("edgeprobe failover %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// metric reads one sample of the view's /metrics, named exactly as the exposition
// format writes it (name{label="value",...}).
func (v *failoverView) metric(series string) (float64, error) {
	resp, err := v.client.http.Get(v.metricsURL())
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(rest), 64)
		}
	}
	return 0, fmt.Errorf("%s: no sample %s", v.metricsURL(), series)
}

// actionsSeries names one edgeprobe_view_actions_total sample.
func actionsSeries(action, result string) string {
	return fmt.Sprintf("%s{action=%q,result=%q}", failover.MetricActions, action, result)
}
