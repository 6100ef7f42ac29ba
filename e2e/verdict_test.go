//go:build linux

package e2e

// The verdict a failover may act on (docs/architecture.md, "Verdicts at the view" and "Acting
// on a verdict"), with the real binaries on the namespace network: three edges in two
// regions push to two views, one counting witnesses by agent and one by region. A
// partial partition (two edges cut from a live site) is partitioned at the first view and
// degraded at the second, never lost; a whole region cut off is never lost by region; a
// real blackhole is lost at both; a site flapping faster than lost_for notifies nothing;
// a silenced site's loss notifies nothing; an event stream resumed with Last-Event-ID
// gets exactly what it missed.

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testnet"
)

// hookSink is a webhook receiver inside a namespace of the test network: it counts the
// notifications of each alert and status per site.
type hookSink struct {
	mu   sync.Mutex
	got  []string // "site status alert", in arrival order
	addr string
}

func startHookSink(t *testing.T, n *testnet.Net, node string, port int) *hookSink {
	t.Helper()
	addr, err := n.Addr(node)
	if err != nil {
		t.Fatal(err)
	}
	h := &hookSink{addr: netip.AddrPortFrom(addr, uint16(port)).String()}
	var ln net.Listener
	if err := n.Do(node, func() (err error) {
		ln, err = net.Listen("tcp", h.addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p struct{ Site, Status, Alert string }
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.got = append(h.got, p.Site+" "+p.Status+" "+p.Alert)
		h.mu.Unlock()
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return h
}

func (h *hookSink) url() string { return "http://" + h.addr + "/hook" }

func (h *hookSink) all() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.got...)
}

// neverState fails a reading in which a site has verdict state.
func neverState(state string, sites ...string) func(map[string]siteVerdict) error {
	return func(got map[string]siteVerdict) error {
		for _, s := range sites {
			if got[s].State == state {
				return fmt.Errorf("site %s %s: %+v", s, state, got[s])
			}
		}
		return nil
	}
}

func TestVerdictSafety(t *testing.T) {
	t.Parallel()
	edges := []string{"e0", "e1", "e2"}
	regions := map[string]string{"e0": "kr", "e1": "kr", "e2": "jp"}
	n, sites := siteNet(t, testnet.Spec{
		Sites: []testnet.SiteSpec{{Name: "a"}, {Name: "b"}},
		Edges: edges,
		Hosts: []string{"view"},
	})
	hook := startHookSink(t, n, "view", 9000)
	const admin = "e2e-admin-token"
	common := fmt.Sprintf("admin_tokens = [%q]\n", admin)
	// The first view damps its webhook by 5 s (the flapping scenario), the second counts
	// witnesses by region.
	byAgent := startView(t, n, "view", viewPort, common+fmt.Sprintf(
		"[[notifiers.webhook]]\nurl = %q\nlost_for = \"5s\"\nrecover_for = \"0s\"\n", hook.url()))
	byRegion := startView(t, n, "view", viewPort+1, common+"quorum_by = \"region\"\n")
	for _, e := range edges {
		startAgentSpec(t, n, agentSpec{Name: e, Sites: sites, Push: []string{byAgent.pushURL(), byRegion.pushURL()},
			Labels: map[string]string{"region": regions[e]}})
	}
	allUp := func(got map[string]siteVerdict) bool {
		return states(map[string]string{"a": "up", "b": "up"})(got) && got["a"].Witnesses > 0
	}
	byAgent.client.poll("both sites up", startTimeout, allUp, nil)
	byRegion.client.poll("both sites up by region", startTimeout, allUp, nil)
	events := followEvents(t, byAgent)

	t.Run("partial partition is partitioned, never lost", func(t *testing.T) {
		for _, e := range []string{"e0", "e1"} {
			if err := n.CutPath("a", e); err != nil {
				t.Fatal(err)
			}
		}
		cut := time.Now()
		byAgent.client.poll("site a partitioned (two of three agents cut from it)", changeTimeout,
			states(map[string]string{"a": "partitioned"}), neverState("lost", "a", "b"))
		t.Logf("partial partition -> partitioned after %v", time.Since(cut).Round(time.Millisecond))
		// By region, both cut agents are one domain: degraded, and never lost.
		byRegion.client.poll("site a degraded by region", changeTimeout,
			states(map[string]string{"a": "degraded"}), neverState("lost", "a", "b"))
		deadline := time.Now().Add(watchFor)
		for _, v := range []*viewRun{byAgent, byRegion} {
			v.client.poll("a quiet spell", watchFor+time.Second, func(map[string]siteVerdict) bool { return time.Now().After(deadline) },
				neverState("lost", "a", "b"))
		}
		for _, e := range []string{"e0", "e1"} {
			if err := n.HealPath("a", e); err != nil {
				t.Fatal(err)
			}
		}
		byAgent.client.poll("site a up after the partition", changeTimeout, allUp, nil)
	})

	t.Run("a whole region cut off is never lost by region", func(t *testing.T) {
		// jp's only agent loses its path to site b: one domain sees it down.
		if err := n.CutPath("b", "e2"); err != nil {
			t.Fatal(err)
		}
		byRegion.client.poll("site b degraded by region", changeTimeout,
			states(map[string]string{"b": "degraded"}), neverState("lost", "a", "b"))
		deadline := time.Now().Add(watchFor)
		byRegion.client.poll("a quiet spell", watchFor+time.Second, func(map[string]siteVerdict) bool { return time.Now().After(deadline) },
			neverState("lost", "a", "b"))
		if err := n.HealPath("b", "e2"); err != nil {
			t.Fatal(err)
		}
		byRegion.client.poll("site b up again", changeTimeout, allUp, nil)
	})

	t.Run("a real blackhole is lost at both views", func(t *testing.T) {
		if err := n.BlackholeSite("a"); err != nil {
			t.Fatal(err)
		}
		dark := time.Now()
		byAgent.client.poll("site a lost", changeTimeout, states(map[string]string{"a": "lost"}), neverState("lost", "b"))
		t.Logf("blackhole -> lost after %v", time.Since(dark).Round(time.Millisecond))
		byRegion.client.poll("site a lost by region", changeTimeout, states(map[string]string{"a": "lost"}), neverState("lost", "b"))
		if err := n.HealSite("a"); err != nil {
			t.Fatal(err)
		}
		byAgent.client.poll("site a up", changeTimeout, allUp, nil)
	})

	t.Run("silenced site lost notifies nothing", func(t *testing.T) {
		before := len(hook.all())
		body := `{"site":"b","duration":"10m","comment":"e2e maintenance"}`
		req, _ := http.NewRequest(http.MethodPost, "http://"+byAgent.listen+"/api/v1/silences", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+admin)
		resp, err := byAgent.client.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("set silence: %s", resp.Status)
		}
		if err := n.BlackholeSite("b"); err != nil {
			t.Fatal(err)
		}
		byAgent.client.poll("site b lost", changeTimeout, states(map[string]string{"b": "lost"}), nil)
		time.Sleep(6 * time.Second) // beyond lost_for
		if err := n.HealSite("b"); err != nil {
			t.Fatal(err)
		}
		byAgent.client.poll("site b up", changeTimeout, allUp, nil)
		if got := hook.all()[before:]; len(got) != 0 {
			t.Errorf("a silenced site's loss was notified: %v", got)
		}
	})

	t.Run("flapping faster than lost_for notifies nothing", func(t *testing.T) {
		before := len(hook.all())
		lost := 0
		for range 10 {
			if err := n.BlackholeSite("a"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second)
			if err := n.HealSite("a"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(3 * time.Second)
		}
		byAgent.client.poll("site a up after flapping", changeTimeout, allUp, nil)
		for _, e := range events.all() {
			if e.Site == "a" && e.To == "lost" {
				lost++
			}
		}
		if got := hook.all()[before:]; len(got) != 0 {
			t.Errorf("flapping 3 s / 3 s with lost_for 5s notified: %v", got)
		}
		t.Logf("the verdict followed the flapping (%d losses of site a in the event stream), the webhook stayed quiet", lost)
	})

	t.Run("an event stream resumed with Last-Event-ID gets what it missed", func(t *testing.T) {
		history := func(since uint64) []uint64 {
			resp, err := byAgent.client.http.Get("http://" + byAgent.listen + "/api/v1/events/history?since=" + strconv.FormatUint(since, 10))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var doc struct {
				Events []struct{ ID uint64 }
				Last   uint64
			}
			if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
				t.Fatal(err)
			}
			var ids []uint64
			for _, e := range doc.Events {
				ids = append(ids, e.ID)
			}
			return ids
		}
		seen := history(0)
		last := seen[len(seen)-1]
		// Changes happen while no client listens.
		if err := n.BlackholeSite("a"); err != nil {
			t.Fatal(err)
		}
		byAgent.client.poll("site a lost", changeTimeout, states(map[string]string{"a": "lost"}), nil)
		if err := n.HealSite("a"); err != nil {
			t.Fatal(err)
		}
		byAgent.client.poll("site a up", changeTimeout, allUp, nil)
		missed := history(last)
		ids := resumeEvents(t, byAgent, last, len(missed))
		if fmt.Sprint(ids) != fmt.Sprint(missed) {
			t.Errorf("resumed after id %d: got %v, want exactly the missed %v", last, ids, missed)
		}
	})
}

// resumeEvents connects to v's event stream with Last-Event-ID last and returns the ids
// of the first want events.
func resumeEvents(t *testing.T, v *viewRun, last uint64, want int) []uint64 {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "http://"+v.listen+"/api/v1/events", nil)
	req.Header.Set("Last-Event-ID", strconv.FormatUint(last, 10))
	client := v.n.HTTPClient(v.node)
	client.Timeout = 10 * time.Second
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ids []uint64
	buf := make([]byte, 64<<10)
	var text strings.Builder
	for len(ids) < want {
		n, err := resp.Body.Read(buf)
		text.Write(buf[:n])
		ids = ids[:0]
		for _, line := range strings.Split(text.String(), "\n") {
			if v, ok := strings.CutPrefix(line, "id: "); ok {
				id, _ := strconv.ParseUint(v, 10, 64)
				ids = append(ids, id)
			}
		}
		if err != nil {
			break
		}
	}
	return ids
}
