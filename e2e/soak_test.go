//go:build linux

package e2e

// The soak: fast settings for a long time, a site failing and healing
// every minute, and the footprint of every process compared between start and end.

import (
	"bufio"
	"flag"
	"fmt"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
	"github.com/edgeprobe/edgeprobe/internal/testnet"
)

var soakFor = flag.Duration("soak", 5*time.Minute, "how long TestSoak runs its failure cycles (make soak: 1h)")

const (
	soakSites    = 5 // s1..s5
	soakHosts    = 5 // per site, each serving ICMP, DNS, HTTP and TCP: 5 x 5 x 4 = 100 targets
	soakInterval = 100 * time.Millisecond
	soakConfirm  = 25 * time.Millisecond // re-probe spacing of a suspect target (below the interval)
	soakPeriod   = time.Minute           // one site fails and heals once a minute
	soakDark     = 20 * time.Second      // of which it is dark this long
	soakWarmUp   = 20 * time.Second      // after every site is up, before the start figures
	soakMetrics  = 9469                  // the agents' Prometheus exporter port
	// Footprint readings: soakReadings of each figure, soakReadingGap apart, at start and
	// at end. For goroutines and open files the smallest is compared: probes in flight
	// (and the push and scrape connections) add to some readings, a leak to every one.
	// For RSS, the median. An agent's goroutines are shown without its probe workers
	// (go_goroutines less edgeprobe_scheduler_workers, reading by reading, the median of
	// those), and compared in the quiet spells (see quiet); the pool itself must stay
	// within the blocking targets (soakBlocking).
	soakReadings   = 9
	soakReadingGap = 1500 * time.Millisecond
	soakBlocking   = soakSites * soakHosts * 3 // DNS, HTTP and TCP targets per agent
)

// Growth allowed from start to end, for every process (see TestSoak's comment for why).
const (
	soakGoroutineSlack = 10
	soakFDSlack        = 10
	soakRSSSlackKiB    = 8 << 10 // 8 MiB ...
	soakRSSSlackRatio  = 0.25    // ... or a quarter of the start figure, whichever is larger
)

var soakEdges = []string{"e0", "e1", "e2"}

// soakFailure is one site's failure: dark from down to heal.
type soakFailure struct {
	site       string
	down, heal time.Time
}

// footprint is one process's figures at one moment (of soakReadings readings: the
// smallest goroutine and file counts, the median RSS).
type footprint struct {
	goroutines, fds int // goroutines: an agent's without its probe workers
	workers         int // an agent's probe workers, the largest reading
	rssKiB          int64
	cpu             time.Duration // used so far (at the last reading)
	at              time.Time
	// An agent's scheduler figures (/metrics), at the last reading.
	lateness     map[string][]float64 // per event: samples, then samples later than each of soakLateBounds
	inconclusive float64
}

// soakLateBounds are the lateness bounds the report counts samples beyond (le values of
// edgeprobe_scheduler_lateness_seconds).
var soakLateBounds = []string{"0.005", "0.025", "0.1"}

// soakProc is a process whose footprint the soak follows.
type soakProc struct {
	name       string
	pid        int
	metrics    string // its /metrics URL
	node       string // where /metrics is read from
	agent      bool   // an agent: its probe workers are counted apart
	start, end footprint
	// An agent's config file and its text with every target, and its goroutines in the
	// quiet spells (ICMP targets only, its probe workers idled out) before and after.
	config, full         string
	quietStart, quietEnd int
	quietWorkers         int // workers left in the spells, the more of the two
}

// TestSoak runs three agents, each probing the same 100 targets (ICMP, DNS, HTTP and TCP
// on five hosts in each of five sites) every 100 ms, pushing to one view. After a
// warm-up, one site per minute goes dark for 20 s and comes back, for -soak (5 minutes
// under `go test`, an hour under `make soak`). It reads every process's goroutines (the
// Go collector's go_goroutines on its /metrics), open files (/proc/PID/fd) and resident
// set (VmRSS) at start and end, the CPU each used in between (of one core; not asserted),
// and the view's verdicts over its event stream.
//
// It asserts: every dark period gives a lost of that site and every healing an up; no
// lost for any other site, nor for the dark one outside its dark period (plus lostLate);
// no growth beyond soakGoroutineSlack goroutines, soakFDSlack files, and 8 MiB or 25% of
// resident memory; no agent with more probe workers than blocking targets; and none
// left with a worker once its blocking targets are gone. Why these: with every site up
// the number of files of a process is fixed but for the push and scrape connections
// open at the moment of reading, which the smallest of nine readings leaves out; a leak
// per failure cycle of more than two shows in five minutes, and any leak per probe (a
// thousand probes a second per agent) shows in seconds. An agent's goroutines are not
// fixed while it probes: its worker pool sits at the high-water mark of the last 10 s of
// bursts, and each HTTP probe in flight holds its connection's goroutines, which on a
// loaded machine is many at every reading. So they are compared in a quiet spell before
// the cycles and one after: every agent reloaded (SIGHUP) with its ICMP targets alone,
// read once its workers have idled out, when what is left is fixed; a leak stays, a pool
// goes. While probing, the pool never holds more workers than probes can be in flight,
// one per blocking target. Resident memory moves with the Go collector's pacing (the
// heap may grow to twice the live data before a collection) and with memory the runtime
// has not yet returned, so it gets a ratio; a leak of 100 bytes per probe is 30 MB in
// five minutes.
//
// The sites' servers are Debian's nginx and dnsmasq in the site namespaces
// (testnet.ServeDaemons), not servers in this process: those shared the test's CPU and
// answered up to a tenth of the 2250 requests a second more than 20 ms late (the agents'
// timeout floor), so healthy sites went degraded for the test's sake. Healthy sites'
// changes are reported, not asserted (a loaded machine makes agents late, and agents
// that know it count those timeouts as inconclusive; see agent/README.md, "Lateness"),
// with the load average and each agent's lateness beside them.
func TestSoak(t *testing.T) {
	t.Parallel()
	if *soakFor < soakPeriod {
		t.Fatalf("-soak %v: want at least one cycle (%v)", *soakFor, soakPeriod)
	}
	spec := testnet.Spec{Edges: soakEdges, Hosts: []string{"view"}}
	for i := range soakSites {
		spec.Sites = append(spec.Sites, testnet.SiteSpec{Name: "s" + strconv.Itoa(i+1), Hosts: soakHosts})
	}
	n := testnet.New(t, spec)
	testnet.RequireDaemons(t)
	var targets []siteTargets
	var siteNames []string
	for _, s := range spec.Sites {
		siteNames = append(siteNames, s.Name)
		svcs, err := n.ServeDaemons(s.Name)
		if err != nil {
			t.Fatal(err)
		}
		for _, svc := range svcs {
			targets = append(targets, siteTargets{Name: s.Name, Services: svc})
		}
	}
	loadStart := loadAverages()
	v := startView(t, n, "view", viewPort, "")
	pid, err := procByArg(v.config)
	if err != nil {
		t.Fatal(err)
	}
	procs := []*soakProc{{name: "view", pid: pid, metrics: v.metricsURL(), node: "view"}}
	var agents []*agentRun
	for _, e := range soakEdges {
		addr, err := n.Addr(e)
		if err != nil {
			t.Fatal(err)
		}
		listen := fmt.Sprintf("%s:%d", addr, soakMetrics)
		run, config := startAgentSpec(t, n, agentSpec{Name: e, Sites: targets, Push: []string{v.pushURL()},
			Interval: soakInterval, Confirm: soakConfirm, Metrics: listen})
		pid, err := procByArg(config)
		if err != nil {
			t.Fatal(err)
		}
		full, err := os.ReadFile(config)
		if err != nil {
			t.Fatal(err)
		}
		procs = append(procs, &soakProc{name: "agent " + e, pid: pid, metrics: "http://" + listen + "/metrics", node: e, agent: true,
			config: config, full: string(full)})
		agents = append(agents, run)
	}
	// Every site up, from every agent, fresh; an agent that says it is impaired (too late
	// to judge timeouts, docs/architecture.md, "Lateness") is no witness, which on a loaded
	// machine happens for seconds at a time.
	allUp := func(got map[string]siteVerdict) bool {
		for _, s := range siteNames {
			v := got[s]
			if v.State != "up" || len(v.Agents) != len(soakEdges) {
				return false
			}
			witnesses := 0
			for _, a := range v.Agents {
				if a.State != "up" || a.Stale {
					return false
				}
				if !a.Impaired {
					witnesses++
				}
			}
			if v.Witnesses != witnesses {
				return false
			}
		}
		return true
	}
	v.client.poll("every site up from all three agents", startTimeout, allUp, nil)
	quiet(t, n, procs, true)
	v.client.poll("every site up from all three agents after the quiet spell", startTimeout, allUp, nil)
	stream := followEvents(t, v)
	time.Sleep(soakWarmUp)
	for _, p := range procs {
		p.start = readFootprint(t, n, p)
	}

	var cycles []soakFailure
	began := time.Now()
	for i := 0; time.Since(began)+soakPeriod <= *soakFor+time.Second; i++ {
		c := soakFailure{site: siteNames[i%len(siteNames)], down: time.Now()}
		if err := n.BlackholeSite(c.site); err != nil {
			t.Fatal(err)
		}
		time.Sleep(soakDark)
		c.heal = time.Now()
		if err := n.HealSite(c.site); err != nil {
			t.Fatal(err)
		}
		cycles = append(cycles, c)
		time.Sleep(time.Until(c.down.Add(soakPeriod)))
		fmt.Printf("soak: cycle %d (site %s) done, %v of %v\n", i+1, c.site, time.Since(began).Round(time.Second), *soakFor)
	}
	v.client.poll("every site up at the end", changeTimeout, allUp, nil)
	for _, p := range procs {
		p.end = readFootprint(t, n, p)
	}
	events := stream.all()
	// The agents' own target changes: which targets of sites that were not dark went down,
	// and why (what a site degraded at the view stands on).
	downs := map[string]int{}
	impaired := map[string]int{} // agents' impaired changes, "agent from->to"
	for i, a := range agents {
		for _, e := range a.during(100 * time.Millisecond) {
			switch {
			case e.Type == "target" && e.To == "down" && !darkAt(cycles, e.Site, e.arrived):
				downs[e.Kind+" "+e.Reason]++
			case e.Type == "impaired":
				impaired[soakEdges[i]+" "+e.From+"->"+e.To]++
			}
		}
	}
	loadEnd := loadAverages()
	quiet(t, n, procs, false)

	// Verdicts: per cycle, the dark site's lost and up; anything else is wrong.
	expected, lostSeen, upSeen, falseLost, relapses := 2*len(cycles), 0, 0, 0, 0
	other := map[string]int{} // changes of sites that were not dark, by "from->to"
	claimed := make([]bool, len(events))
	var rows []string
	for i, c := range cycles {
		end := time.Now().Add(time.Hour)
		if i+1 < len(cycles) {
			end = cycles[i+1].down
		}
		var lostAt, upAt time.Duration
		for j, e := range events {
			if e.Site != c.site || e.arrived.Before(c.down) || !e.arrived.Before(end) {
				continue
			}
			claimed[j] = true
			switch {
			case e.To == "lost" && lostAt == 0 && e.arrived.Before(c.heal.Add(lostLate)):
				lostAt = e.arrived.Sub(c.down)
			case e.To == "lost" && e.arrived.Before(c.heal.Add(lostLate)):
				// Lost again while still dark (a witness dropped out and came back): not
				// false, but counted.
				relapses++
			case e.To == "lost":
				falseLost++
				t.Errorf("cycle %d: site %s lost after its healing: %s at +%v after the heal", i+1, c.site, e, e.arrived.Sub(c.heal))
			case e.To == "up" && upAt == 0 && !e.arrived.Before(c.heal):
				upAt = e.arrived.Sub(c.heal)
			case e.To == "up" && e.arrived.Before(c.heal):
				t.Errorf("cycle %d: site %s up while dark: %s at +%v", i+1, c.site, e, e.arrived.Sub(c.down))
			}
		}
		if lostAt > 0 {
			lostSeen++
		} else {
			t.Errorf("cycle %d: no lost while site %s was dark for %v", i+1, c.site, soakDark)
		}
		if upAt > 0 {
			upSeen++
		} else {
			t.Errorf("cycle %d: no up after site %s healed", i+1, c.site)
		}
		rows = append(rows, fmt.Sprintf("%d\t%s\t%s\t%s\t\n", i+1, c.site, fsecs(lostAt), fsecs(upAt)))
	}
	for j, e := range events {
		if claimed[j] || e.arrived.Before(cycles[0].down) {
			continue
		}
		other[e.From+"->"+e.To]++
		if e.To == "lost" {
			falseLost++
			t.Errorf("false lost: %s, at %v into the soak", e, e.arrived.Sub(began).Round(time.Millisecond))
		}
	}

	w := os.Stdout
	fmt.Fprintf(w, "\nsoak: %d targets per agent at %v, %d agents, one view, %d cycles of %v (a site dark %v), %v\n",
		soakSites*soakHosts*4, soakInterval, len(soakEdges), len(cycles), soakPeriod, soakDark, time.Since(began).Round(time.Second))
	fmt.Fprintf(w, "load average (1, 5, 15 min) at the start: %s; at the end: %s\n\n", loadStart, loadEnd)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "process\tgoroutines start\tend\tworkers start\tend\topen files start\tend\tRSS start\tend\tCPU between\t")
	for _, p := range procs {
		cpu := (p.end.cpu - p.start.cpu).Seconds() / p.end.at.Sub(p.start.at).Seconds()
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.1f MiB\t%.1f MiB\t%.1f%%\t\n", p.name, p.start.goroutines, p.end.goroutines,
			p.start.workers, p.end.workers, p.start.fds, p.end.fds, float64(p.start.rssKiB)/1024, float64(p.end.rssKiB)/1024, 100*cpu)
	}
	tw.Flush()
	fmt.Fprintln(w, "(an agent's goroutines are counted without its probe workers, which are the next columns)")
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "agent, quiet spell (ICMP only)\tgoroutines before\tafter\tworkers left\t")
	for _, p := range procs {
		if p.agent {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t\n", p.name, p.quietStart, p.quietEnd, p.quietWorkers)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "agent lateness, start to end\tevent\tsamples")
	for _, le := range soakLateBounds {
		fmt.Fprintf(tw, "\tlater than %s s", le)
	}
	fmt.Fprintln(tw, "\tinconclusive\t")
	for _, p := range procs {
		if !p.agent {
			continue
		}
		for i, ev := range soakLateEvents {
			name, incon := "", ""
			if i == 0 {
				name, incon = p.name, fmt.Sprintf("%.0f", p.end.inconclusive-p.start.inconclusive)
			}
			fmt.Fprintf(tw, "%s\t%s", name, ev)
			for j := range p.end.lateness[ev] {
				fmt.Fprintf(tw, "\t%.0f", p.end.lateness[ev][j]-p.start.lateness[ev][j])
			}
			fmt.Fprintf(tw, "\t%s\t\n", incon)
		}
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "cycle\tsite\tlost after dark\tup after heal\t")
	for _, r := range rows {
		fmt.Fprint(tw, r)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nverdicts expected %d, seen %d (lost %d, up %d); false lost %d; lost again while dark %d\n",
		expected, lostSeen+upSeen, lostSeen, upSeen, falseLost, relapses)
	fmt.Fprintf(w, "changes of sites that were not dark (allowed unless lost): %v\n", other)
	fmt.Fprintf(w, "targets of sites not dark that went down, by kind and reason (all agents): %v\n", downs)
	fmt.Fprintf(w, "agents turning impaired and back: %v\n", impaired)
	fmt.Fprintf(w, "allowed growth: +%d goroutines (agents': in the quiet spells; at most %d workers each), +%d open files, RSS +max(%d MiB, %.0f%%)\n",
		soakGoroutineSlack, soakBlocking, soakFDSlack, soakRSSSlackKiB>>10, soakRSSSlackRatio*100)

	// Growth, one subtest per figure so that a failure names what grew.
	t.Run("GoroutinesDoNotGrow", func(t *testing.T) {
		for _, p := range procs {
			switch {
			case p.agent && p.quietEnd > p.quietStart+soakGoroutineSlack:
				t.Errorf("%s: goroutines in the quiet spell grew from %d to %d (allowed +%d)", p.name, p.quietStart, p.quietEnd, soakGoroutineSlack)
			case !p.agent && p.end.goroutines > p.start.goroutines+soakGoroutineSlack:
				t.Errorf("%s: goroutines grew from %d to %d (allowed +%d)", p.name, p.start.goroutines, p.end.goroutines, soakGoroutineSlack)
			}
		}
	})
	t.Run("WorkersEndWhenIdle", func(t *testing.T) {
		for _, p := range procs {
			if p.agent && p.quietWorkers > 0 {
				t.Errorf("%s: %d probe workers left %v after its last blocking target went", p.name, p.quietWorkers, soakQuietAfter)
			}
		}
	})
	t.Run("WorkersWithinBlockingTargets", func(t *testing.T) {
		for _, p := range procs {
			if w := max(p.start.workers, p.end.workers); p.agent && w > soakBlocking {
				t.Errorf("%s: %d probe workers, more than its %d blocking targets can keep busy", p.name, w, soakBlocking)
			}
		}
	})
	t.Run("OpenFilesDoNotGrow", func(t *testing.T) {
		for _, p := range procs {
			if p.end.fds > p.start.fds+soakFDSlack {
				t.Errorf("%s: open files grew from %d to %d (allowed +%d)", p.name, p.start.fds, p.end.fds, soakFDSlack)
			}
		}
	})
	t.Run("RSSDoesNotGrow", func(t *testing.T) {
		for _, p := range procs {
			if limit := p.start.rssKiB + max(soakRSSSlackKiB, int64(float64(p.start.rssKiB)*soakRSSSlackRatio)); p.end.rssKiB > limit {
				t.Errorf("%s: RSS grew from %d KiB to %d KiB (limit %d KiB)", p.name, p.start.rssKiB, p.end.rssKiB, limit)
			}
		}
	})
}

// soakQuietAfter is how long a quiet spell waits before it reads: an idle probe worker
// ends after 10 s (agent/workers.go).
const soakQuietAfter = 12 * time.Second

// quiet gives every agent a spell of ICMP targets only (a reload, SIGHUP), waits until
// its probe workers have idled out, and reads its goroutines (the smallest of five
// readings) and workers; then, if back, it reloads every target. An agent's goroutines
// are then fixed (the scheduler, the ICMP engine's receivers, the exporters), so the
// spells before and after the cycles compare them on a loaded machine too: a pool at its
// high-water mark is gone, a leak is not.
func quiet(t *testing.T, n *testnet.Net, procs []*soakProc, back bool) {
	t.Helper()
	reload := func(p *soakProc, text string) {
		if err := os.WriteFile(p.config, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := syscall.Kill(p.pid, syscall.SIGHUP); err != nil {
			t.Fatalf("%s: SIGHUP: %v", p.name, err)
		}
	}
	for _, p := range procs {
		if p.agent {
			reload(p, icmpOnly(p.full))
		}
	}
	time.Sleep(soakQuietAfter)
	for _, p := range procs {
		if !p.agent {
			continue
		}
		client := n.HTTPClient(p.node)
		client.Timeout = 2 * time.Second
		var gs, ws []int
		for i := range 5 {
			if i > 0 {
				time.Sleep(time.Second)
			}
			page, err := promPage(client, p.metrics)
			if err != nil {
				t.Fatalf("%s: %v", p.name, err)
			}
			gs, ws = append(gs, int(page["go_goroutines"])), append(ws, int(page["edgeprobe_scheduler_workers"]))
		}
		if back {
			p.quietStart = slices.Min(gs)
		} else {
			p.quietEnd = slices.Min(gs)
		}
		p.quietWorkers = max(p.quietWorkers, slices.Min(ws))
	}
	if back {
		for _, p := range procs {
			if p.agent {
				reload(p, p.full)
			}
		}
	}
}

// icmpOnly is an agent config without its DNS, HTTP and TCP targets (as agentSpec.toml
// writes them: a table header and its indented keys).
func icmpOnly(config string) string {
	var b strings.Builder
	skipping := false
	for _, line := range strings.SplitAfter(config, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "[[site.dns]]" || trimmed == "[[site.http]]" || trimmed == "[[site.tcp]]":
			skipping = true
			continue
		case strings.HasPrefix(trimmed, "[") || trimmed == "":
			skipping = false
		}
		if !skipping {
			b.WriteString(line)
		}
	}
	return b.String()
}

// readFootprint takes soakReadings readings of a process.
func readFootprint(t *testing.T, n *testnet.Net, p *soakProc) footprint {
	t.Helper()
	client := n.HTTPClient(p.node)
	client.Timeout = 2 * time.Second
	var gs, fds, ws []int
	var rss []int64
	var page map[string]float64
	for i := range soakReadings {
		if i > 0 {
			time.Sleep(soakReadingGap)
		}
		var err error
		if page, err = promPage(client, p.metrics); err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		g, ok := page["go_goroutines"]
		if !ok {
			t.Fatalf("%s: no go_goroutines on %s", p.name, p.metrics)
		}
		workers := 0.0
		if p.agent {
			if workers, ok = page["edgeprobe_scheduler_workers"]; !ok {
				t.Fatalf("%s: no edgeprobe_scheduler_workers on %s", p.name, p.metrics)
			}
		}
		pr, err := testkit.ReadProc(p.pid)
		if err != nil {
			t.Fatalf("%s (pid %d): %v", p.name, p.pid, err)
		}
		gs, fds, rss, ws = append(gs, int(g-workers)), append(fds, pr.FDs), append(rss, pr.RSSKiB()), append(ws, int(workers))
	}
	pr, err := testkit.ReadProc(p.pid)
	if err != nil {
		t.Fatalf("%s (pid %d): %v", p.name, p.pid, err)
	}
	fp := footprint{goroutines: slices.Min(gs), fds: slices.Min(fds), workers: slices.Max(ws), rssKiB: testkit.Median(rss), cpu: pr.CPU, at: time.Now()}
	if p.agent {
		// The worker gauge comes from the agent's report of up to a second before the
		// page, so a reading just after a burst (workers made) or an idle-out (workers
		// gone) is off by the change; the median leaves those out as the smallest
		// leaves out probes in flight.
		fp.goroutines = testkit.Median(gs)
	}
	if p.agent {
		fp.inconclusive = page["edgeprobe_probe_inconclusive_total"]
		fp.lateness = map[string][]float64{}
		for _, ev := range soakLateEvents {
			key := func(le string) string {
				return `edgeprobe_scheduler_lateness_seconds_bucket{event="` + ev + `",le="` + le + `"}`
			}
			all := page[key("+Inf")]
			counts := []float64{all}
			for _, le := range soakLateBounds {
				counts = append(counts, all-page[key(le)])
			}
			fp.lateness[ev] = counts
		}
	}
	return fp
}

// soakLateEvents are the events of edgeprobe_scheduler_lateness_seconds.
var soakLateEvents = []string{"wakeup", "start", "timeout", "result"}

// promPage reads a /metrics page into series -> value, each series written as its name
// and its labels but agent, in the page's order: `name{a="x",b="y"}`, or `name` alone.
func promPage(client *http.Client, url string) (map[string]float64, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		i := strings.LastIndexByte(line, ' ')
		if i < 0 || strings.HasPrefix(line, "#") {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		series := agentLabel.ReplaceAllString(line[:i], "")
		series = strings.TrimSuffix(strings.Replace(series, ",}", "}", 1), "{}")
		out[series] = v
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("GET %s: %v", url, err)
	}
	return out, nil
}

var agentLabel = regexp.MustCompile(`agent="[^"]*",?`)

// loadAverages is /proc/loadavg's three load averages, for the report.
func loadAverages() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	f := strings.Fields(string(data))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

// darkAt says whether site was dark at t (or within lostLate after its healing).
func darkAt(cycles []soakFailure, site string, t time.Time) bool {
	for _, c := range cycles {
		if c.site == site && !t.Before(c.down) && t.Before(c.heal.Add(lostLate)) {
			return true
		}
	}
	return false
}
