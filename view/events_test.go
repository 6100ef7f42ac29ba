package view

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// flipSite pushes pangyo down (or up) from agents a and b and returns when the push is
// answered: each call is one verdict change once the site was seen.
func flipSite(t *testing.T, base string, down bool) {
	t.Helper()
	state := "up"
	if down {
		state = "down"
	}
	pushSite(t, base, state, "a", "b")
}

// nextEvent waits for one event of the stream.
func nextEvent(t *testing.T, events *testkit.Events) testkit.Event {
	t.Helper()
	ev, err := events.NextWithin(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// TestEventsReplay: every change has an id one above the last; a client that reconnects
// with Last-Event-ID gets exactly the changes it missed, then the live ones, none twice;
// one that asks for more than the ring holds gets event: reset first.
func TestEventsReplay(t *testing.T) {
	base, _ := startViewWith(t, DefaultConfig(), Options{EventRing: 8})
	events := followEvents(t, base, "")
	flipSite(t, base, false) // unknown -> up: id 1
	first := nextEvent(t, events)
	if first.ID != "1" {
		t.Fatalf("first event id %q, want 1", first.ID)
	}
	for i := range 4 { // ids 2..5
		flipSite(t, base, i%2 == 0)
	}
	for want := 2; want <= 5; want++ {
		if ev := nextEvent(t, events); ev.ID != strconv.Itoa(want) {
			t.Fatalf("event id %q, want %d", ev.ID, want)
		}
	}

	// A client that saw id 2 reconnects: 3, 4, 5 from the ring, then 6 live.
	again := followEvents(t, base, "2")
	for want := 3; want <= 5; want++ {
		ev := nextEvent(t, again)
		var c Change
		if err := json.Unmarshal([]byte(ev.Data), &c); err != nil || ev.ID != strconv.Itoa(want) || c.ID != uint64(want) {
			t.Fatalf("replayed %+v, want id %d", ev, want)
		}
	}
	flipSite(t, base, true) // id 6
	if ev := nextEvent(t, again); ev.ID != "6" {
		t.Fatalf("live event after the replay has id %q, want 6", ev.ID)
	}
	if ev, err := again.NextWithin(200 * time.Millisecond); err == nil {
		t.Fatalf("extra event %+v after the live one", ev)
	}

	// The ring holds 8: after 12 changes, id 1 is gone, so a client from id 1 is told to
	// reset, then gets what the ring has.
	for i := range 6 {
		flipSite(t, base, i%2 == 1)
	}
	stale := followEvents(t, base, "1")
	if ev := nextEvent(t, stale); ev.Type != "reset" {
		t.Fatalf("first event for a client too far behind: %+v, want event: reset", ev)
	}
	if ev := nextEvent(t, stale); ev.ID != "5" {
		t.Fatalf("after the reset: id %q, want the ring's oldest, 5", ev.ID)
	}
	// An id this view never gave (its state directory was lost) is a reset too.
	future := followEvents(t, base, "999")
	if ev := nextEvent(t, future); ev.Type != "reset" {
		t.Fatalf("client from the future: %+v, want event: reset", ev)
	}
}

type historyDoc struct {
	Events   []Change `json:"events"`
	Complete bool     `json:"complete"`
	Next     uint64   `json:"next"`
	Last     uint64   `json:"last"`
}

func getHistory(t *testing.T, base, query string) historyDoc {
	t.Helper()
	resp, err := http.Get(base + "/api/v1/events/history" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("history%s: %s", query, resp.Status)
	}
	var doc historyDoc
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

// TestEventsHistoryAndRestart: the history serves the kept changes as JSON, pages with
// since and limit, and a view restarted on the same state directory still has them and
// numbers on from the last.
func TestEventsHistoryAndRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := DefaultConfig()
	cfg.StateDir = dir
	base, _ := startView(t, cfg)
	for i := range 5 {
		flipSite(t, base, i%2 == 1) // up, down, up, down, up: ids 1..5
	}
	doc := getHistory(t, base, "?since=1&limit=2")
	if len(doc.Events) != 2 || doc.Events[0].ID != 2 || doc.Events[1].ID != 3 || doc.Next != 3 || !doc.Complete || doc.Last != 5 {
		t.Fatalf("history since 1 limit 2: %+v", doc)
	}
	if doc.Events[0].From != VerdictUp || doc.Events[0].To != VerdictLost || doc.Events[0].Site != "pangyo" {
		t.Errorf("event 2 %+v: want pangyo up -> lost", doc.Events[0])
	}
	for _, q := range []string{"?since=x", "?limit=0", "?limit=100000"} {
		resp, err := http.Get(base + "/api/v1/events/history" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("history%s: %s, want 400", q, resp.Status)
		}
	}

	// The file is written by its own goroutine: wait until it holds the five.
	waitFor(t, 5*time.Second, "the history file to hold 5 events", func() bool {
		l, err := newEventLog(dir, 100, discard())
		return err == nil && l.lastID() == 5
	})
	cfg2 := DefaultConfig()
	cfg2.StateDir = dir
	restarted, _ := startView(t, cfg2)
	if doc := getHistory(t, restarted, ""); len(doc.Events) != 5 || doc.Last != 5 {
		t.Fatalf("after a restart: %+v, want the 5 events", doc)
	}
	flipSite(t, restarted, true) // unknown -> lost on the new view: id 6
	if doc := getHistory(t, restarted, "?since=5"); len(doc.Events) != 1 || doc.Events[0].ID != 6 || doc.Events[0].To != VerdictLost {
		t.Fatalf("first change after the restart: %+v, want id 6 to lost", doc)
	}
}

// waitFor polls cond until it holds or within passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(within); ; time.Sleep(20 * time.Millisecond) {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", within, what)
		}
	}
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// The ring keeps the last size changes, oldest first, however many pass through it, and
// never moves off its own buffer (keep copies it back to the start once every size).
func TestEventRingKeepsLast(t *testing.T) {
	const size = 5
	l, err := newEventLog("", size, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	for n := 1; n <= 4*size+3; n++ {
		l.add(Change{Site: fmt.Sprint(n)})
		got, _ := l.since(0, 0)
		want := min(n, size)
		if len(got) != want {
			t.Fatalf("after %d changes: %d kept, want %d", n, len(got), want)
		}
		for i, c := range got {
			if id := uint64(n - want + i + 1); c.ID != id || c.Site != fmt.Sprint(id) {
				t.Fatalf("after %d changes: kept[%d] is id %d site %s, want id %d", n, i, c.ID, c.Site, id)
			}
		}
		if end := l.ring[:cap(l.ring)]; len(l.buf) != 2*size || &end[len(end)-1] != &l.buf[len(l.buf)-1] {
			t.Fatalf("after %d changes: the ring is not a window onto its buffer of %d", n, 2*size)
		}
	}
}
