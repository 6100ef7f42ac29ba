//go:build linux && bench

package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
	"github.com/edgeprobe/edgeprobe/internal/testnet"
)

// Ports of the peer stack: blackbox_exporter on every edge, Prometheus beside the view.
const (
	blackboxPort   = 9115
	prometheusPort = 9090
)

const (
	// viewPoll and peerPoll are how often the verdicts are read: the view's JSON is cheap,
	// a Prometheus query less so, and both are far below the times being measured.
	viewPoll = 10 * time.Millisecond
	peerPoll = 50 * time.Millisecond
	// peerTimeout bounds the wait for the peer's alert, which is slower by design.
	peerTimeout = 30 * time.Second
)

// blackboxConfig gives the exporter one module per kind the agent probes. The timeout is
// the ceiling; the exporter also stays within the scrape timeout Prometheus announces.
const blackboxConfig = `modules:
  icmp:
    prober: icmp
    timeout: 1s
    icmp:
      preferred_ip_protocol: ip4
  http:
    prober: http
    timeout: 1s
    http:
      preferred_ip_protocol: ip4
  tcp:
    prober: tcp
    timeout: 1s
    tcp:
      preferred_ip_protocol: ip4
`

// peerRule is the peer's version of the view's quorum: a site is lost when at least two
// edges see every one of its probes fail, at once (for: 0s).
const peerRule = `groups:
- name: sites
  rules:
  - alert: SiteLost
    expr: count by (site) (max by (site, edge) (probe_success) == 0) >= 2
    for: 0s
`

// peerTarget is one probe the peer's Prometheus asks one edge's exporter for.
type peerTarget struct {
	target, module, site, edge string
	exporter                   netip.AddrPort
}

// prometheusConfig scrapes every edge's exporter for every site's ICMP, HTTP and TCP
// targets at 1 s, the interval the agent uses. The usual relabelling turns each static
// target into a /probe?target=...&module=... request to the right exporter.
func prometheusConfig(rules string, targets []peerTarget) string {
	var b strings.Builder
	fmt.Fprintf(&b, `global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files: [%q]
scrape_configs:
- job_name: blackbox
  metrics_path: /probe
  relabel_configs:
  - {source_labels: [__address__], target_label: __param_target}
  - {source_labels: [module], target_label: __param_module}
  - {source_labels: [exporter], target_label: __address__}
  static_configs:
`, rules)
	for _, t := range targets {
		fmt.Fprintf(&b, "  - targets: [%q]\n    labels: {module: %q, site: %q, edge: %q, exporter: %q}\n",
			t.target, t.module, t.site, t.edge, t.exporter.String())
	}
	return b.String()
}

// peer reads the peer's alerts from its Prometheus.
type peer struct {
	http *http.Client
	base string
}

// firing says whether SiteLost fires for a site, through the HTTP API's instant query.
func (p peer) firing(site string) (bool, error) {
	q := url.Values{"query": {fmt.Sprintf(`ALERTS{alertname="SiteLost",alertstate="firing",site=%q}`, site)}}
	resp, err := p.http.Get(p.base + "/api/v1/query?" + q.Encode())
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Data   struct {
			Result []json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return false, fmt.Errorf("prometheus query %s: %v", q.Encode(), err)
	}
	if body.Status != "success" {
		return false, fmt.Errorf("prometheus query %s: status %q", q.Encode(), body.Status)
	}
	return len(body.Data.Result) > 0, nil
}

// pollUntil calls read every period until it returns true, and returns the time from
// since. It gives up after timeout.
func pollUntil(since time.Time, period, timeout time.Duration, read func() (bool, error)) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	var lastErr error
	for time.Now().Before(deadline) {
		ok, err := read()
		if err == nil && ok {
			return time.Since(since), nil
		}
		lastErr = err
		time.Sleep(period)
	}
	return 0, fmt.Errorf("not within %v (last error %v)", timeout, lastErr)
}

// viewSample is one scenario's times at the view, with the verdicts that must not happen.
type viewSample struct {
	name      string
	took      []time.Duration
	falseLost int
	wrong     int // other verdicts that must not happen: a site not up while an agent restarts
}

// TestBenchDetectView measures detection at the view and, in the same
// run on the same network, the peer stack a new user would build instead: Debian's
// prometheus-blackbox-exporter on each edge and Debian's prometheus beside the view, both
// at 1 s. It only runs with -tags bench:
//
//	go test -tags bench -run TestBenchDetectView -v ./e2e -args -trials 10
//
// Three edges probe two sites and push to the view. Each trial waits a random fraction
// of the probe interval, so the fault lands anywhere in the schedules, then takes the
// time just before the fault and polls the view's /api/v1/sites every 10 ms and
// Prometheus' ALERTS every 50 ms from inside the view's namespace.
func TestBenchDetectView(t *testing.T) {
	if *trials < 1 {
		t.Fatalf("-trials %d: want at least 1", *trials)
	}
	for _, prog := range []string{"prometheus", "prometheus-blackbox-exporter"} {
		testkit.LookTool(t, "scripts/deps/netns.txt, make deps", prog)
	}
	edges := []string{"e0", "e1", "e2"}
	n, sites := siteNet(t, testnet.Spec{
		Sites: []testnet.SiteSpec{{Name: "a"}, {Name: "b"}},
		Edges: edges,
		Hosts: []string{"view"},
	})
	dir := t.TempDir()
	viewAddr, err := n.Addr("view")
	if err != nil {
		t.Fatal(err)
	}
	listen := netip.AddrPortFrom(viewAddr, viewPort).String()
	view := startProc(t, n, "view", binary, "view", "--listen", listen, "--allow-unauthenticated")

	bbFile := filepath.Join(dir, "blackbox.yml")
	writeFile(t, bbFile, blackboxConfig)
	var targets []peerTarget
	agents := map[string]*agentRun{}
	for _, e := range edges {
		addr, err := n.Addr(e)
		if err != nil {
			t.Fatal(err)
		}
		exporter := netip.AddrPortFrom(addr, blackboxPort)
		startProc(t, n, e, "prometheus-blackbox-exporter", "--config.file="+bbFile, "--web.listen-address="+exporter.String())
		for _, s := range sites {
			targets = append(targets,
				peerTarget{s.Addr.String(), "icmp", s.Name, e, exporter},
				peerTarget{s.URL(), "http", s.Name, e, exporter},
				peerTarget{s.TCP.String(), "tcp", s.Name, e, exporter})
		}
		agents[e] = startAgent(t, n, agentConfig{Name: e, Sites: sites, Push: "http://" + listen + "/api/v1/write"})
	}
	rules := filepath.Join(dir, "rules.yml")
	writeFile(t, rules, peerRule)
	promFile := filepath.Join(dir, "prometheus.yml")
	writeFile(t, promFile, prometheusConfig(rules, targets))
	promListen := netip.AddrPortFrom(viewAddr, prometheusPort).String()
	startProc(t, n, "view", "prometheus", "--config.file="+promFile, "--storage.tsdb.path="+filepath.Join(dir, "tsdb"),
		"--web.listen-address="+promListen, "--log.level=warn")

	client := n.HTTPClient("view")
	client.Timeout = time.Second
	v := viewClient{t: t, http: client, url: "http://" + listen + "/api/v1/sites"}
	p := peer{http: client, base: "http://" + promListen}

	allUp := func(got map[string]siteVerdict) bool {
		return states(map[string]string{"a": "up", "b": "up"})(got) && got["a"].Witnesses == 3 && got["b"].Witnesses == 3
	}
	v.poll("both sites up with three witnesses", startTimeout, allUp, nil)
	peerQuiet := func(since time.Time) time.Duration {
		t.Helper()
		d, err := pollUntil(since, peerPoll, peerTimeout, func() (bool, error) {
			f, err := p.firing("a")
			return !f, err
		})
		if err != nil {
			t.Fatalf("waiting for the peer's alert on a to clear: %v", err)
		}
		return d
	}
	// The peer is ready when its scrapes have answered for every target.
	if _, err := pollUntil(time.Now(), peerPoll, peerTimeout, func() (bool, error) {
		return p.scraped(len(targets))
	}); err != nil {
		t.Fatalf("waiting for Prometheus to scrape %d probes: %v", len(targets), err)
	}
	peerQuiet(time.Now())

	phase := func() { time.Sleep(rand.N(probeInterval)) }
	lost := &viewSample{name: "blackhole -> lost"}
	up := &viewSample{name: "heal -> up"}
	peerLost := &viewSample{name: "peer: blackhole -> alert"}
	peerUp := &viewSample{name: "peer: heal -> alert gone"}
	for i := 0; i < *trials; i++ {
		phase()
		start := time.Now()
		if err := n.BlackholeSite("a"); err != nil {
			t.Fatal(err)
		}
		peerDone := make(chan error, 1)
		go func() {
			d, err := pollUntil(start, peerPoll, peerTimeout, func() (bool, error) { return p.firing("a") })
			if err == nil {
				peerLost.took = append(peerLost.took, d)
			}
			peerDone <- err
		}()
		d, err := pollUntil(start, viewPoll, changeTimeout, func() (bool, error) {
			got, err := v.sites()
			if err != nil {
				return false, err
			}
			if got["b"].State == "lost" {
				lost.falseLost++
				t.Logf("trial %d: site b lost while only a is dark: %+v", i+1, got["b"])
			}
			return got["a"].State == "lost", nil
		})
		if err != nil {
			t.Fatalf("trial %d: waiting for site a lost at the view: %v", i+1, err)
		}
		lost.took = append(lost.took, d)
		if err := <-peerDone; err != nil {
			t.Fatalf("trial %d: waiting for the peer's alert on a: %v", i+1, err)
		}

		phase()
		start = time.Now()
		if err := n.HealSite("a"); err != nil {
			t.Fatal(err)
		}
		d, err = pollUntil(start, viewPoll, changeTimeout, func() (bool, error) {
			got, err := v.sites()
			return err == nil && allUp(got), err
		})
		if err != nil {
			t.Fatalf("trial %d: waiting for site a up at the view: %v", i+1, err)
		}
		up.took = append(up.took, d)
		peerUp.took = append(peerUp.took, peerQuiet(start))
		fmt.Printf("blackhole trial %d: lost after %v (peer %v), up after %v\n", i+1,
			lost.took[i].Round(time.Millisecond), peerLost.took[i].Round(time.Millisecond), up.took[i].Round(time.Millisecond))
	}

	web := &viewSample{name: "web only -> degraded"}
	for i := 0; i < *trials; i++ {
		phase()
		start := time.Now()
		if err := n.DropTCPPort("a", testnet.HTTPPort); err != nil {
			t.Fatal(err)
		}
		d, err := pollUntil(start, viewPoll, changeTimeout, func() (bool, error) {
			got, err := v.sites()
			if err != nil {
				return false, err
			}
			web.falseLost += countLost(t, got)
			return got["a"].State == "degraded", nil
		})
		if err != nil {
			t.Fatalf("web-only trial %d: waiting for site a degraded: %v", i+1, err)
		}
		web.took = append(web.took, d)
		web.falseLost += watchLost(t, v, 2*probeInterval)
		if err := n.AllowTCPPort("a", testnet.HTTPPort); err != nil {
			t.Fatal(err)
		}
		v.poll("both sites up after the web server is back", changeTimeout, allUp, nil)
		fmt.Printf("web-only trial %d: degraded after %v\n", i+1, d.Round(time.Millisecond))
	}

	// Two of the three edges lose their path to live site a: partitioned, never lost.
	part := &viewSample{name: "partial partition -> partitioned"}
	for i := 0; i < *trials; i++ {
		phase()
		start := time.Now()
		for _, e := range []string{"e0", "e1"} {
			if err := n.CutPath("a", e); err != nil {
				t.Fatal(err)
			}
		}
		d, err := pollUntil(start, viewPoll, changeTimeout, func() (bool, error) {
			got, err := v.sites()
			if err != nil {
				return false, err
			}
			part.falseLost += countLost(t, got)
			return got["a"].State == "partitioned", nil
		})
		if err != nil {
			t.Fatalf("partition trial %d: waiting for site a partitioned: %v", i+1, err)
		}
		part.took = append(part.took, d)
		part.falseLost += watchLost(t, v, 2*probeInterval)
		for _, e := range []string{"e0", "e1"} {
			if err := n.HealPath("a", e); err != nil {
				t.Fatal(err)
			}
		}
		v.poll("both sites up after the partition", changeTimeout, allUp, nil)
		fmt.Printf("partition trial %d: partitioned after %v\n", i+1, d.Round(time.Millisecond))
	}

	cut := &viewSample{name: "uplink cut -> agent out"}
	shown := map[string]int{}
	for i := 0; i < *trials; i++ {
		phase()
		start := time.Now()
		if err := n.CutUplink("e1"); err != nil {
			t.Fatal(err)
		}
		d, err := pollUntil(start, viewPoll, changeTimeout, func() (bool, error) {
			got, err := v.sites()
			if err != nil {
				return false, err
			}
			cut.falseLost += countLost(t, got)
			out, how := agentOut(got, "e1")
			if out {
				shown[how]++
			}
			return out, nil
		})
		if err != nil {
			t.Fatalf("uplink trial %d: waiting for e1 shown isolated or stale: %v", i+1, err)
		}
		cut.took = append(cut.took, d)
		cut.falseLost += watchLost(t, v, 2*probeInterval)
		if err := n.HealUplink("e1"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(changeTimeout)
		for {
			got, err := v.sites()
			if err == nil {
				cut.falseLost += countLost(t, got)
				if allUp(got) {
					break
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("uplink trial %d: e1 not a witness again within %v: %+v (%v)", i+1, changeTimeout, got, err)
			}
			time.Sleep(viewPoll)
		}
		fmt.Printf("uplink trial %d: e1 out after %v\n", i+1, d.Round(time.Millisecond))
	}

	// A restarted view knows nothing until the agents' next snapshots, one push interval
	// (1 s by default) apart: the verdicts must be back within two.
	restartView := &viewSample{name: "view restart -> verdicts"}
	for i := 0; i < *trials; i++ {
		phase()
		if err := view.Stop(); err != nil {
			t.Fatalf("view restart trial %d: stopping the view: %v; stderr:\n%s", i+1, err, view.Stderr())
		}
		start := time.Now()
		view = startProc(t, n, "view", binary, "view", "--listen", listen, "--allow-unauthenticated")
		d, err := pollUntil(start, viewPoll, changeTimeout, func() (bool, error) {
			got, err := v.sites()
			if err != nil {
				return false, err
			}
			restartView.falseLost += countLost(t, got)
			return allUp(got), nil
		})
		if err != nil {
			t.Fatalf("view restart trial %d: waiting for both sites up with three witnesses: %v", i+1, err)
		}
		restartView.took = append(restartView.took, d)
		fmt.Printf("view restart trial %d: verdicts back after %v\n", i+1, d.Round(time.Millisecond))
	}

	// A restarted agent starts with no state: the view must never show a site other than
	// up on its account, only one witness fewer for a moment.
	restartAgent := &viewSample{name: "agent restart -> witness"}
	for i := 0; i < *trials; i++ {
		phase()
		start := time.Now()
		if err := agents["e2"].proc.Stop(); err != nil {
			t.Fatalf("agent restart trial %d: stopping e2: %v; stderr:\n%s", i+1, err, agents["e2"].proc.Stderr())
		}
		agents["e2"] = startAgent(t, n, agentConfig{Name: "e2", Sites: sites, Push: "http://" + listen + "/api/v1/write"})
		d, err := pollUntil(start, viewPoll, changeTimeout, func() (bool, error) {
			got, err := v.sites()
			if err != nil {
				return false, err
			}
			restartAgent.falseLost += countLost(t, got)
			for _, s := range []string{"a", "b"} {
				if got[s].State != "up" {
					restartAgent.wrong++
					t.Logf("agent restart trial %d: site %s %s", i+1, s, got[s].State)
				}
			}
			return allUp(got), nil
		})
		if err != nil {
			t.Fatalf("agent restart trial %d: waiting for e2 a witness again: %v", i+1, err)
		}
		restartAgent.took = append(restartAgent.took, d)
		// The view keeps the stopped agent's last report until it goes stale, so the new
		// agent's first pushes may come after the sites read up again: keep watching.
		restartAgent.falseLost += watchLost(t, v, 3*probeInterval)
		fmt.Printf("agent restart trial %d: three witnesses after %v\n", i+1, d.Round(time.Millisecond))
	}

	viewReport(os.Stdout, lost, peerLost, up, peerUp, web, cut, restartView, restartAgent)
	fmt.Printf("uplink cut: e1 first shown out as %v (counts per trial)\n", shown)
	for _, s := range []*viewSample{lost, up, web, part, cut, restartView, restartAgent} {
		if s.falseLost > 0 || s.wrong > 0 {
			t.Errorf("%s: %d false lost readings, %d other wrong", s.name, s.falseLost, s.wrong)
		}
	}
}

// scraped says whether Prometheus has a probe_success sample for n probes.
func (p peer) scraped(n int) (bool, error) {
	q := url.Values{"query": {"count(probe_success)"}}
	resp, err := p.http.Get(p.base + "/api/v1/query?" + q.Encode())
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	var body struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return false, fmt.Errorf("prometheus query %s: %v", q.Encode(), err)
	}
	return len(body.Data.Result) == 1 && body.Data.Result[0].Value[1] == fmt.Sprint(n), nil
}

// agentOut says whether the view no longer counts an edge as a witness of site a, and
// how it shows that: isolated, stale, or left out of the list.
func agentOut(got map[string]siteVerdict, edge string) (bool, string) {
	for _, a := range got["a"].Agents {
		if a.Name == edge {
			switch {
			case a.Isolated:
				return true, "isolated"
			case a.Stale:
				return true, "stale"
			}
			return false, ""
		}
	}
	return got["a"].Witnesses == 2, "left out"
}

// countLost counts the sites a reading shows lost while no site is dark.
func countLost(t *testing.T, got map[string]siteVerdict) int {
	t.Helper()
	if err := neverLost(got); err != nil {
		t.Log(err)
		return 1
	}
	return 0
}

// watchLost reads the view for d and counts readings with a lost site.
func watchLost(t *testing.T, v viewClient, d time.Duration) int {
	t.Helper()
	wrong := 0
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(viewPoll) {
		if got, err := v.sites(); err == nil {
			wrong += countLost(t, got)
		}
	}
	return wrong
}

// startProc runs a program in a node's namespace until the test ends.
func startProc(t *testing.T, n *testnet.Net, node string, args ...string) *testnet.Proc {
	t.Helper()
	p, err := n.Start(node, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Stop(); err != nil {
			t.Logf("%s on %s: stopped with %v; stderr:\n%s", args[0], node, err, p.Stderr())
		}
	})
	return p
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func viewReport(w io.Writer, lost, peerLost *viewSample, rest ...*viewSample) {
	fmt.Fprintf(w, "\ndetection at the view, 3 edges, 2 sites, %d trials per scenario, interval %v\n\n", *trials, probeInterval)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\ttrials\tmedian\tmax\tpeer/edgeprobe\tfalse lost\tother wrong\t")
	row := func(s *viewSample, ratio string) {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%d\t\n", s.name, len(s.took), seconds(testkit.Median(s.took)), seconds(slices.Max(s.took)), ratio, s.falseLost, s.wrong)
	}
	row(lost, fmt.Sprintf("%.1fx", testkit.Median(peerLost.took).Seconds()/testkit.Median(lost.took).Seconds()))
	row(peerLost, "")
	for _, s := range rest {
		row(s, "")
	}
	tw.Flush()
	fmt.Fprintln(w, "\npeer: prometheus-blackbox-exporter on each edge, prometheus beside the view, scrape and\n"+
		"evaluation 1 s, SiteLost when >= 2 edges see every probe of the site fail (for: 0s).\n"+
		"ratio: peer median / edgeprobe median. false lost: readings with a site lost that is not dark.\n"+
		"other wrong: readings with a site not up while an agent restarts. view restart: from the\n"+
		"new view's start to both sites up with three witnesses; agent restart: from the stop.")
	fmt.Fprintln(w, "target: blackhole -> lost median <= 0.500 s, max <= 1.000 s; up median <= 1.500 s; ratio >= 4x")
}
