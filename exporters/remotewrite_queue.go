package exporters

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"
)

// memQueue is the queue without a spool: at most max batches, the oldest dropped first
// when full, because the newest snapshot says most about the present.
type memQueue struct {
	mu      sync.Mutex
	max     int
	batches []batch
	bytes   int64
	stats   *pushStats
}

func (q *memQueue) push(b batch) {
	b.payload = bytes.Clone(b.payload) // the encoder reuses its buffer
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.batches) >= q.max {
		q.bytes -= int64(len(q.batches[0].payload))
		q.batches = q.batches[1:]
		q.stats.drop(DropQueueFull)
	}
	q.batches = append(q.batches, b)
	q.bytes += int64(len(b.payload))
}

func (q *memQueue) head() (batch, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.batches) == 0 {
		return batch{}, false
	}
	return q.batches[0], true
}

func (q *memQueue) pop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.batches) > 0 {
		q.bytes -= int64(len(q.batches[0].payload))
		q.batches[0] = batch{}
		q.batches = q.batches[1:]
	}
}

func (q *memQueue) size() (int, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.batches), q.bytes
}

func (q *memQueue) close() error { return nil }

// spoolQueue keeps every batch on disk until the receiver acknowledges it, so neither a
// long outage nor an agent restart loses a sample.
//
// Each batch is one segment file, NNNNNNNNNNNNNNNNNNNN-MILLIS.seg (sequence number, then
// creation time in Unix milliseconds), holding a CRC-32C of the payload and the payload.
// A segment is written to a temporary name, fsynced and renamed, and the directory
// fsynced, so after a crash a segment is either whole or absent; acknowledging it is an
// unlink. One batch per file keeps the bookkeeping in the file names: no index or
// acknowledgement offset to keep consistent with the data. A lock file stops two agents
// from sharing one spool.
type spoolQueue struct {
	mu       sync.Mutex
	dir      string
	maxBytes int64
	maxAge   time.Duration
	entries  []spoolEntry // oldest first
	bytes    int64
	nextSeq  uint64
	lock     *os.File
	stats    *pushStats
	logger   *slog.Logger
}

type spoolEntry struct {
	seq     uint64
	created time.Time
	size    int64
}

const (
	spoolSuffix    = ".seg"
	spoolTmpSuffix = ".tmp"
	spoolLockName  = "LOCK"
	spoolHeaderLen = 4 // CRC-32C of the payload
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func (e spoolEntry) fileName() string {
	return fmt.Sprintf("%020d-%d%s", e.seq, e.created.UnixMilli(), spoolSuffix)
}

// openSpool locks dir and lists the segments an earlier run left there.
func openSpool(dir string, maxBytes int64, maxAge time.Duration, stats *pushStats, logger *slog.Logger) (*spoolQueue, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: create %s: %w", dir, err)
	}
	lockPath := filepath.Join(dir, spoolLockName)
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: open %s: %w", lockPath, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("spool: %s is in use by another edgeprobe (lock %s): %w", dir, lockPath, err)
	}
	q := &spoolQueue{dir: dir, maxBytes: maxBytes, maxAge: maxAge, lock: lock, stats: stats, logger: logger}
	files, err := os.ReadDir(dir)
	if err != nil {
		lock.Close()
		return nil, fmt.Errorf("spool: list %s: %w", dir, err)
	}
	for _, f := range files {
		name := f.Name()
		switch {
		case strings.HasSuffix(name, spoolTmpSuffix):
			// A write that a crash interrupted before its rename: never acknowledged as queued.
			os.Remove(filepath.Join(dir, name))
			continue
		case !strings.HasSuffix(name, spoolSuffix):
			continue
		}
		var seq uint64
		var ms int64
		if _, err := fmt.Sscanf(strings.TrimSuffix(name, spoolSuffix), "%d-%d", &seq, &ms); err != nil {
			logger.Warn("spool: ignoring a file with a name not ours", "file", filepath.Join(dir, name))
			continue
		}
		info, err := f.Info()
		if err != nil {
			continue
		}
		q.entries = append(q.entries, spoolEntry{seq: seq, created: time.UnixMilli(ms), size: info.Size()})
		q.bytes += info.Size()
		q.nextSeq = max(q.nextSeq, seq+1)
	}
	sort.Slice(q.entries, func(i, j int) bool { return q.entries[i].seq < q.entries[j].seq })
	return q, nil
}

func (q *spoolQueue) push(b batch) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.expire(time.Now())
	size := int64(spoolHeaderLen + len(b.payload))
	if size > q.maxBytes {
		q.stats.drop(DropSpoolFull)
		q.logger.Warn("spool: batch larger than max_bytes; dropped", "bytes", size, "max_bytes", q.maxBytes)
		return
	}
	for len(q.entries) > 0 && q.bytes+size > q.maxBytes {
		q.removeOldest(DropSpoolFull)
	}
	e := spoolEntry{seq: q.nextSeq, created: b.created, size: size}
	if err := q.write(e, b.payload); err != nil {
		q.stats.drop(DropSpoolError)
		q.logger.Error("spool: batch not written; dropped", "err", err)
		return
	}
	q.nextSeq++
	q.entries = append(q.entries, e)
	q.bytes += size
}

func (q *spoolQueue) write(e spoolEntry, payload []byte) error {
	final := filepath.Join(q.dir, e.fileName())
	tmp := final + spoolTmpSuffix
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("create %s: %w", tmp, err)
	}
	var header [spoolHeaderLen]byte
	binary.BigEndian.PutUint32(header[:], crc32.Checksum(payload, castagnoli))
	_, err = f.Write(header[:])
	if err == nil {
		_, err = f.Write(payload)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", final, err)
	}
	return syncDir(q.dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// head reads the oldest segment, dropping expired and corrupt ones on the way.
func (q *spoolQueue) head() (batch, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.expire(time.Now())
	for len(q.entries) > 0 {
		e := q.entries[0]
		path := filepath.Join(q.dir, e.fileName())
		data, err := os.ReadFile(path)
		if err == nil && len(data) >= spoolHeaderLen &&
			binary.BigEndian.Uint32(data) == crc32.Checksum(data[spoolHeaderLen:], castagnoli) {
			return batch{created: e.created, payload: data[spoolHeaderLen:]}, true
		}
		if err == nil {
			err = errors.New("checksum mismatch")
		}
		q.logger.Error("spool: unreadable segment; dropped", "file", path, "err", err)
		q.removeOldest(DropSpoolCorrupt)
	}
	return batch{}, false
}

func (q *spoolQueue) pop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.entries) > 0 {
		q.removeOldest("")
	}
}

// expire drops segments older than max_age: a receiver that has been away that long
// would reject or misplace them anyway.
func (q *spoolQueue) expire(now time.Time) {
	for len(q.entries) > 0 && now.Sub(q.entries[0].created) > q.maxAge {
		q.removeOldest(DropSpoolAge)
	}
}

// removeOldest unlinks the oldest segment; a non-empty reason counts it as dropped.
func (q *spoolQueue) removeOldest(reason string) {
	e := q.entries[0]
	path := filepath.Join(q.dir, e.fileName())
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		q.logger.Error("spool: remove segment", "file", path, "err", err)
	}
	q.entries = q.entries[1:]
	q.bytes -= e.size
	if reason != "" {
		q.stats.drop(reason)
	}
}

func (q *spoolQueue) size() (int, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.entries), q.bytes
}

// close releases the lock; the segments stay for the next run.
func (q *spoolQueue) close() error {
	if err := q.lock.Close(); err != nil {
		return fmt.Errorf("spool: release %s: %w", q.lock.Name(), err)
	}
	return nil
}
