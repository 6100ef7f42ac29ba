package failover

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

// Decisions: the values of a Record's decision field.
const (
	DecisionFailover    = "failover"     // a failover step succeeded: an RRset rewritten, a runbook ran
	DecisionFailback    = "failback"     // the same for a failback
	DecisionHeld        = "held"         // a failover was due but a guard rail held it
	DecisionDryRun      = "dry_run"      // dry_run: what would have been done
	DecisionAlreadyDone = "already_done" // the RRset held the target already (another view did it)
	DecisionConflict    = "conflict"     // the RRset held neither what was expected nor the target
	DecisionRetry       = "retry"        // an attempt failed and will be retried
	DecisionError       = "error"        // given up, or a runbook failed
	DecisionHold        = "hold"         // the global hold was set
	DecisionRelease     = "release"      // the global hold was released
)

// Record is one line of the audit log: what was decided, why, what was done and what
// came of it (docs/architecture.md, "Failover").
type Record struct {
	Time     time.Time `json:"time"`
	Site     string    `json:"site,omitempty"`
	Decision string    `json:"decision"`
	Action   string    `json:"action,omitempty"` // failover or failback
	Who      string    `json:"who,omitempty"`    // "controller", or the operator
	Reason   string    `json:"reason,omitempty"`
	Why      *Why      `json:"why,omitempty"`
	DNS      *DNSStep  `json:"dns,omitempty"`
	Exec     *ExecStep `json:"exec,omitempty"`
	Rcode    string    `json:"rcode,omitempty"` // the server's answer (NOERROR, REFUSED, BADSIG, ...)
	Error    string    `json:"error,omitempty"`
	Attempt  int       `json:"attempt,omitempty"`
}

// Why is the verdict a decision rests on.
type Why struct {
	Verdict       string    `json:"verdict"`
	Since         time.Time `json:"since"`
	Witnesses     int       `json:"witnesses"`
	Down          int       `json:"down"`
	DetectSeconds *float64  `json:"detect_seconds,omitempty"`
	Silenced      bool      `json:"silenced,omitempty"`
	LostFor       string    `json:"lost_for"`
}

// DNSStep is an RRset rewrite: from what the view expects to what it writes.
type DNSStep struct {
	Server string   `json:"server"`
	Zone   string   `json:"zone"`
	Name   string   `json:"name"`
	Type   string   `json:"type"`
	From   []string `json:"from"`
	To     []string `json:"to"`
	TTL    int      `json:"ttl"`
	// Found is what the server held when the prerequisite failed.
	Found []string `json:"found,omitempty"`
	// Seconds is how long the attempt took, update and any query after it.
	Seconds float64 `json:"seconds"`
}

// ExecStep is a runbook run.
type ExecStep struct {
	Command  []string `json:"command"`
	Exit     int      `json:"exit"` // -1 when it did not exit by itself
	TimedOut bool     `json:"timed_out,omitempty"`
	Output   string   `json:"output,omitempty"` // stdout and stderr, the first MaxOutputBytes
	Seconds  float64  `json:"seconds"`
}

// Audit log files in the state directory.
const (
	AuditFile    = "audit.log"
	auditOldFile = "audit.log.1"
	// auditKeep is how many records the controller keeps in memory for Audit; older
	// ones are in the files only.
	auditKeep = 1000
	// auditTail bounds what is read back of each file at start.
	auditTail = 2 << 20
)

// auditLog appends records to <dir>/audit.log, each line fsynced before append returns;
// past maxBytes the file is renamed to audit.log.1 (replacing the previous one) and a new
// one begun, so the log takes at most about twice maxBytes.
type auditLog struct {
	dir      string
	maxBytes int64
	f        *os.File
	size     int64
	recent   []Record // oldest first, at most auditKeep
}

func openAudit(dir string, maxBytes int64) (*auditLog, error) {
	a := &auditLog{dir: dir, maxBytes: maxBytes}
	for _, name := range []string{auditOldFile, AuditFile} {
		a.recent = append(a.recent, readTail(filepath.Join(dir, name))...)
	}
	if len(a.recent) > auditKeep {
		a.recent = a.recent[len(a.recent)-auditKeep:]
	}
	if err := a.open(); err != nil {
		return nil, err
	}
	return a, nil
}

func (a *auditLog) open() error {
	f, err := os.OpenFile(filepath.Join(a.dir, AuditFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("audit log: %w", err)
	}
	a.f, a.size = f, fi.Size()
	if a.size > 0 && !endsWithNewline(a.f.Name()) {
		// A crash in the middle of a line: end it, so the next record starts clean.
		n, _ := a.f.Write([]byte("\n"))
		a.size += int64(n)
	}
	return nil
}

func endsWithNewline(name string) bool {
	f, err := os.Open(name)
	if err != nil {
		return true
	}
	defer f.Close()
	b := make([]byte, 1)
	fi, err := f.Stat()
	if err != nil || fi.Size() == 0 {
		return true
	}
	if _, err := f.ReadAt(b, fi.Size()-1); err != nil {
		return true
	}
	return b[0] == '\n'
}

// readTail reads the records in the last auditTail bytes of a log file; lines that do
// not parse (a line cut by a crash) are skipped.
func readTail(name string) []Record {
	f, err := os.Open(name)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return nil
	}
	off := max(0, fi.Size()-auditTail)
	data, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return nil
	}
	if off > 0 {
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			data = data[i+1:] // the first line is cut
		}
	}
	var out []Record
	for line := range bytes.SplitSeq(data, []byte("\n")) {
		var r Record
		if len(line) > 0 && json.Unmarshal(line, &r) == nil && r.Decision != "" {
			out = append(out, r)
		}
	}
	return out
}

// append writes one record and fsyncs it. The record is kept for Audit even when the
// write fails, so that the page still shows it.
func (a *auditLog) append(r Record) error {
	a.recent = append(a.recent, r)
	if len(a.recent) > auditKeep+auditKeep/4 {
		a.recent = append(a.recent[:0:0], a.recent[len(a.recent)-auditKeep:]...)
	}
	line, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("audit log: encode: %w", err)
	}
	line = append(line, '\n')
	if a.f == nil {
		if err := a.open(); err != nil {
			return err
		}
	}
	if a.size > 0 && a.size+int64(len(line)) > a.maxBytes {
		if err := a.rotate(); err != nil {
			return err
		}
	}
	n, err := a.f.Write(line)
	a.size += int64(n)
	if err == nil {
		err = a.f.Sync()
	}
	if err != nil {
		return fmt.Errorf("audit log: %w", err)
	}
	return nil
}

func (a *auditLog) rotate() error {
	a.f.Close()
	a.f = nil
	cur, old := filepath.Join(a.dir, AuditFile), filepath.Join(a.dir, auditOldFile)
	if err := os.Rename(cur, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("audit log: rotate: %w", err)
	}
	if err := syncDir(a.dir); err != nil {
		return fmt.Errorf("audit log: rotate: %w", err)
	}
	return a.open()
}

// latest returns up to limit records, newest first.
func (a *auditLog) latest(limit int) []Record {
	n := min(limit, len(a.recent))
	out := make([]Record, n)
	for i := range n {
		out[i] = a.recent[len(a.recent)-1-i]
	}
	return out
}

func (a *auditLog) close() error {
	if a.f == nil {
		return nil
	}
	err := a.f.Close()
	a.f = nil
	return err
}

// syncDir makes a rename or a new file in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
