//go:build linux

package e2e

// Fault tests of the view: the view restarted, two views fed by the same agents,
// and a flapping site. Each runs three agents at the default settings (1 s interval and
// push interval) on the namespace network, pushing to `edgeprobe view` processes on
// hosts of that network.

import (
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testnet"
)

// pushInterval is the agents' default push interval: a restarted view must have its
// verdicts back within two of them.
const pushInterval = time.Second

var threeEdges = []string{"e0", "e1", "e2"}

// verdictSummary is what must agree between two readings of verdicts: per site its state,
// witness and down counts, and each agent's report (since and detect_seconds are left
// out: they carry the reading view's clock).
func verdictSummary(got map[string]siteVerdict) string {
	var names []string
	for name := range got {
		names = append(names, name)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, name := range names {
		s := got[name]
		fmt.Fprintf(&b, "%s=%s w%d d%d [", name, s.State, s.Witnesses, s.Down)
		for _, a := range s.Agents {
			fmt.Fprintf(&b, " %s:%s", a.Name, a.State)
			if a.Isolated {
				b.WriteString("/isolated")
			}
			if a.Stale {
				b.WriteString("/stale")
			}
		}
		b.WriteString(" ] ")
	}
	return strings.TrimSpace(b.String())
}

// allUpWith says both sites are up with n witnesses.
func allUpWith(n int) func(map[string]siteVerdict) bool {
	return func(got map[string]siteVerdict) bool {
		return got["a"].State == "up" && got["b"].State == "up" && got["a"].Witnesses == n && got["b"].Witnesses == n
	}
}

// stableSummary reads the verdicts until two readings 200 ms apart agree, and returns
// them; it fails the test if they do not settle within changeTimeout.
func stableSummary(t *testing.T, v viewClient) (string, map[string]siteVerdict) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(changeTimeout); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		got, err := v.sites()
		if err != nil {
			continue
		}
		s := verdictSummary(got)
		if s == last {
			return s, got
		}
		last = s
	}
	t.Fatalf("verdicts did not settle within %v: last %s", changeTimeout, last)
	return "", nil
}

// TestFaultViewRestart: the view is restarted twice, once with both sites up and once
// with site a lost. Each time the new view must have exactly the verdicts of the old one
// (state, witnesses, down and every agent's report) within two push intervals of its
// first answer, and meanwhile show each site only as unknown or as its old verdict.
func TestFaultViewRestart(t *testing.T) {
	t.Parallel()
	n, sites := siteNet(t, testnet.Spec{Sites: twoSites.Sites, Edges: threeEdges, Hosts: []string{"view"}})
	v := startView(t, n, "view", viewPort, "")
	// A fixed timeout rather than "auto": this test needs the verdicts to hold still
	// around each restart, and on a loaded machine the adaptive timeout's 20 ms floor
	// makes healthy targets time out and sites go degraded and back meanwhile (seen at
	// load 46 beside make test-loaded's busy loops). Detection speed is not measured here.
	for _, e := range threeEdges {
		startAgentSpec(t, n, agentSpec{Name: e, Sites: sites, Push: []string{v.pushURL()}, Timeout: "500ms"})
	}
	v.client.poll("both sites up with three witnesses", startTimeout, allUpWith(3), nil)

	restart := func(what string) {
		t.Helper()
		before, old := stableSummary(t, v.client)
		started := v.restart()
		var answered time.Time
		var readings []string
		deadline := started.Add(startTimeout)
		for {
			got, err := v.client.sites()
			now := time.Now()
			if err == nil {
				if answered.IsZero() {
					answered = now
				}
				s := verdictSummary(got)
				if len(readings) == 0 || readings[len(readings)-1] != s {
					readings = append(readings, s)
				}
				for name, sv := range got {
					if sv.State != "unknown" && sv.State != old[name].State {
						t.Errorf("%s: while rebuilding, site %s read %s (before the restart: %s)", what, name, sv.State, old[name].State)
					}
				}
				if s == before {
					break
				}
			}
			if now.After(deadline) {
				t.Fatalf("%s: the restarted view did not rebuild the verdicts within %v\nbefore: %s\nreadings:\n  %s",
					what, startTimeout, before, strings.Join(readings, "\n  "))
			}
			time.Sleep(20 * time.Millisecond)
		}
		rebuilt := time.Since(answered)
		t.Logf("%s: view answered %v after its start, verdicts rebuilt %v after its first answer (%d distinct readings): %s",
			what, answered.Sub(started).Round(time.Millisecond), rebuilt.Round(time.Millisecond), len(readings), before)
		if rebuilt > 2*pushInterval {
			t.Errorf("%s: verdicts rebuilt %v after the new view's first answer, want within two push intervals (%v)", what, rebuilt, 2*pushInterval)
		}
	}

	restart("both sites up")
	if err := n.BlackholeSite("a"); err != nil {
		t.Fatal(err)
	}
	// Restart once every agent reports a down: before that the agents' reports still move
	// (one degraded a moment longer than the others, on a loaded machine), and the new view
	// would rightly read the later reports, not the ones the old view last held.
	v.client.poll("site a lost, down at every witness", changeTimeout, func(got map[string]siteVerdict) bool {
		return got["a"].State == "lost" && got["a"].Down == len(threeEdges) && got["b"].State == "up"
	}, nil)
	restart("site a lost")
	if err := n.HealSite("a"); err != nil {
		t.Fatal(err)
	}
	v.client.poll("both sites up again", changeTimeout, allUpWith(3), func(got map[string]siteVerdict) error {
		if got["b"].State != "up" {
			return fmt.Errorf("site b is %s while only a healed", got["b"].State)
		}
		return nil
	})
}

// TestFaultTwoViews: two views fed by the same three agents (each agent has two
// [[exporters.remote_write]]) go through a loss and healing of site a, then of site b.
// At every settled point their /api/v1/sites agree, and over the whole run their event
// streams hold the same changes to lost and to up in the same order: what a failover
// acts on. The states in between (degraded, partitioned) last as long as pushes are
// under way, and each agent's pushes reach the two views at slightly different times,
// so one view may pass through partitioned where the other does not.
func TestFaultTwoViews(t *testing.T) {
	t.Parallel()
	n, sites := siteNet(t, testnet.Spec{Sites: twoSites.Sites, Edges: threeEdges, Hosts: []string{"v1", "v2"}})
	views := []*viewRun{startView(t, n, "v1", viewPort, ""), startView(t, n, "v2", viewPort, "")}
	streams := []*sseStream{followEvents(t, views[0]), followEvents(t, views[1])}
	for _, e := range threeEdges {
		startAgentSpec(t, n, agentSpec{Name: e, Sites: sites, Push: []string{views[0].pushURL(), views[1].pushURL()}})
	}

	// settled waits until both views read want, then compares their settled verdicts.
	checkpoints := 0
	settled := func(what string, want func(map[string]siteVerdict) bool) {
		t.Helper()
		for _, v := range views {
			v.client.poll(what+" at "+v.node, changeTimeout, want, nil)
		}
		s1, _ := stableSummary(t, views[0].client)
		s2, _ := stableSummary(t, views[1].client)
		if s1 != s2 {
			// A push in flight to one view only: read both again once more.
			time.Sleep(2 * pushInterval)
			s1, _ = stableSummary(t, views[0].client)
			s2, _ = stableSummary(t, views[1].client)
		}
		if s1 != s2 {
			t.Errorf("%s: the views disagree\n  v1: %s\n  v2: %s", what, s1, s2)
		}
		checkpoints++
	}

	settled("both sites up", allUpWith(3))
	for _, site := range []string{"a", "b"} {
		other := map[string]string{"a": "b", "b": "a"}[site]
		if err := n.BlackholeSite(site); err != nil {
			t.Fatal(err)
		}
		settled("site "+site+" lost", states(map[string]string{site: "lost", other: "up"}))
		if err := n.HealSite(site); err != nil {
			t.Fatal(err)
		}
		settled("site "+site+" healed", allUpWith(3))
	}

	e1, e2 := streams[0].all(), streams[1].all()
	var skew time.Duration
	for _, site := range []string{"a", "b"} {
		t1, t2 := transitions(e1, site), transitions(e2, site)
		t.Logf("site %s: v1 %v; v2 %v", site, t1, t2)
		m1, m2 := milestones(t1), milestones(t2)
		if !reflect.DeepEqual(m1, m2) {
			t.Errorf("site %s: the views' changes to lost and up differ\n  v1: %v\n  v2: %v", site, m1, m2)
		}
		if !slices.Contains(m1, "lost") {
			t.Errorf("site %s: no change to lost in v1's events %v", site, t1)
		}
	}
	// How far apart the two views announced the same change (arrival here).
	if len(e1) == len(e2) {
		for i := range e1 {
			d := e1[i].arrived.Sub(e2[i].arrived)
			skew = max(skew, d, -d)
		}
		t.Logf("%d verdict changes in each view, %d checkpoints compared; largest gap between the views announcing the same change: %v",
			len(e1), checkpoints, skew.Round(time.Millisecond))
	}
}

// Flapping: site a is dark for flapDown, then up for flapUp (plus up to a second),
// flapCycles times.
const (
	flapDown   = 3 * time.Second
	flapUp     = 3 * time.Second
	flapCycles = 10
	// lostLate is how long after the heal a lost verdict may still arrive: a decision
	// made on probes sent before the heal, announced a push later. Never reached in
	// practice (lost comes about 0.4 s after the fire).
	lostLate = 500 * time.Millisecond
	// upWithin is the usual time from the heal to the view's up: the first success of a
	// probe at the 1 s interval (a site's targets are spread over it, so one probe within
	// interval/4), the recovery probes of the rest of the site, and the next push. A
	// later up is logged, not an error: a loaded machine delays it (3.7 s was seen).
	upWithin = 2 * time.Second
)

// TestFaultFlappingSite: site a goes dark for 3 s and comes back for 3 to 4 s, ten times
// (a minute). Every dark period must give one lost at the view and every light period an
// up; a lost may only be announced during a dark period (or within lostLate after its
// end); site b is never lost (and on an idle machine never changes at all).
func TestFaultFlappingSite(t *testing.T) {
	t.Parallel()
	n, sites := siteNet(t, testnet.Spec{Sites: twoSites.Sites, Edges: threeEdges, Hosts: []string{"view"}})
	v := startView(t, n, "view", viewPort, "")
	for _, e := range threeEdges {
		startAgentSpec(t, n, agentSpec{Name: e, Sites: sites, Push: []string{v.pushURL()}})
	}
	v.client.poll("both sites up with three witnesses", startTimeout, allUpWith(3), nil)
	stream := followEvents(t, v)

	type cycle struct{ down, heal time.Time }
	var cycles []cycle
	for range flapCycles {
		c := cycle{down: time.Now()}
		if err := n.BlackholeSite("a"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(flapDown)
		c.heal = time.Now()
		if err := n.HealSite("a"); err != nil {
			t.Fatal(err)
		}
		cycles = append(cycles, c)
		// A random extra fraction of the probe interval, so that the fires land at
		// different points of the agents' schedules.
		time.Sleep(flapUp + rand.N(time.Second))
	}
	v.client.poll("both sites up after the flapping", changeTimeout, allUpWith(3), nil)
	time.Sleep(pushInterval)
	events := stream.all()

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "cycle\tlost after dark\tup after heal\tchanges of a in the cycle\t")
	lostSeen, upSeen := 0, 0
	for i, c := range cycles {
		end := time.Now().Add(time.Hour)
		if i+1 < len(cycles) {
			end = cycles[i+1].down
		}
		var lostAt, upAt time.Duration
		var changes []string
		for _, e := range events {
			if e.Site != "a" || e.arrived.Before(c.down) || !e.arrived.Before(end) {
				continue
			}
			changes = append(changes, e.From+"->"+e.To)
			switch {
			case e.To == "lost" && lostAt == 0:
				lostAt = e.arrived.Sub(c.down)
				if e.arrived.After(c.heal.Add(lostLate)) {
					t.Errorf("cycle %d: lost announced %v after the heal (dark %v)", i+1, e.arrived.Sub(c.heal), flapDown)
				}
			case e.To == "lost":
				t.Errorf("cycle %d: a second lost: %v", i+1, changes)
			case e.To == "up" && upAt == 0:
				if e.arrived.Before(c.heal) {
					t.Errorf("cycle %d: up announced %v before the heal", i+1, c.heal.Sub(e.arrived))
				}
				upAt = e.arrived.Sub(c.heal)
			}
		}
		if lostAt > 0 {
			lostSeen++
		} else {
			t.Errorf("cycle %d: no lost while site a was dark for %v; changes: %v", i+1, flapDown, changes)
		}
		switch {
		case upAt > 0 && upAt <= upWithin:
			upSeen++
		case upAt > 0:
			upSeen++
			t.Logf("cycle %d: up %v after the heal, later than the usual %v (a loaded machine?)", i+1, upAt, upWithin)
		default:
			t.Errorf("cycle %d: no up after the heal before the next dark period; changes: %v", i+1, changes)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t\n", i+1, fsecs(lostAt), fsecs(upAt), strings.Join(changes, " "))
	}
	tw.Flush()
	// Site b must never be lost. It may go degraded on a loaded machine: its agents run the
	// adaptive timeout, whose 20 ms floor a late probe misses, so that is logged.
	falseLost := 0
	var bChanges []string
	for _, e := range events {
		if e.Site == "b" {
			bChanges = append(bChanges, e.From+"->"+e.To)
			if e.To == "lost" {
				falseLost++
				t.Errorf("site b lost while only a flapped: %s", e)
			}
		}
	}
	if len(bChanges) > 0 {
		t.Logf("site b changed while only a flapped (never lost): %v", bChanges)
	}
	fmt.Printf("flapping site a, %v dark / %v-%v up x %d: lost seen %d of %d, up seen %d of %d, false lost (site b) %d\n",
		flapDown, flapUp, flapUp+time.Second, flapCycles, lostSeen, flapCycles, upSeen, flapCycles, falseLost)
}

// seconds formats a duration as seconds with milliseconds; zero (never seen) as "-".
func fsecs(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f s", d.Seconds())
}
