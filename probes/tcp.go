package probes

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"strconv"
	"time"
)

// tcpProber connects to host:port and, when asked, completes a TLS handshake. Every probe
// opens a new connection and closes it at once.
type tcpProber struct {
	spec     TCPSpec
	network  string
	host     string
	tls      *tls.Config // nil without TLS.Enable
	resolver *Resolver
	dialer   net.Dialer
}

var _ Prober = (*tcpProber)(nil)

func newTCPProber(spec TCPSpec, env *Env) (*tcpProber, error) {
	host, err := splitHostPort(spec.Address)
	if err != nil {
		return nil, fmt.Errorf("address: %w", err)
	}
	network, err := familyNetwork(spec.Family)
	if err != nil {
		return nil, err
	}
	p := &tcpProber{spec: spec, network: network, host: host, resolver: env.resolver()}
	if spec.TLS.Enable {
		if p.tls, err = tlsConfig(spec.TLS); err != nil {
			return nil, err
		}
		if p.tls.ServerName == "" {
			p.tls.ServerName = host
		}
	}
	return p, nil
}

// splitHostPort checks a "host:port" address and returns its host.
func splitHostPort(address string) (string, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return "", fmt.Errorf("%q is not host:port: %v", address, err)
	}
	if host == "" {
		return "", fmt.Errorf("%q has no host", address)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("%q: port must be a number from 1 to 65535", address)
	}
	return host, nil
}

// Probe connects, optionally shakes hands, and closes.
func (p *tcpProber) Probe(ctx context.Context) Result {
	start := time.Now()
	conn, resolved, err := p.resolver.dialContext(ctx, &p.dialer, "tcp", p.network, p.spec.Address)
	phases := Phases{Resolve: resolved, Connect: time.Since(start) - resolved}
	if err != nil {
		r := failure(start, reasonOf(err), fmt.Sprintf("connect to %s: %v", p.spec.Address, err))
		r.Phases = phases
		return r
	}
	defer conn.Close()
	if p.tls != nil {
		handshakeStart := time.Now()
		tconn := tls.Client(conn, p.tls)
		err := tconn.HandshakeContext(ctx)
		phases.TLS = time.Since(handshakeStart)
		if err != nil {
			reason := reasonOf(err)
			if reason == ReasonError || reason == ReasonProtocol {
				reason = ReasonTLS
			}
			r := failure(start, reason, fmt.Sprintf("TLS handshake with %s: %v", p.spec.Address, err))
			r.Phases = phases
			return r
		}
	}
	return Result{Start: start, OK: true, RTT: time.Since(start), Phases: phases}
}
