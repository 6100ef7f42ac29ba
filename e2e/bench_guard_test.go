//go:build linux && bench

package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// TestBenchDetectGuard measures what the lateness guard (docs/architecture.md, "Lateness")
// costs in detection time: two agents at the default settings, e0 with the guard (the
// default lateness_allowance) and e1 without it ("0s"), probe the same two sites from
// two edges, and every trial blackholes site a once for both, so that both meet the
// same fault on the same machine at the same moment. Per trial it waits a random
// fraction of the interval, blackholes site a, times each agent's "site a down" line
// from the moment before the port went down, heals, and times "site a up"; then it
// prints both agents' medians side by side. A wrong verdict (site b changing, an agent
// isolated) fails the run; times never do.
//
//	go test -tags bench -run '^TestBenchDetectGuard$' -v ./e2e/ -args -trials 10
//
// (make bench-detect-guard.)
func TestBenchDetectGuard(t *testing.T) {
	if *trials < 1 {
		t.Fatalf("-trials %d: want at least 1", *trials)
	}
	spec := twoSites
	spec.Edges = []string{"e0", "e1"}
	n, sites := siteNet(t, spec)
	agents := []*agentRun{}
	for _, e := range spec.Edges {
		extra := ""
		if e == "e1" {
			extra = "lateness_allowance = \"0s\"\n"
		}
		run, _ := startAgentSpec(t, n, agentSpec{Name: e, Sites: sites, AgentExtra: extra})
		run.waitUp(startTimeout, "a", "b")
		agents = append(agents, run)
	}
	names := []string{"with the guard (e0)", "without (e1)"}
	down := []*sample{{name: "blackhole -> down, " + names[0]}, {name: "blackhole -> down, " + names[1]}}
	up := []*sample{{name: "heal -> up, " + names[0]}, {name: "heal -> up, " + names[1]}}
	wrong := func(s *sample, es []event) {
		for _, e := range es {
			if e.Type == "site" && e.Site == "b" || e.To == "isolated" {
				s.wrong++
				t.Logf("%s: wrong verdict: %s", s.name, e)
			}
		}
	}
	for i := 0; i < *trials; i++ {
		time.Sleep(rand.N(probeInterval))
		start := time.Now()
		if err := n.BlackholeSite("a"); err != nil {
			t.Fatal(err)
		}
		for j, a := range agents {
			e, read := a.waitFor("site a down", changeTimeout, siteIs("a", "down"))
			down[j].add(e, start)
			wrong(down[j], read)
		}
		time.Sleep(rand.N(probeInterval))
		start = time.Now()
		if err := n.HealSite("a"); err != nil {
			t.Fatal(err)
		}
		for j, a := range agents {
			e, read := a.waitFor("site a up", changeTimeout, siteIs("a", "up"))
			up[j].add(e, start)
			wrong(up[j], read)
		}
		fmt.Printf("trial %d: down after %v / %v, up after %v / %v (with / without the guard)\n", i+1,
			down[0].took[i].Round(time.Millisecond), down[1].took[i].Round(time.Millisecond),
			up[0].took[i].Round(time.Millisecond), up[1].took[i].Round(time.Millisecond))
	}
	w := os.Stdout
	fmt.Fprintf(w, "\nthe lateness guard's cost, %d trials, interval %v, both agents on the same faults\n\n", *trials, probeInterval)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\ttrials\tmedian\tmin\tmax\tagent's median\twrong\t")
	for _, s := range []*sample{down[0], down[1], up[0], up[1]} {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%d\t\n", s.name, len(s.took), seconds(testkit.Median(s.took)),
			seconds(slices.Min(s.took)), seconds(slices.Max(s.took)), seconds(testkit.Median(s.agent)), s.wrong)
	}
	tw.Flush()
	for _, s := range append(down, up...) {
		if s.wrong > 0 {
			t.Errorf("%s: %d wrong verdicts", s.name, s.wrong)
		}
	}
}
