//go:build !linux

package probes

import "errors"

// The ICMP engine reads kernel timestamps, ICMP errors from a ping socket's error queue
// and installs BPF filters: Linux interfaces all. Elsewhere ICMP probes refuse to start
// with this error; `edgeprobe probe icmp` (Ping, through pro-bing) still works.
var errICMPNeedsLinux = errors.New("ICMP probes need Linux (the engine uses Linux socket options); other kinds work")

// ICMPEngine is the Linux engine's stand-in: it cannot be made.
type ICMPEngine struct{ id uint16 }

// NewICMPEngine fails: see errICMPNeedsLinux.
func NewICMPEngine(ICMPMode) (*ICMPEngine, error) { return nil, errICMPNeedsLinux }

// Open fails: see errICMPNeedsLinux.
func (e *ICMPEngine) Open(bool) error { return errICMPNeedsLinux }

// Poll does nothing.
func (e *ICMPEngine) Poll() {}

// Stats are all zero.
func (e *ICMPEngine) Stats() ICMPStats { return ICMPStats{} }

// Close does nothing.
func (e *ICMPEngine) Close() error { return nil }

func newICMPProber(ICMPSpec, *Env) (Prober, error) { return nil, errICMPNeedsLinux }
