package failover

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"
)

// MaxOutputBytes bounds what the audit log keeps of a runbook's output.
const MaxOutputBytes = 4 << 10

// RunbookInput is the JSON a runbook reads on its standard input; its environment
// carries the same as EDGEPROBE_* variables.
type RunbookInput struct {
	Site          string    `json:"site"`
	Action        string    `json:"action"` // failover or failback
	Verdict       string    `json:"verdict"`
	Since         time.Time `json:"since"`
	Witnesses     int       `json:"witnesses"`
	Down          int       `json:"down"`
	DetectSeconds *float64  `json:"detect_seconds,omitempty"`
	Time          time.Time `json:"time"` // when the controller decided
	Who           string    `json:"who"`  // "controller", or the operator of a manual failback
	Reason        string    `json:"reason,omitempty"`
}

// env is the input as environment variables.
func (in RunbookInput) env() []string {
	detect := ""
	if in.DetectSeconds != nil {
		detect = strconv.FormatFloat(*in.DetectSeconds, 'f', -1, 64)
	}
	return []string{
		"EDGEPROBE_SITE=" + in.Site,
		"EDGEPROBE_ACTION=" + in.Action,
		"EDGEPROBE_VERDICT=" + in.Verdict,
		"EDGEPROBE_SINCE=" + in.Since.UTC().Format(time.RFC3339Nano),
		"EDGEPROBE_WITNESSES=" + strconv.Itoa(in.Witnesses),
		"EDGEPROBE_DOWN=" + strconv.Itoa(in.Down),
		"EDGEPROBE_DETECT_SECONDS=" + detect,
		"EDGEPROBE_TIME=" + in.Time.UTC().Format(time.RFC3339Nano),
		"EDGEPROBE_WHO=" + in.Who,
		"EDGEPROBE_REASON=" + in.Reason,
	}
}

// boundedBuffer keeps the first max bytes written to it and counts the rest.
type boundedBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	max     int
	dropped int
}

func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	room := b.max - b.buf.Len()
	if room >= len(p) {
		b.buf.Write(p)
	} else {
		b.buf.Write(p[:max(room, 0)])
		b.dropped += len(p) - max(room, 0)
	}
	return len(p), nil
}

func (b *boundedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.dropped > 0 {
		return fmt.Sprintf("%s\n... (%d more bytes)", b.buf.String(), b.dropped)
	}
	return b.buf.String()
}

// run starts the runbook in a process group of its own, with the input in its
// environment (after the view's own) and on stdin, and waits for it at most Timeout;
// then the whole group is killed, so that a runbook's children cannot outlive it.
func (e *ExecAction) run(ctx context.Context, in RunbookInput) ExecStep {
	step := ExecStep{Command: e.Command, Exit: -1}
	start := time.Now()
	defer func() { step.Seconds = time.Since(start).Seconds() }()
	stdin, err := json.Marshal(in)
	if err != nil {
		step.Output = "encoding the input: " + err.Error()
		return step
	}
	cmd := exec.Command(e.Command[0], e.Command[1:]...)
	cmd.Env = append(os.Environ(), in.env()...)
	cmd.Stdin = bytes.NewReader(append(stdin, '\n'))
	out := &boundedBuffer{max: MaxOutputBytes}
	cmd.Stdout, cmd.Stderr = out, out
	// A child that keeps the output pipe open after the runbook exits must not hold the
	// controller: Wait gives up on the pipe this long after the exit.
	cmd.WaitDelay = time.Second
	ownGroup(cmd)
	if err := cmd.Start(); err != nil {
		step.Output = err.Error()
		return step
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	timer := time.NewTimer(e.Timeout.Duration)
	defer timer.Stop()
	select {
	case err = <-done:
	case <-timer.C:
		step.TimedOut = true
		killGroup(cmd)
		err = <-done
	case <-ctx.Done():
		killGroup(cmd)
		err = <-done
	}
	step.Output = out.String()
	if cmd.ProcessState != nil && cmd.ProcessState.Exited() {
		step.Exit = cmd.ProcessState.ExitCode()
	}
	if errors.Is(err, exec.ErrWaitDelay) {
		step.Output += "\n(the runbook exited, but a process it left kept its output open; not waited for)"
	}
	return step
}
