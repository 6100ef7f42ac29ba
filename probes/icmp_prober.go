//go:build linux

package probes

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// icmpProber probes one ICMPSpec through the shared engine.
type icmpProber struct {
	spec     ICMPSpec
	network  string     // "ip", "ip4", "ip6"
	literal  netip.Addr // the address when it is an IP literal: Start needs no lookup
	engine   *ICMPEngine
	resolver *Resolver
	waiter   icmpWaiter
	packet   [2][]byte // echo request templates, [0] IPv4, [1] IPv6
	dstIP    netip.Addr
	dstAddr  net.Addr     // WriteTo address for dstIP, used when it has a zone
	dstSa    icmpSockaddr // the same in the kernel's layout, for sendto
	dstSock  *icmpSocket
	seq      uint16 // sequence of the probe in flight, for Expire

	// The socket's write callback and its inputs and output, made once so that a send
	// allocates nothing.
	writeFn  func(fd uintptr) bool
	writePkt []byte
	writeErr unix.Errno
}

var (
	_ Prober      = (*icmpProber)(nil)
	_ AsyncProber = (*icmpProber)(nil)
)

func newICMPProber(spec ICMPSpec, env *Env) (*icmpProber, error) {
	network := familyNetwork(spec.Family)
	if env == nil || env.ICMP == nil {
		return nil, errors.New("icmp: no ICMP engine in the probe environment")
	}
	p := &icmpProber{
		spec: spec, network: network, engine: env.ICMP, resolver: env.resolver(),
		waiter: icmpWaiter{reply: make(chan icmpReply, 1)},
	}
	p.writeFn = p.write
	var err error
	if ip, err := netip.ParseAddr(spec.Address); err == nil && ip.Zone() == "" {
		// The resolver returns a literal as it is, so Start may skip it.
		p.literal = ip.Unmap()
	}
	for i, typ := range []icmp.Type{ipv4.ICMPTypeEcho, ipv6.ICMPTypeEchoRequest} {
		msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: int(env.ICMP.id), Data: make([]byte, spec.Size)}}
		// Without a pseudo header the ICMPv6 checksum stays zero: the kernel fills it in.
		if p.packet[i], err = msg.Marshal(nil); err != nil {
			return nil, fmt.Errorf("build echo request: %w", err)
		}
	}
	return p, nil
}

// Probe sends one echo request and waits for its reply until ctx is done.
func (p *icmpProber) Probe(ctx context.Context) Result {
	start := time.Now()
	ip, err := p.resolver.LookupAddr(ctx, p.spec.Address, p.network)
	if err != nil {
		return failure(start, ReasonResolve, err.Error())
	}
	// The waiter's channel is empty here: a reply is sent only to a registered waiter,
	// and every probe either receives it or, on timeout, unregisters first.
	w := &p.waiter
	w.done = nil
	if r, ok := p.send(ip); !ok {
		return r
	}
	p.dstSock.arm()
	select {
	case r := <-w.reply:
		return icmpResult(w.sent, r)
	case <-ctx.Done():
		p.dstSock.drain()
		if !p.dstSock.unregister(p.seq, w) {
			// The receiver took the waiter out: its reply is in the channel.
			return icmpResult(w.sent, <-w.reply)
		}
		return p.timeout()
	}
}

// Start sends one echo request and returns at once: done is called with the result when
// the reply is read (by Poll, which the caller calls after a batch of Starts, or by the
// receive goroutine that Poll arms), or by Expire when none came.
// This is what lets an agent run a thousand ICMP probes a second without a goroutine
// or a timer per probe. A host name needs a lookup that may block, so for one Start
// returns false and the caller runs Probe instead.
func (p *icmpProber) Start(done func(Result)) bool {
	if !p.literal.IsValid() {
		return false
	}
	p.waiter.done = done
	if r, ok := p.send(p.literal); !ok {
		done(r)
	}
	return true
}

// Expire ends the probe in flight as timed out, unless its reply won the race, in which
// case done has been or is being called with the reply.
func (p *icmpProber) Expire() {
	w := &p.waiter
	if w.done == nil || p.dstSock == nil {
		return
	}
	p.dstSock.drain()
	if p.dstSock.unregister(p.seq, w) {
		w.done(p.timeout())
	}
}

func (p *icmpProber) timeout() Result {
	sent := p.waiter.sent
	return Result{Start: sent, RTT: time.Since(sent), Reason: ReasonTimeout,
		Detail: fmt.Sprintf("no echo reply from %s", p.dstIP)}
}

// send registers the prober's waiter under a fresh sequence number and writes one echo
// request to ip; on failure it returns the failed probe's result and false.
func (p *icmpProber) send(ip netip.Addr) (Result, bool) {
	sock, err := p.engine.socket(ip.Is6())
	if err != nil {
		var perm *ICMPPermissionError
		if errors.As(err, &perm) {
			return failure(time.Now(), ReasonPermission, err.Error()), false
		}
		return failure(time.Now(), ReasonError, err.Error()), false
	}
	if ip != p.dstIP || sock != p.dstSock {
		p.dstIP, p.dstSock, p.dstAddr, p.dstSa = ip, sock, sock.netAddr(ip), newICMPSockaddr(ip)
	}
	pkt := p.packet[0]
	if ip.Is6() {
		pkt = p.packet[1]
	}
	w := &p.waiter
	w.dst = ip.WithZone("")
	w.sent = time.Now()
	w.token = uint64(w.sent.UnixNano())
	seq, err := sock.register(w)
	if err != nil {
		return failure(w.sent, ReasonError, err.Error()), false
	}
	p.seq = seq
	binary.BigEndian.PutUint16(pkt[6:], seq)
	binary.BigEndian.PutUint64(pkt[8:], w.token)
	if !ip.Is6() {
		binary.BigEndian.PutUint16(pkt[2:], 0)
		binary.BigEndian.PutUint16(pkt[2:], icmpChecksum(pkt))
	}
	if err := p.writeTo(sock, pkt, ip); err != nil {
		sock.unregister(seq, w)
		return failure(w.sent, sendReason(err), fmt.Sprintf("send echo request to %s: %v", ip, err)), false
	}
	p.engine.stats.sent.Add(1)
	return Result{}, true
}

// writeTo sends pkt to ip, itself (see icmp_syscall.go) unless ip has a zone.
func (p *icmpProber) writeTo(sock *icmpSocket, pkt []byte, ip netip.Addr) error {
	if ip.Zone() != "" {
		_, err := sock.conn.WriteTo(pkt, p.dstAddr)
		return err
	}
	p.writePkt = pkt
	if err := sock.raw.Write(p.writeFn); err != nil {
		return err
	}
	if p.writeErr != 0 {
		return os.NewSyscallError("sendto", p.writeErr)
	}
	return nil
}

// write is the syscall.RawConn write callback: false asks the poller to wait for room.
func (p *icmpProber) write(fd uintptr) bool {
	p.writeErr = sendto(fd, p.writePkt, &p.dstSa)
	return p.writeErr != unix.EAGAIN
}

func sendReason(err error) Reason {
	switch {
	case errors.Is(err, syscall.EHOSTUNREACH), errors.Is(err, syscall.ENETUNREACH):
		return ReasonUnreachable
	case isPermission(err):
		return ReasonPermission
	}
	return ReasonError
}
