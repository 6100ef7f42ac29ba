//go:build linux

package e2e

// Helpers shared by the fault tests (faults_test.go), the soak (soak_test.go) and the
// clock-jump test (clock_test.go, build tag clockjump): agents with more settings than
// startAgent writes (several receivers, a /metrics endpoint, faster intervals), views
// started and restarted with their own config file, and a reader of a view's
// server-sent events.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
	"github.com/edgeprobe/edgeprobe/internal/testnet"
)

// agentSpec is what startAgentSpec writes into an agent's TOML file.
type agentSpec struct {
	Name         string            // the agent's name and the edge it runs on
	Sites        []siteTargets     // every service of every host listed here becomes a target
	Push         []string          // remote_write URLs, one exporter each
	Interval     time.Duration     // 0: the default (1s)
	Timeout      string            // "" : the default ("auto")
	Confirm      time.Duration     // confirm_interval; 0: the default (100ms)
	PushInterval time.Duration     // 0: the default (1s)
	Results      string            // stdout results: "changes" (default) or "all"
	Metrics      string            // listen address of the Prometheus exporter; "" for none
	Extra        string            // more TOML, written after the sites (more [[site]] tables)
	AgentExtra   string            // more [agent] keys, one per line
	Labels       map[string]string // the agent's own labels ([agent] labels)
	tokenFile    string            // set by startAgentSpec: holds viewToken
}

// viewToken is the bearer token every test view accepts and every test agent sends: a
// view listening beyond loopback refuses to start without one.
const viewToken = "e2e-faults-token"

// toml is the agent's configuration file.
func (s agentSpec) toml() string {
	var b strings.Builder
	fmt.Fprintf(&b, "[agent]\nname = %q\nstate_dir = \"\"\n", s.Name)
	if s.Interval > 0 {
		fmt.Fprintf(&b, "interval = %q\n", s.Interval.String())
	}
	if s.Confirm > 0 {
		fmt.Fprintf(&b, "confirm_interval = %q\n", s.Confirm.String())
	}
	if s.Timeout != "" {
		fmt.Fprintf(&b, "timeout = %q\n", s.Timeout)
	}
	b.WriteString(s.AgentExtra)
	if len(s.Labels) > 0 {
		var pairs []string
		for k, v := range s.Labels {
			pairs = append(pairs, fmt.Sprintf("%s = %q", k, v))
		}
		sort.Strings(pairs)
		fmt.Fprintf(&b, "labels = { %s }\n", strings.Join(pairs, ", "))
	}
	// Several hosts of one site arrive as several siteTargets with the same name: they
	// are written as one [[site]] with every host's four targets.
	order := []string{}
	bySite := map[string][]testnet.Services{}
	for _, st := range s.Sites {
		if _, ok := bySite[st.Name]; !ok {
			order = append(order, st.Name)
		}
		bySite[st.Name] = append(bySite[st.Name], st.Services)
	}
	for _, name := range order {
		fmt.Fprintf(&b, "\n[[site]]\nname = %q\n", name)
		for i, h := range bySite[name] {
			fmt.Fprintf(&b, "  [[site.icmp]]\n  address = %q\n", h.Addr.String())
			fmt.Fprintf(&b, "  [[site.dns]]\n  server = %q\n  query = \"www%d.%s.test.\"\n", h.DNS.String(), i, name)
			fmt.Fprintf(&b, "  [[site.http]]\n  url = %q\n", h.URL())
			fmt.Fprintf(&b, "  [[site.tcp]]\n  address = %q\n", h.TCP.String())
		}
	}
	b.WriteString(s.Extra)
	results := s.Results
	if results == "" {
		results = "changes"
	}
	fmt.Fprintf(&b, "\n[exporters.stdout]\nformat = \"json\"\nresults = %q\n", results)
	if s.Metrics != "" {
		fmt.Fprintf(&b, "\n[exporters.prometheus]\nlisten = %q\n", s.Metrics)
	}
	for _, url := range s.Push {
		fmt.Fprintf(&b, "\n[[exporters.remote_write]]\nurl = %q\nbearer_token_file = %q\n", url, s.tokenFile)
		if s.PushInterval > 0 {
			fmt.Fprintf(&b, "push_interval = %q\n", s.PushInterval.String())
		}
	}
	return b.String()
}

// startAgentSpec writes spec's config and runs the agent on the edge spec.Name until the
// test ends. The config path is unique, which is how procByArg finds the process.
func startAgentSpec(t testing.TB, n *testnet.Net, spec agentSpec) (*agentRun, string) {
	t.Helper()
	dir := t.TempDir()
	spec.tokenFile = filepath.Join(dir, "token")
	if err := os.WriteFile(spec.tokenFile, []byte(viewToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "agent-"+spec.Name+".toml")
	if err := os.WriteFile(path, []byte(spec.toml()), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := n.Start(spec.Name, binary, "agent", "--config", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Errorf("agent on %s: stopped with %v; stderr:\n%s", spec.Name, err, p.Stderr())
		}
	})
	return &agentRun{t: t, proc: p}, path
}

// viewRun is one `edgeprobe view` process on a host of the test network, with its own
// config file (so that the process can be found by it) and a client from the host's
// namespace.
type viewRun struct {
	t      testing.TB
	n      *testnet.Net
	node   string
	listen string // address:port inside the node's namespace
	config string // path of its config file
	proc   *testnet.Proc
	client viewClient
}

// startView runs a view on host node, listening on port, accepting viewToken, with extra
// top-level lines of view.toml (may be ""). Stop it, or let the test's cleanup do so.
func startView(t testing.TB, n *testnet.Net, node string, port int, extra string) *viewRun {
	t.Helper()
	addr, err := n.Addr(node)
	if err != nil {
		t.Fatal(err)
	}
	v := &viewRun{t: t, n: n, node: node, listen: netip.AddrPortFrom(addr, uint16(port)).String()}
	v.config = filepath.Join(t.TempDir(), "view-"+node+".toml")
	text := fmt.Sprintf("tokens = [%q]\n%s", viewToken, extra)
	if err := os.WriteFile(v.config, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	client := n.HTTPClient(node)
	client.Timeout = 2 * time.Second
	v.client = viewClient{t: t, http: client, url: "http://" + v.listen + "/api/v1/sites"}
	v.start()
	t.Cleanup(func() {
		if err := v.proc.Stop(); err != nil {
			t.Errorf("view on %s: stopped with %v; stderr:\n%s", node, err, v.proc.Stderr())
		}
	})
	return v
}

func (v *viewRun) start() {
	v.t.Helper()
	p, err := v.n.Start(v.node, binary, "view", "--listen", v.listen, "--config", v.config)
	if err != nil {
		v.t.Fatal(err)
	}
	v.proc = p
}

// restart stops the view (SIGTERM) and starts a new one at once; it returns the moment
// the new process was started.
func (v *viewRun) restart() time.Time {
	v.t.Helper()
	if err := v.proc.Stop(); err != nil {
		v.t.Fatalf("view on %s: stopping: %v; stderr:\n%s", v.node, err, v.proc.Stderr())
	}
	start := time.Now()
	v.start()
	return start
}

// pushURL is where agents push to this view.
func (v *viewRun) pushURL() string { return "http://" + v.listen + "/api/v1/write" }

// metricsURL is the view's own /metrics.
func (v *viewRun) metricsURL() string { return "http://" + v.listen + "/metrics" }

// sseEvent is one verdict change from a view's GET /api/v1/events, with the moment this
// process read it (monotonic clock).
type sseEvent struct {
	Site    string    `json:"site"`
	From    string    `json:"from"`
	To      string    `json:"to"`
	Time    time.Time `json:"time"`
	arrived time.Time
}

func (e sseEvent) String() string {
	return fmt.Sprintf("%s %s->%s", e.Site, e.From, e.To)
}

// sseStream follows a view's events (internal/testkit's client) until the test ends or
// the view goes away.
type sseStream struct {
	t      testing.TB
	events *testkit.Events
}

// followEvents connects to a view's event stream and returns once the view has
// subscribed it (its ": connected" comment arrived), so no later change is missed. The
// view may still be starting: the connection is retried for startTimeout.
func followEvents(t testing.TB, v *viewRun) *sseStream {
	t.Helper()
	client := v.n.HTTPClient(v.node) // no timeout: the stream lasts
	events := testkit.FollowEvents(t, "http://"+v.listen+"/api/v1/events", testkit.EventsOptions{Client: client, Retry: startTimeout})
	return &sseStream{t: t, events: events}
}

// all decodes every event read so far; one that is not a verdict change fails the test.
func (s *sseStream) all() []sseEvent {
	s.t.Helper()
	var out []sseEvent
	for _, e := range s.events.All() {
		ev := sseEvent{arrived: e.Arrived}
		if err := json.Unmarshal([]byte(e.Data), &ev); err != nil {
			s.t.Errorf("view event %q: %v", e.Data, err)
			continue
		}
		out = append(out, ev)
	}
	return out
}

// transitions lists a site's changes as "from->to", in order.
func transitions(events []sseEvent, site string) []string {
	var out []string
	for _, e := range events {
		if e.Site == site {
			out = append(out, e.From+"->"+e.To)
		}
	}
	return out
}

// milestones are the changes of transitions (from transitions) to lost and to up, in
// order, repeats merged: what a failover acts on.
func milestones(transitions []string) []string {
	var out []string
	for _, c := range transitions {
		_, to, _ := strings.Cut(c, "->")
		if (to == "lost" || to == "up") && (len(out) == 0 || out[len(out)-1] != to) {
			out = append(out, to)
		}
	}
	return out
}

// promValue reads the first sample of a metric (go_goroutines, say) from a /metrics page;
// its labels, if any (the agent adds its name to every series), are ignored.
func promValue(client *http.Client, url, name string) (float64, error) {
	resp, err := client.Get(url)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), name)
		if !ok || rest == "" || rest[0] != ' ' && rest[0] != '{' {
			continue
		}
		f := strings.Fields(rest)
		return strconv.ParseFloat(f[len(f)-1], 64)
	}
	if err := sc.Err(); err != nil {
		return 0, fmt.Errorf("GET %s: %v", url, err)
	}
	return 0, fmt.Errorf("GET %s: no sample %s", url, name)
}

// procByArg finds the process whose command line holds arg (a unique config path): the
// program `ip netns exec` turned into. It waits a little for a process just started.
func procByArg(arg string) (int, error) {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		entries, err := os.ReadDir("/proc")
		if err != nil {
			return 0, err
		}
		for _, e := range entries {
			pid, err := strconv.Atoi(e.Name())
			if err != nil {
				continue
			}
			cmdline, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
			if err != nil {
				continue
			}
			args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
			// ip(8) execs the program, so the pid of `ip netns exec ...` soon shows the
			// program's own argv; skip it while it is still ip.
			if len(args) > 0 && args[0] == binary {
				for _, a := range args {
					if a == arg {
						return pid, nil
					}
				}
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no %s process with argument %s", binary, arg)
		}
	}
}
