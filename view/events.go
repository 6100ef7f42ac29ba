package view

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/edgeprobe/edgeprobe/internal/tomlconf"
)

// eventLog numbers verdict changes and keeps the last ones (docs/architecture.md, "Events"):
// every change gets the next id, the last `size` stay in a ring for clients that
// reconnect with Last-Event-ID and for /api/v1/events/history, and with a state
// directory they are kept in events.jsonl so that a restarted view goes on numbering
// where it stopped and still shows them.
//
// The file is written by a goroutine of its own, so a slow disk never holds a verdict
// up: a change that finds that goroutine's queue full marks the file stale, and the
// goroutine then writes the whole ring anew (which it also does when the file has grown
// to twice the ring). The ring itself never loses a change.
type eventLog struct {
	mu     sync.Mutex
	ring   []Change // oldest first, at most size; a window onto buf (keep)
	buf    []Change
	size   int
	nextID uint64

	path    string // "" without a state directory
	queue   chan Change
	rewrite chan struct{} // capacity 1: write the whole ring
	log     *slog.Logger
}

// eventsFile is the name of the event file in the state directory.
const eventsFile = "events.jsonl"

// newEventLog reads the events a previous run left in stateDir (if any) and returns the
// log; its writer starts with run.
func newEventLog(stateDir string, size int, log *slog.Logger) (*eventLog, error) {
	l := &eventLog{size: size, nextID: 1, queue: make(chan Change, 1024), rewrite: make(chan struct{}, 1), log: log}
	if stateDir == "" {
		return l, nil
	}
	l.path = filepath.Join(stateDir, eventsFile)
	data, err := tomlconf.ReadFileLimit(l.path, int64(4*size)<<10)
	switch {
	case os.IsNotExist(err):
		return l, nil
	case err != nil:
		return nil, fmt.Errorf("read the verdict history: %w", err)
	}
	lines := bufio.NewScanner(bytes.NewReader(data))
	lines.Buffer(make([]byte, 64<<10), 64<<10)
	for lines.Scan() {
		var c Change
		if json.Unmarshal(lines.Bytes(), &c) != nil || c.ID < l.nextID {
			continue // a torn last line, or a line out of order: the ids must grow
		}
		l.keep(c)
		l.nextID = c.ID + 1
	}
	if len(l.ring) > 0 {
		log.Info("verdict history restored", "file", l.path, "events", len(l.ring), "next_id", l.nextID)
	}
	return l, nil
}

// keep puts c at the end of the ring; l.mu is held (or the log is not shared yet).
//
// The ring is a window onto buf, twice its size: a full ring moves its start one change
// on, and only once its end reaches buf's is it copied back to buf's start, once every
// size changes. Shifting the whole ring on every change, as before, took a sixth of
// the view's CPU in a storm of verdict changes at 10,000 agents, under applyMu.
func (l *eventLog) keep(c Change) {
	if l.buf == nil {
		l.buf = make([]Change, 2*l.size)
		l.ring = l.buf[:copy(l.buf, l.ring)]
	}
	if len(l.ring) == l.size {
		l.ring[0] = Change{} // what it names may be freed
		l.ring = l.ring[1:]
	}
	if len(l.ring) == cap(l.ring) {
		l.ring = l.buf[:copy(l.buf, l.ring)]
	}
	l.ring = append(l.ring, c)
}

// add numbers c, keeps it and queues it for the file; it never blocks.
func (l *eventLog) add(c Change) Change {
	l.mu.Lock()
	c.ID = l.nextID
	l.nextID++
	l.keep(c)
	l.mu.Unlock()
	if l.path == "" {
		return c
	}
	select {
	case l.queue <- c:
	default:
		select {
		case l.rewrite <- struct{}{}:
		default:
		}
	}
	return c
}

// since returns the kept changes with an id above id, oldest first, at most limit (0:
// all). complete is false when the client cannot be brought up to date from the ring:
// some changes after id are no longer kept, or id is one this view never gave (a view
// that lost its state directory); the client must then read the state anew.
func (l *eventLog) since(id uint64, limit int) (changes []Change, complete bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	last := l.nextID - 1
	switch {
	case id > last:
		return nil, false
	case len(l.ring) == 0:
		return nil, id == last
	}
	complete = id+1 >= l.ring[0].ID
	for _, c := range l.ring {
		if c.ID > id {
			changes = append(changes, c)
			if limit > 0 && len(changes) == limit {
				break
			}
		}
	}
	return changes, complete
}

// lastID is the id of the latest change, 0 when there is none.
func (l *eventLog) lastID() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nextID - 1
}

// run writes the queued changes to the file until done is closed.
func (l *eventLog) run(done <-chan struct{}) {
	if l.path == "" {
		return
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		l.log.Error("cannot keep the verdict history", "file", l.path, "error", err)
		return
	}
	defer func() { f.Close() }()
	written := 0
	for {
		select {
		case <-done:
			return
		case c := <-l.queue:
			line, _ := json.Marshal(c)
			if _, err := f.Write(append(line, '\n')); err != nil {
				l.log.Warn("write the verdict history", "file", l.path, "error", err)
			}
			if written++; written < 2*l.size {
				continue
			}
		case <-l.rewrite:
		}
		if nf, err := l.writeRing(); err != nil {
			l.log.Warn("rewrite the verdict history", "file", l.path, "error", err)
		} else {
			f.Close()
			f, written = nf, len(l.ring)
		}
	}
}

// writeRing replaces the file with the ring (written, synced and renamed into place, so
// a crash leaves the old file or the new one) and returns it open for appending.
func (l *eventLog) writeRing() (*os.File, error) {
	// What is queued now is in the ring already; what comes after the copy below follows
	// it in the file (a change in both is read once: ids must grow).
	for drained := false; !drained; {
		select {
		case <-l.queue:
		default:
			drained = true
		}
	}
	// A copy under the lock, marshalled outside it: add, under the engine's apply lock,
	// must not wait for thousands of changes to be encoded. Kept changes never change.
	l.mu.Lock()
	ring := slices.Clone(l.ring)
	l.mu.Unlock()
	var buf bytes.Buffer
	for _, c := range ring {
		line, _ := json.Marshal(c)
		buf.Write(line)
		buf.WriteByte('\n')
	}
	tmp := l.path + ".tmp"
	if err := writeFileSync(tmp, buf.Bytes()); err != nil {
		return nil, err
	}
	if err := os.Rename(tmp, l.path); err != nil {
		return nil, err
	}
	return os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND, 0o600)
}

// writeFileSync writes data to name and syncs it and its directory.
func writeFileSync(name string, data []byte) error {
	f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	dir, err := os.Open(filepath.Dir(name))
	if err != nil {
		return err
	}
	defer dir.Close()
	return dir.Sync()
}
