//go:build linux

package e2e

// The soak: fast settings for a long time, a site failing and healing
// every minute, and the footprint of every process compared between start and end.

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
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
	// For RSS, the median. The readings span 12 s, longer than an idle probe worker of the
	// agent lives (10 s), so workers left from a burst of slow probes are gone by the last.
	soakReadings   = 9
	soakReadingGap = 1500 * time.Millisecond
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
	goroutines, fds int
	rssKiB          int64
	cpu             time.Duration // used so far (at the last reading)
	at              time.Time
}

// soakProc is a process whose footprint the soak follows.
type soakProc struct {
	name       string
	pid        int
	metrics    string // its /metrics URL
	node       string // where /metrics is read from
	start, end footprint
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
// and no growth beyond soakGoroutineSlack goroutines, soakFDSlack files, and 8 MiB or 25%
// of resident memory. Why these: with every site up the number of goroutines and files of
// a process is fixed but for the probes in flight and the push and scrape connections
// open at the moment of reading, which the smallest of nine readings leaves out; a leak
// per failure cycle of more than two shows in five minutes, and any leak per probe (a
// thousand probes a second per agent) shows in seconds. Resident memory moves with the
// Go collector's pacing (the heap may grow to twice the live data before a collection)
// and with memory the runtime has not yet returned, so it gets a ratio; a leak of 100
// bytes per probe is 30 MB in five minutes.
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
	var targets []siteTargets
	var siteNames []string
	for _, s := range spec.Sites {
		siteNames = append(siteNames, s.Name)
		for h := range soakHosts {
			svc, err := n.Serve(s.Name, h)
			if err != nil {
				t.Fatal(err)
			}
			targets = append(targets, siteTargets{Name: s.Name, Services: svc})
		}
	}
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
		procs = append(procs, &soakProc{name: "agent " + e, pid: pid, metrics: "http://" + listen + "/metrics", node: e})
		agents = append(agents, run)
	}
	allUp := func(got map[string]siteVerdict) bool {
		for _, s := range siteNames {
			if got[s].State != "up" || got[s].Witnesses != len(soakEdges) {
				return false
			}
		}
		return true
	}
	v.client.poll("every site up with three witnesses", startTimeout, allUp, nil)
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
	for _, a := range agents {
		for _, e := range a.during(100 * time.Millisecond) {
			if e.Type == "target" && e.To == "down" && !darkAt(cycles, e.Site, e.arrived) {
				downs[e.Kind+" "+e.Reason]++
			}
		}
	}

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
	fmt.Fprintf(w, "\nsoak: %d targets per agent at %v, %d agents, one view, %d cycles of %v (a site dark %v), %v\n\n",
		soakSites*soakHosts*4, soakInterval, len(soakEdges), len(cycles), soakPeriod, soakDark, time.Since(began).Round(time.Second))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "process\tgoroutines start\tend\topen files start\tend\tRSS start\tend\tCPU between\t")
	for _, p := range procs {
		cpu := (p.end.cpu - p.start.cpu).Seconds() / p.end.at.Sub(p.start.at).Seconds()
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.1f MiB\t%.1f MiB\t%.1f%%\t\n", p.name, p.start.goroutines, p.end.goroutines,
			p.start.fds, p.end.fds, float64(p.start.rssKiB)/1024, float64(p.end.rssKiB)/1024, 100*cpu)
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
	fmt.Fprintf(w, "allowed growth: +%d goroutines, +%d open files, RSS +max(%d MiB, %.0f%%)\n",
		soakGoroutineSlack, soakFDSlack, soakRSSSlackKiB>>10, soakRSSSlackRatio*100)

	// Growth, one subtest per figure so that a failure names what grew.
	t.Run("GoroutinesDoNotGrow", func(t *testing.T) {
		for _, p := range procs {
			if p.end.goroutines > p.start.goroutines+soakGoroutineSlack {
				t.Errorf("%s: goroutines grew from %d to %d (allowed +%d)", p.name, p.start.goroutines, p.end.goroutines, soakGoroutineSlack)
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

// readFootprint takes soakReadings readings of a process.
func readFootprint(t *testing.T, n *testnet.Net, p *soakProc) footprint {
	t.Helper()
	client := n.HTTPClient(p.node)
	client.Timeout = 2 * time.Second
	var gs, fds []int
	var rss []int64
	for i := range soakReadings {
		if i > 0 {
			time.Sleep(soakReadingGap)
		}
		g, err := promValue(client, p.metrics, "go_goroutines")
		if err != nil {
			t.Fatalf("%s: %v", p.name, err)
		}
		pr, err := testkit.ReadProc(p.pid)
		if err != nil {
			t.Fatalf("%s (pid %d): %v", p.name, p.pid, err)
		}
		gs, fds, rss = append(gs, int(g)), append(fds, pr.FDs), append(rss, pr.RSSKiB())
	}
	pr, err := testkit.ReadProc(p.pid)
	if err != nil {
		t.Fatalf("%s (pid %d): %v", p.name, p.pid, err)
	}
	return footprint{goroutines: slices.Min(gs), fds: slices.Min(fds), rssKiB: testkit.Median(rss), cpu: pr.CPU, at: time.Now()}
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
