package probes

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
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
	host, _, _ := net.SplitHostPort(spec.Address)
	p := &tcpProber{spec: spec, network: familyNetwork(spec.Family), host: host, resolver: env.resolver()}
	if spec.TLS.Enable {
		var err error
		if p.tls, err = spec.TLS.ClientConfig(); err != nil {
			return nil, err
		}
		if p.tls.ServerName == "" {
			p.tls.ServerName = host
		}
	}
	return p, nil
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
	var expiry time.Time
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
		expiry = earliestExpiry(tconn.ConnectionState().PeerCertificates)
	}
	return Result{Start: start, OK: true, RTT: time.Since(start), Phases: phases, CertExpiry: expiry}
}
