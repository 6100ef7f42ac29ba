package main

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func siteFileText(site, target, address string) string {
	return fmt.Sprintf("[[site]]\nname = %q\n  [[site.tcp]]\n  name = %q\n  address = %q\n", site, target, address)
}

// TestAgentIncludeWatch: the running agent follows the files its include matches
// without SIGHUP: a new file's sites are probed, an invalid file is reported error by
// error (once) and the running set kept, a removed file's sites are removed.
func TestAgentIncludeWatch(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := l.Addr().String()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "sites.d"), 0o755); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) {
		t.Helper()
		// Through a temporary name and a rename, as editors and config management do.
		tmp := filepath.Join(dir, ".tmp")
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	write("agent.toml", "include = [\"sites.d/*.toml\"]\n"+agentConfig("main", addr))
	write("sites.d/a.toml", siteFileText("alpha", "a", addr))
	ag := startAgent(t, filepath.Join(dir, "agent.toml"))
	ag.waitLine(t, 5*time.Second, "a probe of target a (included)", probeOf("a"))

	added := time.Now()
	write("sites.d/b.toml", siteFileText("beta", "b", addr))
	ag.waitLine(t, 5*time.Second, "a probe of target b of a file added", probeOf("b"))
	t.Logf("a new file's target probed %v after the file was written (1 s polling)", time.Since(added).Round(time.Millisecond))
	ag.waitStderr(t, time.Second, "included files changed; reloading")

	b := filepath.Join(dir, "sites.d/b.toml")
	write("sites.d/b.toml", "[[site]]\nname = \"beta\"\n  [[site.tcp]]\n  address = \"nowhere\"\n  timeout = 5\n[agent]\n")
	ag.waitStderr(t, 5*time.Second, "reload rejected, running configuration kept")
	for _, want := range []string{
		b + `:5: site[0].tcp[0].timeout: bare number 5 is not a duration`,
	} {
		ag.waitStderr(t, time.Second, want)
	}
	drain(ag)
	ag.waitLine(t, 3*time.Second, "a probe of target b after the rejected change", probeOf("b"))
	time.Sleep(2500 * time.Millisecond) // two more polls: the same invalid file is not reported again
	if n := strings.Count(ag.stderr.String(), "reload rejected"); n != 1 {
		t.Errorf("the invalid file was reported %d times, want once:\n%s", n, ag.stderr)
	}

	write("sites.d/b.toml", siteFileText("beta", "b2", addr))
	ag.waitLine(t, 5*time.Second, "the removal of target b", func(v map[string]any) bool {
		return v["type"] == "removed" && v["target"] == "b"
	})
	ag.waitLine(t, 5*time.Second, "a probe of target b2", probeOf("b2"))

	if err := os.Remove(filepath.Join(dir, "sites.d/a.toml")); err != nil {
		t.Fatal(err)
	}
	ag.waitLine(t, 5*time.Second, "the removal of site alpha with its file", func(v map[string]any) bool {
		return v["type"] == "removed" && v["site"] == "alpha" && v["target"] == nil
	})
	drain(ag)
	ag.waitLine(t, 3*time.Second, "a probe of target main (agent.toml's own)", probeOf("main"))
	for deadline := time.Now().Add(1500 * time.Millisecond); time.Now().Before(deadline); {
		select {
		case v := <-ag.lines:
			if v["site"] == "alpha" && v["type"] == "probe" {
				t.Fatalf("site alpha still probed after its file was removed: %v", v)
			}
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// drain discards the agent's lines read so far.
func drain(a *runningAgent) {
	for {
		select {
		case <-a.lines:
		default:
			return
		}
	}
}
