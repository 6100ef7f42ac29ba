package view

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// TestLivePage loads the board in headless Chromium, makes a site lose its witnesses and
// checks that the page turns it red by itself (no reload), then saves a screenshot:
// go test -run TestLivePage -artifacts ./view/ keeps it under _artifacts.
func TestLivePage(t *testing.T) {
	chromium := testkit.LookTool(t, "Debian's chromium, scripts/deps/view.txt", "chromium", "chromium-browser")
	// The agents push once a step and announce a 1 s push interval, so by default they
	// would go stale after 3 s, and on a loaded machine Chromium takes longer than that
	// to start: the board would show pangyo unknown, never up. A minute keeps them
	// witnesses for the whole test.
	cfg := DefaultConfig()
	cfg.StaleAfter = Duration{Duration: time.Minute}
	base, _ := startView(t, cfg)
	agents := []string{"edge1", "edge2", "edge3"}
	push := func(pangyo string, down ...string) {
		t.Helper()
		var pushes []agentPush
		for _, a := range agents {
			st := "up"
			for _, d := range down {
				if d == a {
					st = pangyo
				}
			}
			pushes = append(pushes, agentPush{agent: a, interval: 1, since: time.Now().Add(-200 * time.Millisecond), detect: 0.2,
				sites: map[string]string{"pangyo": st, "seoul": "up", "busan": "up"}})
		}
		if code := postWrite(t, base, "", encodePushes(t, pushes...)); code != 204 {
			t.Fatalf("push: %d", code)
		}
	}
	push("up")

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1100, 520),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(allocCtx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 60*time.Second)
	defer cancelTimeout()

	// present polls in the page rather than waiting on one node, because the board
	// replaces its rows on every refresh.
	present := func(sel string) chromedp.Action[chromedp.Void] {
		return chromedp.Poll[chromedp.Void]("document.querySelector(" + strconv.Quote(sel) + ") !== null")
	}
	if err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		present(`tr[data-site="pangyo"][data-state="up"]`),
		present(`#conn[data-state="live"]`),
	); err != nil {
		t.Fatalf("load the board: %v", err)
	}
	// A page reload would lose this mark.
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.loadedOnce = "same page"`)); err != nil {
		t.Fatal(err)
	}

	push("down", "edge1", "edge2")
	if err := chromedp.Do(ctx,
		present(`tr[data-site="pangyo"][data-state="lost"]`),
		present(`#log li[data-to="lost"]`),
	); err != nil {
		t.Fatalf("wait for the board to show pangyo lost: %v", err)
	}
	run := func(a chromedp.Action[string]) string {
		t.Helper()
		v, err := chromedp.Run(ctx, a)
		if err != nil {
			t.Fatalf("read the page: %v", err)
		}
		return v
	}
	attr := func(sel string) string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.AttributeValue(chromedp.CSS(sel), "data-state"))
		if err != nil {
			t.Fatalf("read %s: %v", sel, err)
		}
		return v.Value
	}
	verdictText := run(chromedp.Text(chromedp.CSS(`tr[data-site="pangyo"] td.verdict`)))
	logText := run(chromedp.Text(chromedp.CSS(`#log`)))
	stillMarker := run(chromedp.Evaluate[string](`window.loadedOnce || "reloaded"`))
	edge1State := attr(`tr[data-site="pangyo"] td[data-agent="edge1"]`)
	edge3State := attr(`tr[data-site="pangyo"] td[data-agent="edge3"]`)
	if !strings.Contains(strings.ToLower(verdictText), "lost") || !strings.Contains(verdictText, "detected in") || !strings.Contains(verdictText, "2 of 3 witnesses down") {
		t.Errorf("verdict cell %q: want lost, its detection time and 2 of 3 witnesses down", verdictText)
	}
	if edge1State != "down" || edge3State != "up" {
		t.Errorf("pangyo cells: edge1 %q edge3 %q, want down and up", edge1State, edge3State)
	}
	if !strings.Contains(logText, "pangyo: degraded") && !strings.Contains(logText, "pangyo: up") {
		t.Errorf("event log %q lacks the pangyo change", logText)
	}
	if stillMarker != "same page" {
		t.Errorf("the page reloaded to show the change")
	}

	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	shot := filepath.Join(t.ArtifactDir(), "board-lost.png")
	if err := os.WriteFile(shot, png, 0o644); err != nil {
		t.Fatal(err)
	}
	if len(png) < 1000 || string(png[1:4]) != "PNG" {
		t.Errorf("screenshot of %d bytes is not a PNG", len(png))
	}
	t.Logf("screenshot: %s", shot)
}
