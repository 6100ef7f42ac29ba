//go:build benchrules

package prometheus_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/agent"
	"github.com/edgeprobe/edgeprobe/config"
	"github.com/edgeprobe/edgeprobe/exporters"
	"github.com/edgeprobe/edgeprobe/packaging/prometheus"
	"github.com/edgeprobe/edgeprobe/view"
)

// TestRuleLatency measures, over ruleTrials losses, the time from the failure (three
// agents' exporters told that the site is down; each pushes at once) to the view's lost
// verdict and to EdgeprobeSiteLost firing on Prometheus and on VictoriaMetrics+vmalert
// (each engine's alert API, polled every 10 ms), all fed the same pushes through the tee,
// rules evaluated every second. make bench-rules runs it; README.md keeps the medians.
func TestRuleLatency(t *testing.T) {
	const ruleTrials = 5
	st := stackFor(t, rulesFile)
	defer st.logTail(t)
	const prefix = "bench"
	site := prefix + "-pangyo"
	tt := newTee(t, view.DefaultConfig(), st.backends)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var agents []*exporters.RemoteWrite
	for i := range 3 {
		name := fmt.Sprintf("%s-e%d", prefix, i+1)
		rw, err := exporters.NewRemoteWrite(config.RemoteWriteConfig{URL: tt.URL(), PushInterval: config.Duration{Duration: time.Second}}, "", name, nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		agents = append(agents, rw)
		done := make(chan struct{})
		go func() {
			defer close(done)
			if err := rw.Run(ctx); err != nil {
				t.Errorf("agent %s: %v", name, err)
			}
		}()
		t.Cleanup(func() { cancel(); <-done })
		rw.Handle(agent.Event{Type: agent.EventAgent, Time: time.Now(), Agent: name, From: agent.AgentOK, To: agent.AgentOK})
	}
	set := func(from, to string) {
		for i, rw := range agents {
			name := fmt.Sprintf("%s-e%d", prefix, i+1)
			rw.Handle(agent.Event{Type: agent.EventSite, Time: time.Now(), Agent: name, Site: site, From: from, To: to})
		}
	}
	none := func() map[string]bool { return map[string]bool{} }
	set(agent.SiteUnknown, agent.SiteUp)
	if diffs := settle(tt, st, prefix, none, map[string]string{site: view.VerdictUp}, settleLimit); len(diffs) > 0 {
		t.Fatalf("not up at the start: %v", diffs)
	}
	key := prometheus.AlertLost + "/" + site
	results := map[string][]time.Duration{}
	names := []string{"view"}
	for _, b := range st.backends {
		names = append(names, b.name)
	}
	for trial := range ruleTrials {
		// Fail at a different point of the engines' second each time, deterministically.
		next := time.Now().Truncate(time.Second).Add(time.Second + time.Duration(trial)*time.Second/ruleTrials + 50*time.Millisecond)
		time.Sleep(time.Until(next))
		failed := time.Now()
		set(agent.SiteUp, agent.SiteDown)
		seen := map[string]time.Duration{}
		deadline := failed.Add(30 * time.Second)
		for len(seen) < len(names) && time.Now().Before(deadline) {
			if at, ok := tt.lastChange(site, view.VerdictLost, failed); ok && seen["view"] == 0 {
				seen["view"] = at.Sub(failed)
			}
			for _, b := range st.backends {
				if seen[b.name] != 0 {
					continue
				}
				firing, err := b.firing()
				if err != nil {
					t.Fatal(err)
				}
				if firing[key] {
					seen[b.name] = time.Since(failed)
				}
			}
			time.Sleep(10 * time.Millisecond)
		}
		var row []string
		for _, n := range names {
			d, ok := seen[n]
			if !ok {
				t.Fatalf("trial %d: %s did not declare the loss within 30 s", trial, n)
			}
			results[n] = append(results[n], d)
			row = append(row, fmt.Sprintf("%s %v", n, d.Round(time.Millisecond)))
		}
		t.Logf("trial %d: failure -> lost: %s", trial+1, strings.Join(row, ", "))
		set(agent.SiteDown, agent.SiteUp)
		if diffs := settle(tt, st, prefix, none, map[string]string{site: view.VerdictUp}, settleLimit); len(diffs) > 0 {
			t.Fatalf("trial %d: no recovery: %v", trial, diffs)
		}
	}
	for _, n := range names {
		ds := slices.Clone(results[n])
		slices.Sort(ds)
		t.Logf("%-16s failure -> lost over %d trials: median %v, min %v, max %v", n, len(ds), ds[len(ds)/2].Round(time.Millisecond), ds[0].Round(time.Millisecond), ds[len(ds)-1].Round(time.Millisecond))
	}
	if errs := tt.errors(); len(errs) > 0 {
		t.Errorf("pushes refused: %v", errs)
	}
}
