package exporters

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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
	nextID  uint64
	sending uint64 // id of the batch head last returned: the sender has it in flight
	stats   *pushStats
	full    *episode // queue_full drops, logged once per outage
}

func (q *memQueue) push(b batch) {
	b.payload = bytes.Clone(b.payload) // the encoder reuses its buffer
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.batches) >= q.max {
		// The oldest goes, unless it is in flight: then the next oldest, so that a batch
		// counted as dropped is never delivered after all.
		i := 0
		if q.batches[0].id == q.sending && len(q.batches) > 1 {
			i = 1
		}
		q.bytes -= int64(len(q.batches[i].payload))
		q.batches = slices.Delete(q.batches, i, i+1)
		q.stats.drop(DropQueueFull)
		q.full.happened("memory queue full: dropping the oldest batches", "queue_size", q.max)
	}
	q.nextID++
	b.id = q.nextID
	q.batches = append(q.batches, b)
	q.bytes += int64(len(b.payload))
}

func (q *memQueue) head() (batch, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.batches) == 0 {
		return batch{}, false
	}
	q.sending = q.batches[0].id
	return q.batches[0], true
}

// pop removes the batch head returned, unless it was dropped meanwhile to make room:
// the batch now first was never sent.
func (q *memQueue) pop(id uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.batches) > 0 && q.batches[0].id == id {
		q.bytes -= int64(len(q.batches[0].payload))
		q.batches[0] = batch{}
		q.batches = q.batches[1:]
		if len(q.batches) == 0 {
			q.full.over("memory queue no longer full")
		}
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
//
// When the disk is full, the oldest segments are deleted to make room (disk_full). When
// a segment cannot be written at all (a read-only or failing disk), batches wait in memory
// instead, up to the queue size, behind the segments already on disk, and go to disk as
// soon as it takes them again; beyond that the oldest in memory are dropped (spool_error).
type spoolQueue struct {
	mu       sync.Mutex
	dir      string
	maxBytes int64
	maxAge   time.Duration
	entries  []spoolEntry // on disk, oldest first
	bytes    int64
	mem      []batch // not yet written (the disk refused them), all newer than entries
	memMax   int
	memBytes int64
	nextSeq  uint64
	sending  uint64 // seq of the batch head last returned: the sender has it in flight
	lock     *os.File
	stats    *pushStats
	logger   *slog.Logger
	// Each kind of trouble is logged when it starts, summarised while it lasts and logged
	// again when it ends, never once per batch.
	writeErr, removeErr, full, diskFull *episode
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

// openSpool locks dir and lists the segments an earlier run left there. memMax bounds the
// batches held in memory while the disk refuses writes.
func openSpool(dir string, maxBytes int64, maxAge time.Duration, memMax int, stats *pushStats, logger *slog.Logger) (*spoolQueue, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("spool: create %s: %w", dir, err)
	}
	lockPath := filepath.Join(dir, spoolLockName)
	// Read-only: flock needs no write access, and a file open for writing would keep the
	// file system from being remounted read-only (EBUSY).
	lock, err := os.OpenFile(lockPath, os.O_CREATE|os.O_RDONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("spool: open %s: %w", lockPath, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		return nil, fmt.Errorf("spool: %s is in use by another edgeprobe (lock %s): %w", dir, lockPath, err)
	}
	q := &spoolQueue{dir: dir, maxBytes: maxBytes, maxAge: maxAge, memMax: max(memMax, 1), lock: lock, stats: stats, logger: logger,
		writeErr: newEpisode(logger, slog.LevelError), removeErr: newEpisode(logger, slog.LevelError),
		full: newEpisode(logger, slog.LevelWarn), diskFull: newEpisode(logger, slog.LevelError)}
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
	now := time.Now()
	q.expire(now)
	size := int64(spoolHeaderLen + len(b.payload))
	if size > q.maxBytes {
		q.stats.drop(DropSpoolFull)
		q.logger.Warn("spool: batch larger than max_bytes; dropped", "bytes", size, "max_bytes", q.maxBytes)
		return
	}
	b.id = q.nextSeq
	q.nextSeq++
	// Batches held in memory go to disk first, so that the disk holds the oldest.
	for len(q.mem) > 0 && q.store(q.mem[0]) {
		q.memBytes -= int64(len(q.mem[0].payload))
		q.mem[0] = batch{}
		q.mem = q.mem[1:]
	}
	if len(q.mem) == 0 && q.store(b) {
		q.writeErr.over("spool: writing again", "dir", q.dir)
		return
	}
	if len(q.mem) >= q.memMax {
		i := 0
		if len(q.entries) == 0 && q.mem[0].id == q.sending && len(q.mem) > 1 {
			i = 1 // in flight: the next oldest goes
		}
		q.memBytes -= int64(len(q.mem[i].payload))
		q.mem = slices.Delete(q.mem, i, i+1)
		q.stats.drop(DropSpoolError)
	}
	b.payload = bytes.Clone(b.payload) // the encoder reuses its buffer
	q.mem = append(q.mem, b)
	q.memBytes += int64(len(b.payload))
}

// store writes b as a segment, making room first: beyond max_bytes, or when the disk is
// full, the oldest segments go. It reports false when the disk refused the batch.
func (q *spoolQueue) store(b batch) bool {
	size := int64(spoolHeaderLen + len(b.payload))
	for len(q.entries) > 0 && q.bytes+size > q.maxBytes {
		q.makeRoom(DropSpoolFull)
		q.full.happened("spool: max_bytes reached: dropping the oldest batches", "dir", q.dir, "max_bytes", q.maxBytes)
	}
	e := spoolEntry{seq: b.id, created: b.created, size: size}
	madeRoom := false
	for {
		err := q.write(e, b.payload)
		if err == nil {
			q.entries = append(q.entries, e)
			q.bytes += size
			if !madeRoom {
				q.diskFull.over("spool: the disk has room again", "dir", q.dir)
			}
			return true
		}
		if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
			if len(q.entries) > 0 {
				q.diskFull.happened("spool: disk full: dropping the oldest batches to make room", "dir", q.dir, "err", err)
				q.makeRoom(DropDiskFull)
				madeRoom = true
				continue
			}
		}
		q.writeErr.happened("spool: cannot write; holding batches in memory until it can", "dir", q.dir, "err", err, "memory_batches", q.memMax)
		return false
	}
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

// head reads the oldest segment, dropping expired and corrupt ones on the way, or else
// returns the oldest batch held in memory.
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
			q.sending = e.seq
			return batch{id: e.seq, created: e.created, payload: data[spoolHeaderLen:]}, true
		}
		if err == nil {
			err = errors.New("checksum mismatch")
		}
		q.logger.Error("spool: unreadable segment; dropped", "file", path, "err", err)
		q.removeOldest(DropSpoolCorrupt)
	}
	if len(q.mem) > 0 {
		q.sending = q.mem[0].id
		return q.mem[0], true
	}
	return batch{}, false
}

// pop removes the batch head returned, unless it was dropped meanwhile to make room.
func (q *spoolQueue) pop(id uint64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch {
	case len(q.entries) > 0:
		if q.entries[0].seq == id {
			q.removeOldest("")
		}
		if q.bytes <= q.maxBytes/2 {
			q.full.over("spool: below half of max_bytes again", "dir", q.dir)
		}
	case len(q.mem) > 0:
		if q.mem[0].id == id {
			q.memBytes -= int64(len(q.mem[0].payload))
			q.mem[0] = batch{}
			q.mem = q.mem[1:]
		}
	}
}

// expire drops segments older than max_age: a receiver that has been away that long
// would reject or misplace them anyway.
func (q *spoolQueue) expire(now time.Time) {
	for len(q.entries) > 0 && now.Sub(q.entries[0].created) > q.maxAge {
		q.removeOldest(DropSpoolAge)
	}
	for len(q.entries) == 0 && len(q.mem) > 0 && now.Sub(q.mem[0].created) > q.maxAge {
		q.memBytes -= int64(len(q.mem[0].payload))
		q.mem[0] = batch{}
		q.mem = q.mem[1:]
		q.stats.drop(DropSpoolAge)
	}
}

// makeRoom drops the oldest segment, or the next oldest when the oldest is in flight, so
// that a batch counted as dropped is never delivered after all.
func (q *spoolQueue) makeRoom(reason string) {
	i := 0
	if q.entries[0].seq == q.sending && len(q.entries) > 1 {
		i = 1
	}
	q.remove(i, reason)
}

func (q *spoolQueue) removeOldest(reason string) { q.remove(0, reason) }

// remove unlinks segment i; a non-empty reason counts it as dropped. A
// segment that cannot be unlinked (read-only disk) is forgotten all the same: if it is
// still there at the next start, it is sent again, which receivers take without harm.
func (q *spoolQueue) remove(i int, reason string) {
	e := q.entries[i]
	path := filepath.Join(q.dir, e.fileName())
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		q.removeErr.happened("spool: cannot remove segments; a restart would send them again", "file", path, "err", err)
	} else {
		q.removeErr.over("spool: removing segments again", "dir", q.dir)
	}
	if i == 0 {
		q.entries = q.entries[1:]
	} else {
		q.entries = slices.Delete(q.entries, i, i+1)
	}
	q.bytes -= e.size
	if reason != "" {
		q.stats.drop(reason)
	}
}

func (q *spoolQueue) size() (int, int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.entries) + len(q.mem), q.bytes + q.memBytes
}

// close releases the lock; the segments stay for the next run. Batches held in memory
// because the disk refused them are written if it takes them now, else lost (logged).
func (q *spoolQueue) close() error {
	q.mu.Lock()
	for len(q.mem) > 0 && q.store(q.mem[0]) {
		q.memBytes -= int64(len(q.mem[0].payload))
		q.mem = q.mem[1:]
	}
	if n := len(q.mem); n > 0 {
		q.logger.Error("spool: stopping with batches the disk refused; they are lost", "dir", q.dir, "batches", n)
	}
	q.mu.Unlock()
	if err := q.lock.Close(); err != nil {
		return fmt.Errorf("spool: release %s: %w", q.lock.Name(), err)
	}
	return nil
}

// episode logs a kind of trouble once when it starts, then at most once a minute with
// the number of times it happened since, and once when it is over: a receiver or a disk
// that stays broken for hours makes a few lines, not one per batch.
type episode struct {
	logger   *slog.Logger
	level    slog.Level
	active   bool
	count    uint64    // occurrences since the last line
	total    uint64    // occurrences in this episode
	lastLine time.Time // when the last line was written
}

const episodeSummaryEvery = time.Minute

func newEpisode(logger *slog.Logger, level slog.Level) *episode {
	return &episode{logger: logger, level: level}
}

// happened records one occurrence; the caller serialises calls.
func (e *episode) happened(msg string, args ...any) {
	now := time.Now()
	e.total++
	if !e.active {
		e.active, e.count, e.lastLine = true, 0, now
		e.logger.Log(context.Background(), e.level, msg, args...)
		return
	}
	e.count++
	if now.Sub(e.lastLine) >= episodeSummaryEvery {
		e.logger.Log(context.Background(), e.level, msg+" (still)", append(args, "times_since_last_line", e.count, "times_in_all", e.total)...)
		e.count, e.lastLine = 0, now
	}
}

// over ends the episode, if one is going on.
func (e *episode) over(msg string, args ...any) {
	if !e.active {
		return
	}
	e.logger.Info(msg, append(args, "times_in_all", e.total)...)
	e.active, e.count, e.total = false, 0, 0
}
