package prometheus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/agent"
	"github.com/edgeprobe/edgeprobe/config"
	"github.com/edgeprobe/edgeprobe/exporters"
	"github.com/edgeprobe/edgeprobe/probes"
)

// TestRemovedSeriesEnd: a reload that removes a target and a site makes the agent send
// their series once more with the staleness marker, so that the real Prometheus drops them
// from instant queries at once instead of after its 5-minute lookback; the certificate
// expiry alert on the removed target resolves with it.
func TestRemovedSeriesEnd(t *testing.T) {
	var prom *backend
	for _, b := range stackFor(t, "edgeprobe.rules.yml").backends {
		if b.name == "prometheus" {
			prom = b
		}
	}
	if prom == nil {
		t.Fatal("no prometheus backend in the stack")
	}
	ctx, cancel := context.WithCancel(context.Background())
	rw, err := exporters.NewRemoteWrite(config.RemoteWriteConfig{
		URL:          prom.write,
		PushInterval: config.Duration{Duration: 250 * time.Millisecond},
	}, "", "removed-e1", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := rw.Run(ctx); err != nil {
			t.Errorf("remote_write: %v", err)
		}
	}()
	t.Cleanup(func() { cancel(); <-done })

	const agentName = "removed-e1"
	now := time.Now()
	target := func(site, name string, kind probes.Kind, expiry time.Time) {
		rw.Handle(agent.Event{Type: agent.EventProbe, Time: now, Agent: agentName, Site: site, Target: name, Kind: kind,
			Result: probes.Result{Start: now, OK: true, RTT: time.Millisecond, CertExpiry: expiry}})
		rw.Handle(agent.Event{Type: agent.EventTarget, Time: now, Agent: agentName, Site: site, Target: name, Kind: kind,
			From: agent.TargetUnknown, To: agent.TargetUp})
	}
	target("rm-pangyo", "web", probes.KindHTTP, now.Add(3*24*time.Hour)) // expires in 3 days
	target("rm-pangyo", "gw", probes.KindICMP, time.Time{})
	target("rm-seoul", "dns", probes.KindDNS, time.Time{})
	for _, site := range []string{"rm-pangyo", "rm-seoul"} {
		rw.Handle(agent.Event{Type: agent.EventSite, Time: now, Agent: agentName, Site: site, From: agent.SiteUnknown, To: agent.SiteUp})
	}
	waitFor := func(what string, limit time.Duration, q string, want func(int) bool) {
		t.Helper()
		for deadline := time.Now().Add(limit); ; time.Sleep(20 * time.Millisecond) {
			v, err := prom.instant(q)
			if err == nil && want(len(v)) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %s gives %+v (%v) after %v", what, q, v, err, limit)
			}
		}
	}
	some := func(n int) bool { return n > 0 }
	none := func(n int) bool { return n == 0 }
	certAlert := `ALERTS{alertname="EdgeprobeCertificateExpiry",alertstate="firing",site="rm-pangyo",target="web"}`
	waitFor("web pushed", 30*time.Second, `probe_success{agent="removed-e1",target="web"}`, some)
	waitFor("seoul pushed", 30*time.Second, `edgeprobe_site_state{agent="removed-e1",site="rm-seoul"}`, some)
	waitFor("certificate alert", 30*time.Second, certAlert, some)
	if v, err := prom.instant(`probe_ssl_earliest_cert_expiry{agent="removed-e1",target="web"}`); err != nil || len(v) != 1 || v[0].Value[1] != fmt.Sprint(now.Add(3*24*time.Hour).Unix()) {
		t.Errorf("probe_ssl_earliest_cert_expiry of web: %+v (%v), want %d", v, err, now.Add(3*24*time.Hour).Unix())
	}

	removed := time.Now()
	for _, ev := range []agent.Event{
		{Type: agent.EventRemoved, Time: removed, Agent: agentName, Site: "rm-pangyo", Target: "web", Kind: probes.KindHTTP, From: agent.TargetUp, To: agent.Removed},
		{Type: agent.EventRemoved, Time: removed, Agent: agentName, Site: "rm-seoul", Target: "dns", Kind: probes.KindDNS, From: agent.TargetUp, To: agent.Removed},
		{Type: agent.EventRemoved, Time: removed, Agent: agentName, Site: "rm-seoul", From: agent.SiteUp, To: agent.Removed},
	} {
		rw.Handle(ev)
	}
	// Far inside the 5-minute lookback: without the markers these queries would still
	// return the last values. The pushed series (not the rules' records, which follow at
	// their next evaluation) go as soon as the push after the removal is in.
	pushed := `__name__!~".+:.+"`
	for _, q := range []string{`{agent="removed-e1",target="web",` + pushed + `}`, `{agent="removed-e1",site="rm-seoul",` + pushed + `}`,
		`probe_ssl_earliest_cert_expiry{agent="removed-e1"}`} {
		waitFor("removed series gone", 10*time.Second, q, none)
	}
	t.Logf("removed series absent from instant queries %v after the removal", time.Since(removed).Round(time.Millisecond))
	waitFor("the rules' records of the removed site gone", 10*time.Second, `{site="rm-seoul"}`, none)
	t.Logf("the rules' records of the removed site gone %v after the removal (1 s evaluation)", time.Since(removed).Round(time.Millisecond))
	if v, err := prom.instant(`probe_success{agent="removed-e1",target="gw"}`); err != nil || len(v) != 1 {
		t.Errorf("probe_success of gw (not removed): %+v (%v), want one series", v, err)
	}
	if v, err := prom.instant(`count(edgeprobe_site_state{agent="removed-e1",site="rm-pangyo"})`); err != nil || len(v) != 1 || v[0].Value[1] != "4" {
		t.Errorf("rm-pangyo's state set: %+v (%v), want its 4 series", v, err)
	}
	waitFor("certificate alert of the removed target resolved", 10*time.Second, certAlert, none)
	if s := rw.Stats(); s.Dropped[exporters.DropRejected] != 0 {
		t.Errorf("%+v: Prometheus rejected batches", s)
	}
}
