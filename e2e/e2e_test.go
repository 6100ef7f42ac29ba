//go:build linux

package e2e

import (
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testnet"
)

// Generous bounds for things that take about a second: they only keep a broken agent
// from hanging the test. Speed is measured by the benchmark, not asserted here.
const (
	startTimeout  = 15 * time.Second
	changeTimeout = 10 * time.Second
	// watchFor is how long a test keeps listening for a verdict that must not come:
	// several probe intervals, far beyond fail_threshold confirm re-probes.
	watchFor = 4 * time.Second
)

// TestSiteBlackhole: a whole site goes dark and comes back. That site, and only that
// site, goes down and then up; the agent never calls itself isolated.
func TestSiteBlackhole(t *testing.T) {
	t.Parallel()
	n, sites := siteNet(t, twoSites)
	a := startAgent(t, n, agentConfig{Name: "e0", Sites: sites})
	a.waitUp(startTimeout, "a", "b")

	if err := n.BlackholeSite("a"); err != nil {
		t.Fatal(err)
	}
	down, read := a.waitFor("site a down", changeTimeout, siteIs("a", "down"))
	// Targets reach fail_threshold a confirm interval or so apart, so the site may pass
	// through degraded on its way down; it must never look up meanwhile.
	for _, e := range read {
		switch {
		case e.Type == "site" && e.Site == "a" && e.To != "degraded" && e.To != "down":
			t.Errorf("site a while it failed: %s", e)
		case e.Type == "site" && e.Site == "b", e.Type == "agent":
			t.Errorf("while site a failed: %s", e)
		}
	}
	if down.DetectSeconds <= 0 {
		t.Errorf("site a down line has no detection time: %s", down)
	}
	// Every target of the site was found down before the site was, each for want of an
	// answer: a dark site sends no refusal and no "unreachable" back.
	downTargets := map[string]bool{}
	for _, e := range read {
		if e.Type == "target" && e.Site == "a" && e.To == "down" {
			downTargets[e.Kind] = true
			if e.Reason != "timeout" {
				t.Errorf("target down for reason %q, want timeout: %s", e.Reason, e)
			}
		}
	}
	if len(downTargets) != 4 {
		t.Errorf("target kinds down before site a: %v, want icmp, dns, http and tcp", downTargets)
	}

	if err := n.HealSite("a"); err != nil {
		t.Fatal(err)
	}
	_, read = a.waitFor("site a up", changeTimeout, siteIs("a", "up"))
	for _, e := range read {
		switch {
		case e.Type == "site" && e.Site == "a" && e.To != "degraded" && e.To != "up":
			t.Errorf("site a while it healed: %s", e)
		case e.Type == "site" && e.Site == "b", e.Type == "agent":
			t.Errorf("while site a healed: %s", e)
		}
	}
}

// TestWebServerDropped: only one site's web server stops answering (its TCP port 80
// drops packets). The site is degraded, never down, and the other site is untouched.
func TestWebServerDropped(t *testing.T) {
	t.Parallel()
	n, sites := siteNet(t, twoSites)
	a := startAgent(t, n, agentConfig{Name: "e0", Sites: sites})
	a.waitUp(startTimeout, "a", "b")

	if err := n.DropTCPPort("a", testnet.HTTPPort); err != nil {
		t.Fatal(err)
	}
	_, read := a.waitFor("site a degraded", changeTimeout, siteIs("a", "degraded"))
	read = append(read, a.during(watchFor)...)
	for _, e := range read {
		switch {
		case e.Type == "site" && e.Site == "a" && e.To == "down":
			t.Errorf("site a reported down although only its web server fails: %s", e)
		case e.Type == "site" && e.Site == "b", e.Type == "agent":
			t.Errorf("while site a's web server failed: %s", e)
		// A lone timeout of another target on a busy machine makes it suspect, which is
		// fine; down is not.
		case e.Type == "target" && e.Kind != "http" && e.To == "down":
			t.Errorf("a target other than HTTP went down: %s", e)
		case e.Type == "target" && e.To == "down" && e.Reason != "timeout":
			t.Errorf("HTTP target down for reason %q, want timeout (packets dropped, no reset): %s", e.Reason, e)
		}
	}

	if err := n.AllowTCPPort("a", testnet.HTTPPort); err != nil {
		t.Fatal(err)
	}
	a.waitFor("site a up", changeTimeout, siteIs("a", "up"))
}

// TestUplinkCut: the agent's own uplink is cut, so every site fails at once. The agent
// must say it is isolated and must not report two lost sites.
//
// Precisely: from the cut until both sites are up again after healing, no site line may
// say down or degraded, and the agent's isolated line must come before any site line at
// all (the sites then turn unknown: the agent cannot see them). After healing the agent
// is ok again and both sites are up.
func TestUplinkCut(t *testing.T) {
	t.Parallel()
	n, sites := siteNet(t, twoSites)
	a := startAgent(t, n, agentConfig{Name: "e0", Sites: sites})
	a.waitUp(startTimeout, "a", "b")

	if err := n.CutUplink("e0"); err != nil {
		t.Fatal(err)
	}
	_, read := a.waitFor("agent isolated", changeTimeout, agentIs("isolated"))
	for _, e := range read {
		if e.Type == "site" {
			t.Errorf("site line before the agent said it is isolated: %s", e)
		}
	}
	cut := append(read, a.during(watchFor)...)

	if err := n.HealUplink("e0"); err != nil {
		t.Fatal(err)
	}
	_, read = a.waitFor("agent ok", changeTimeout, agentIs("ok"))
	healing := append(read, a.waitUp(changeTimeout, "a", "b")...)
	for _, e := range append(cut, healing...) {
		if siteWorse(e) {
			t.Errorf("site reported %s while the agent's own uplink was cut or healing: %s", e.To, e)
		}
	}
	if t.Failed() {
		t.Logf("events during the cut:\n%sevents while healing:\n%s", lines(cut), lines(healing))
	}
}

// TestControlTargets: with a control target configured (here a gateway-like host on the
// edges' side that answers ICMP), the control target alone decides isolation. Both sites
// failing at once while it answers is a double loss, reported as two sites down; the
// uplink cut fails the control target too, and the agent is isolated with no site down.
func TestControlTargets(t *testing.T) {
	t.Parallel()
	spec := twoSites
	spec.Hosts = []string{"gw"}
	n, sites := siteNet(t, spec)
	gw, err := n.Addr("gw")
	if err != nil {
		t.Fatal(err)
	}
	a := startAgent(t, n, agentConfig{Name: "e0", Sites: sites, Control: gw.String()})
	a.waitUp(startTimeout, "a", "b")

	for _, site := range []string{"a", "b"} {
		if err := n.BlackholeSite(site); err != nil {
			t.Fatal(err)
		}
	}
	var read []event
	pending := map[string]bool{"a": true, "b": true}
	for len(pending) > 0 {
		e, more := a.waitFor("sites a and b down", changeTimeout, func(e event) bool { return e.Type == "site" && e.To == "down" })
		delete(pending, e.Site)
		read = append(read, more...)
	}
	for _, e := range read {
		if e.Type == "agent" {
			t.Errorf("agent changed while its control target answered: %s", e)
		}
	}
	for _, site := range []string{"a", "b"} {
		if err := n.HealSite(site); err != nil {
			t.Fatal(err)
		}
	}
	a.waitUp(changeTimeout, "a", "b")

	if err := n.CutUplink("e0"); err != nil {
		t.Fatal(err)
	}
	_, read = a.waitFor("agent isolated", changeTimeout, agentIs("isolated"))
	read = append(read, a.during(watchFor)...)
	if err := n.HealUplink("e0"); err != nil {
		t.Fatal(err)
	}
	_, healing := a.waitFor("agent ok", changeTimeout, agentIs("ok"))
	healing = append(healing, a.waitUp(changeTimeout, "a", "b")...)
	for _, e := range append(read, healing...) {
		if siteWorse(e) {
			t.Errorf("site reported %s while the agent's own uplink was cut or healing: %s", e.To, e)
		}
	}
}
