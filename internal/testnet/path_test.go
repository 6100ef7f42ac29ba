//go:build linux

package testnet

import (
	"testing"
	"time"
)

// TestCutPath: a cut path silences a site for one edge only, and heals.
func TestCutPath(t *testing.T) {
	n := New(t, Spec{Sites: []SiteSpec{{Name: "a"}}, Edges: []string{"e0", "e1"}})
	svc, err := n.Serve("a", 0)
	if err != nil {
		t.Fatal(err)
	}
	get := func(edge string) error {
		c := n.HTTPClient(edge)
		c.Timeout = 500 * time.Millisecond
		resp, err := c.Get(svc.URL())
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := n.CutPath("a", "e0"); err != nil {
		t.Fatal(err)
	}
	if err := get("e0"); err == nil {
		t.Error("e0 reaches site a through a cut path")
	}
	if err := get("e1"); err != nil {
		t.Errorf("e1 cannot reach site a while only e0's path is cut: %v", err)
	}
	if err := n.HealPath("a", "e0"); err != nil {
		t.Fatal(err)
	}
	if err := get("e0"); err != nil {
		t.Errorf("e0 cannot reach site a after the heal: %v", err)
	}
}
