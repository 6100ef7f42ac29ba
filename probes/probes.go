package probes

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"
)

// Env holds what probers share: the ICMP engine's sockets and the name cache. The agent
// builds one Env and passes it to every New.
type Env struct {
	ICMP *ICMPEngine // required for KindICMP
	// Resolver resolves target host names; nil means one shared Resolver that reads
	// /etc/resolv.conf and /etc/hosts.
	Resolver *Resolver
}

func (e *Env) resolver() *Resolver {
	if e != nil && e.Resolver != nil {
		return e.Resolver
	}
	return defaultResolver()
}

// constructor builds a Prober from a spec value of its kind.
type constructor func(spec any, env *Env) (Prober, error)

// constructors is the one place that maps a Kind to its code.
var constructors = map[Kind]constructor{
	KindICMP: typed(newICMPProber),
	KindDNS:  typed(newDNSProber),
	KindHTTP: typed(newHTTPProber),
	KindTCP:  typed(newTCPProber),
}

// specRules are the methods every spec has (validate.go): its defaults and its bounds.
type specRules[S any] interface {
	*S
	Complete(Written)
	Validate() FieldErrors
}

// typed adapts a constructor of one spec type to the any-typed map entry. It accepts the
// spec by value or by pointer, fills its defaults and checks it, so that a constructor
// receives a spec that meets every rule a config file is held to.
func typed[S any, PS specRules[S], P Prober](build func(S, *Env) (P, error)) constructor {
	return func(spec any, env *Env) (Prober, error) {
		var s S
		switch v := spec.(type) {
		case S:
			s = v
		case *S:
			if v == nil {
				return nil, fmt.Errorf("spec is a nil %T", spec)
			}
			s = *v
		default:
			return nil, fmt.Errorf("spec is %T, want %T", spec, s)
		}
		PS(&s).Complete(nil)
		if err := PS(&s).Validate().err(); err != nil {
			return nil, err
		}
		p, err := build(s, env)
		if err != nil {
			return nil, err
		}
		return p, nil
	}
}

// New completes and validates spec (a probes.*Spec value or pointer of kind's type) and
// returns a Prober for it. Errors name the spec field at fault.
func New(kind Kind, spec any, env *Env) (Prober, error) {
	build, ok := constructors[kind]
	if !ok {
		return nil, fmt.Errorf("probe kind %q: unknown (want icmp, dns, http or tcp)", kind)
	}
	p, err := build(spec, env)
	if err != nil {
		return nil, fmt.Errorf("%s probe: %w", kind, err)
	}
	return p, nil
}

func failure(start time.Time, reason Reason, detail string) Result {
	return Result{Start: start, RTT: time.Since(start), Reason: reason, Detail: detail}
}

// familyNetwork maps a validated spec's Family to the network name net and Resolver use.
func familyNetwork(family string) string {
	if family == "" {
		return "ip"
	}
	return family
}

// reasonOf maps a dial, TLS or I/O error onto the failure vocabulary.
func reasonOf(err error) Reason {
	var (
		resolveErr *ResolveError
		netErr     net.Error
		verifyErr  *tls.CertificateVerificationError
		alertErr   tls.AlertError
		recordErr  tls.RecordHeaderError
		unknownCA  x509.UnknownAuthorityError
		hostErr    x509.HostnameError
		invalidErr x509.CertificateInvalidError
		opErr      *net.OpError
	)
	switch {
	case errors.As(err, &resolveErr):
		return ReasonResolve
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &netErr) && netErr.Timeout():
		return ReasonTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return ReasonRefused
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return ReasonUnreachable
	case errors.As(err, &verifyErr), errors.As(err, &alertErr), errors.As(err, &recordErr),
		errors.As(err, &unknownCA), errors.As(err, &hostErr), errors.As(err, &invalidErr),
		// crypto/tls reports an alert from the peer (such as "certificate required") so.
		errors.As(err, &opErr) && opErr.Op == "remote error":
		return ReasonTLS
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNRESET):
		// The peer hung up before a complete answer.
		return ReasonProtocol
	}
	return ReasonError
}
