// Package probes sends one probe of one kind to one endpoint and reports what happened.
//
// A prober knows nothing about sites, schedules, state or exporters: it is given a
// context whose deadline is the probe's timeout and returns a Result. Every failure is
// reported with a Reason from one fixed vocabulary so that state machines, metrics and
// people can group failures without parsing error strings.
//
// One file per kind: icmp.go, dns.go, http.go, tcp.go, each beside its _test.go.
package probes

import (
	"context"
	"time"

	"github.com/edgeprobe/edgeprobe/contract"
)

// Kind names a probe protocol as it appears in configuration and output.
type Kind string

// The probe kinds edgeprobe knows.
const (
	KindICMP Kind = "icmp"
	KindDNS  Kind = "dns"
	KindHTTP Kind = "http"
	KindTCP  Kind = "tcp"
)

// Reason classifies a failed probe. The set is closed: every prober maps its errors
// onto one of these so that output and metrics have a bounded vocabulary.
type Reason string

// The failure vocabulary, named by the push contract (contract.FailureReasons), which
// also numbers it for edgeprobe_target_failure_reason. ReasonNone is the reason of a
// successful probe.
const (
	ReasonNone        Reason = ""
	ReasonTimeout     Reason = contract.ReasonTimeout     // no answer before the deadline
	ReasonRefused     Reason = contract.ReasonRefused     // connection refused (TCP RST, ICMP port unreachable)
	ReasonUnreachable Reason = contract.ReasonUnreachable // network/host unreachable, no route, ICMP dest unreachable
	ReasonResolve     Reason = contract.ReasonResolve     // the target's host name did not resolve
	ReasonRcode       Reason = contract.ReasonRcode       // DNS answered with an rcode not accepted
	ReasonAnswer      Reason = contract.ReasonAnswer      // DNS answer section did not hold what was expected
	ReasonStatus      Reason = contract.ReasonStatus      // HTTP status code not accepted
	ReasonBody        Reason = contract.ReasonBody        // HTTP body did not match, or exceeded its limit
	ReasonTLS         Reason = contract.ReasonTLS         // TLS handshake or certificate verification failed
	ReasonProtocol    Reason = contract.ReasonProtocol    // malformed or unexpected answer (bad DNS message, bad HTTP)
	ReasonPermission  Reason = contract.ReasonPermission  // the OS refused us (ICMP socket not permitted)
	ReasonError       Reason = contract.ReasonError       // anything else; Result.Detail says what
)

// Reasons lists every failure reason, in a stable order (the contract's), for metrics
// and docs.
var Reasons = func() []Reason {
	out := make([]Reason, len(contract.FailureReasons))
	for i, r := range contract.FailureReasons {
		out[i] = Reason(r)
	}
	return out
}()

// Result is the outcome of one probe.
type Result struct {
	Start  time.Time     // when the probe was sent (wall clock with monotonic reading)
	OK     bool          // the endpoint answered as expected
	RTT    time.Duration // send to answer; for failures, the time spent before giving up
	Reason Reason        // ReasonNone when OK
	Detail string        // a short human explanation of a failure, empty when OK
	Phases Phases        // per-phase timings where the kind has phases (HTTP, TCP+TLS, DNS)
	// CertExpiry is the earliest NotAfter among the certificates the server presented on
	// the probe's TLS connection (HTTPS: the one the answer came on; TCP with
	// tls.enable): blackbox_exporter's probe_ssl_earliest_cert_expiry. It is set whenever
	// a handshake completed, also when the probe failed afterwards (a wrong HTTP status, a
	// body that did not match), and zero when none did (no TLS, or a handshake that
	// failed, as an expired certificate's does unless insecure = true).
	CertExpiry time.Time
}

// Phases are the timings of a probe's steps, zero where a step did not happen.
// The names follow blackbox_exporter's probe_http_duration_seconds{phase=...}.
type Phases struct {
	Resolve    time.Duration // host name lookup
	Connect    time.Duration // TCP connect
	TLS        time.Duration // TLS handshake
	Processing time.Duration // request written to first response byte
	Transfer   time.Duration // first byte to end of body
}

// Prober probes one endpoint. Probe must return by ctx's deadline (plus scheduling
// noise) and must be safe to call again after it returns; the scheduler never calls
// Probe on one Prober concurrently. Probers that hold resources also implement io.Closer.
type Prober interface {
	Probe(ctx context.Context) Result
}

// AsyncProber is a Prober that can also run a probe without a goroutine of its own, for
// kinds whose answers arrive on a shared socket (ICMP). Start sends a probe and returns;
// done is then called exactly once with its result, from any goroutine (possibly from
// within Start or Expire), and must not block. Start returns false, doing nothing, when
// this probe cannot start without blocking: the caller runs Probe instead. The caller
// calls Expire at the probe's deadline; if no answer came by then, done gets a timeout.
// As with Probe, one prober never has two probes in flight.
type AsyncProber interface {
	Prober
	Start(done func(Result)) bool
	Expire()
}
