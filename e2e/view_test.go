//go:build linux

package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testnet"
)

// viewPort is where the view listens inside its namespace.
const viewPort = 9470

// siteVerdict is one entry of the view's GET /api/v1/sites (docs/architecture.md, "Verdicts at the view").
type siteVerdict struct {
	Name      string `json:"name"`
	State     string `json:"state"`
	Witnesses int    `json:"witnesses"`
	Down      int    `json:"down"`
	Agents    []struct {
		Name     string `json:"name"`
		State    string `json:"state"`
		Isolated bool   `json:"isolated"`
		Impaired bool   `json:"impaired"`
		Stale    bool   `json:"stale"`
	} `json:"agents"`
}

// viewClient reads verdicts from the view, from inside the view's own namespace.
type viewClient struct {
	t    testing.TB
	http *http.Client
	url  string
}

func (v viewClient) sites() (map[string]siteVerdict, error) {
	resp, err := v.http.Get(v.url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", v.url, resp.Status)
	}
	var body struct {
		Sites []siteVerdict `json:"sites"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("GET %s: %v", v.url, err)
	}
	out := map[string]siteVerdict{}
	for _, s := range body.Sites {
		out[s.Name] = s
	}
	return out, nil
}

// poll reads the verdicts every 50 ms until done says so, and fails the test after
// timeout. check sees every reading first and reports what must never be seen.
func (v viewClient) poll(what string, timeout time.Duration, done func(map[string]siteVerdict) bool, check func(map[string]siteVerdict) error) {
	v.t.Helper()
	deadline := time.Now().Add(timeout)
	var last map[string]siteVerdict
	var lastErr error
	for time.Now().Before(deadline) {
		last, lastErr = v.sites()
		if lastErr == nil {
			if check != nil {
				if err := check(last); err != nil {
					v.t.Errorf("while waiting for %s: %v", what, err)
				}
			}
			if done(last) {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	v.t.Fatalf("waiting %v for %s: last reading %+v (error %v)", timeout, what, last, lastErr)
}

func states(want map[string]string) func(map[string]siteVerdict) bool {
	return func(got map[string]siteVerdict) bool {
		for site, state := range want {
			if got[site].State != state {
				return false
			}
		}
		return true
	}
}

func neverLost(got map[string]siteVerdict) error {
	for _, s := range got {
		if s.State == "lost" {
			return fmt.Errorf("site %s lost: %+v", s.Name, s)
		}
	}
	return nil
}

// TestViewVerdicts runs the whole system as docs/architecture.md describes it: three edges push to a
// view in its own namespace. A site blackhole is a lost site at the view, then up again;
// one edge's uplink cut loses nothing, and that edge stops counting as a witness.
func TestViewVerdicts(t *testing.T) {
	t.Parallel()
	edges := []string{"e0", "e1", "e2"}
	n, sites := siteNet(t, testnet.Spec{
		Sites: []testnet.SiteSpec{{Name: "a"}, {Name: "b"}},
		Edges: edges,
		Hosts: []string{"view"},
	})
	addr, err := n.Addr("view")
	if err != nil {
		t.Fatal(err)
	}
	listen := netip.AddrPortFrom(addr, viewPort).String()
	// The view listens on its namespace's address, which only this test's namespaces
	// reach; the agents push without tokens, so the refusal is lifted explicitly.
	view, err := n.Start("view", binary, "view", "--listen", listen, "--allow-unauthenticated")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := view.Stop(); err != nil {
			t.Errorf("view: stopped with %v; stderr:\n%s", err, view.Stderr())
		}
	})
	for _, e := range edges {
		startAgent(t, n, agentConfig{Name: e, Sites: sites, Push: "http://" + listen + "/api/v1/write"})
	}
	v := viewClient{t: t, http: n.HTTPClient("view"), url: "http://" + listen + "/api/v1/sites"}
	v.http.Timeout = time.Second

	allUp := func(got map[string]siteVerdict) bool {
		return states(map[string]string{"a": "up", "b": "up"})(got) && got["a"].Witnesses == 3 && got["b"].Witnesses == 3
	}
	v.poll("both sites up with three witnesses", startTimeout, allUp, nil)

	if err := n.BlackholeSite("a"); err != nil {
		t.Fatal(err)
	}
	v.poll("site a lost", changeTimeout, states(map[string]string{"a": "lost"}), func(got map[string]siteVerdict) error {
		if got["b"].State != "up" {
			return fmt.Errorf("site b is %s while only a failed", got["b"].State)
		}
		return nil
	})
	if err := n.HealSite("a"); err != nil {
		t.Fatal(err)
	}
	v.poll("site a up again", changeTimeout, allUp, nil)

	if err := n.CutUplink("e1"); err != nil {
		t.Fatal(err)
	}
	// e1 can no longer push: it must stop counting, without any site being lost.
	e1Gone := func(got map[string]siteVerdict) bool {
		for _, s := range []string{"a", "b"} {
			if got[s].Witnesses != 2 || got[s].State != "up" {
				return false
			}
		}
		return true
	}
	v.poll("e1 no longer a witness", changeTimeout, e1Gone, neverLost)
	deadline := time.Now().Add(watchFor)
	v.poll("a quiet spell", watchFor+time.Second, func(map[string]siteVerdict) bool { return time.Now().After(deadline) }, neverLost)
	if err := n.HealUplink("e1"); err != nil {
		t.Fatal(err)
	}
	v.poll("three witnesses again", changeTimeout, allUp, neverLost)
}
