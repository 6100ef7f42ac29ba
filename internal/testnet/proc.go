//go:build linux

package testnet

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// Line is one line of a process's standard output and the moment this process read it.
type Line struct {
	Time time.Time
	Text string
}

// Proc is a program running inside a node's namespace. Its standard output is split into
// lines stamped on arrival, which is how a benchmark times what the program reports.
type Proc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	err    error // from Wait, set before exited is closed

	mu      sync.Mutex
	lines   []Line        // read but not yet taken by Next
	partial []byte        // an unfinished last line
	more    chan struct{} // closed and replaced when lines grow
	stderr  bytes.Buffer  // the first stderrLimit bytes
}

const (
	stderrLimit = 1 << 20
	stopGrace   = 5 * time.Second
)

// Start runs a program inside a node's namespace (through `ip netns exec`). The program
// is killed if this process dies, and stopped when the network is closed.
func (n *Net) Start(name string, args ...string) (*Proc, error) {
	ns, err := n.NS(name)
	if err != nil {
		return nil, err
	}
	if len(args) == 0 {
		return nil, fmt.Errorf("testnet %s: start in %q: no program given", n.prefix, name)
	}
	p := &Proc{exited: make(chan struct{}), more: make(chan struct{})}
	p.cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...)
	p.cmd.Stdout = lineWriter{p}
	p.cmd.Stderr = stderrWriter{p}

	n.mu.Lock()
	defer n.mu.Unlock()
	if n.closed {
		return nil, fmt.Errorf("testnet %s: start %s in %q: network closed", n.prefix, args[0], name)
	}
	// The program dies with this process: ip(8) execs it, which keeps the death signal
	// StartPinned sets, so a test killed by its timeout leaves no agent behind to hold the
	// namespaces open. (The fork must happen on a pinned thread because Do's threads end.)
	exited, err := testkit.StartPinned(p.cmd)
	if err != nil {
		return nil, fmt.Errorf("start %s in namespace %s: %w", args[0], ns, err)
	}
	go func() {
		p.err = <-exited
		p.mu.Lock()
		if len(p.partial) > 0 {
			p.lines = append(p.lines, Line{Time: time.Now(), Text: string(p.partial)})
			p.partial = nil
		}
		p.mu.Unlock()
		close(p.exited)
	}()
	n.procs = append(n.procs, p)
	return p, nil
}

type lineWriter struct{ p *Proc }

func (w lineWriter) Write(b []byte) (int, error) {
	now := time.Now()
	p := w.p
	p.mu.Lock()
	defer p.mu.Unlock()
	rest := b
	for {
		i := bytes.IndexByte(rest, '\n')
		if i < 0 {
			break
		}
		text := string(rest[:i])
		if len(p.partial) > 0 {
			text = string(p.partial) + text
			p.partial = nil
		}
		p.lines = append(p.lines, Line{Time: now, Text: text})
		rest = rest[i+1:]
	}
	p.partial = append(p.partial, rest...)
	close(p.more)
	p.more = make(chan struct{})
	return len(b), nil
}

type stderrWriter struct{ p *Proc }

func (w stderrWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	if room := stderrLimit - w.p.stderr.Len(); room > 0 {
		w.p.stderr.Write(b[:min(len(b), room)])
	}
	return len(b), nil
}

// Next returns the next line of output, waiting for it until ctx is done. After the
// program has exited and every line has been taken it returns io.EOF.
func (p *Proc) Next(ctx context.Context) (Line, error) {
	for {
		p.mu.Lock()
		if len(p.lines) > 0 {
			l := p.lines[0]
			p.lines = p.lines[1:]
			p.mu.Unlock()
			return l, nil
		}
		more := p.more
		p.mu.Unlock()
		select {
		case <-more:
		case <-p.exited:
			p.mu.Lock()
			empty := len(p.lines) == 0
			p.mu.Unlock()
			if empty {
				return Line{}, io.EOF
			}
		case <-ctx.Done():
			return Line{}, ctx.Err()
		}
	}
}

// Stderr is what the program wrote to standard error so far (up to 1 MiB).
func (p *Proc) Stderr() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.TrimSpace(p.stderr.String())
}

// Exited is closed when the program has ended.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Err is the program's exit error (nil for status 0), once Exited is closed.
func (p *Proc) Err() error {
	<-p.exited
	return p.err
}

// Stop asks the program to end with SIGTERM, kills it after a grace period, and returns
// its exit error. Stopping a program that has ended only returns that error.
func (p *Proc) Stop() error {
	select {
	case <-p.exited:
		return p.err
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(stopGrace):
		p.cmd.Process.Kill()
		<-p.exited
	}
	return p.err
}
