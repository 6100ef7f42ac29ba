//go:build linux

package probes

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/bpf"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// ICMPEngine sends ICMP echo requests for many targets over one socket per address
// family. It is safe for concurrent use; Close releases the sockets and their receivers.
type ICMPEngine struct {
	mode ICMPMode
	id   uint16 // echo identifier in raw mode

	mu     sync.Mutex
	v4, v6 *icmpSocket
	closed bool

	stats struct {
		sent, matched, wrongHost, wrongID, unknownSeq, receiveErrors, timestamped atomic.Uint64
	}
}

// NewICMPEngine returns an engine for mode ("" means ICMPAuto). Sockets are opened
// lazily, on the first probe of each address family, so an agent without IPv6 targets
// never needs an IPv6 socket.
func NewICMPEngine(mode ICMPMode) (*ICMPEngine, error) {
	switch mode {
	case "":
		mode = ICMPAuto
	case ICMPAuto, ICMPRaw, ICMPDatagram:
	default:
		return nil, fmt.Errorf("icmp mode %q: must be %q, %q or %q", mode, ICMPAuto, ICMPRaw, ICMPDatagram)
	}
	return &ICMPEngine{mode: mode, id: uint16(rand.UintN(1 << 16))}, nil
}

// Poll reads and matches every reply already queued on the engine's sockets, without
// waiting, and has the receive goroutine wait for the replies still to come. A scheduler
// that sent a batch of probes with Start calls it after the batch: see icmpSocket.arm.
func (e *ICMPEngine) Poll() {
	e.mu.Lock()
	socks := [2]*icmpSocket{e.v4, e.v6}
	e.mu.Unlock()
	for _, s := range socks {
		if s != nil {
			s.drain()
			if s.awaiting() {
				s.arm()
			}
		}
	}
}

// Stats returns the engine's counters so far.
func (e *ICMPEngine) Stats() ICMPStats {
	return ICMPStats{
		Sent:          e.stats.sent.Load(),
		Matched:       e.stats.matched.Load(),
		WrongHost:     e.stats.wrongHost.Load(),
		WrongID:       e.stats.wrongID.Load(),
		UnknownSeq:    e.stats.unknownSeq.Load(),
		ReceiveErrors: e.stats.receiveErrors.Load(),
		Timestamped:   e.stats.timestamped.Load(),
	}
}

// Close closes the sockets and waits for their receive goroutines to end. Probes still
// waiting return at their deadline with ReasonTimeout; later probes fail.
func (e *ICMPEngine) Close() error {
	e.mu.Lock()
	e.closed = true
	socks := []*icmpSocket{e.v4, e.v6}
	e.v4, e.v6 = nil, nil
	e.mu.Unlock()
	var errs []error
	for _, s := range socks {
		if s == nil {
			continue
		}
		close(s.closing)
		errs = append(errs, s.conn.Close())
		<-s.done
	}
	return errors.Join(errs...)
}

// icmpSocket is one shared socket and its receiver.
type icmpSocket struct {
	engine   *ICMPEngine
	ipv6     bool
	datagram bool
	conn     net.PacketConn // *net.IPConn (raw) or *net.UDPConn (datagram)
	raw      syscall.RawConn
	done     chan struct{} // closed when the receive goroutine ends
	closing  chan struct{} // closed by Close, for a receive goroutine that is not reading
	armed    chan struct{} // capacity 1: replies are awaited, the receive goroutine should read
	errMu    sync.Mutex    // guards errBuf and errOOB
	errBuf   []byte        // datagram mode: buffers for reading the error queue
	errOOB   []byte

	drainMu sync.Mutex  // one drain at a time; it has buffers of its own
	drainer *icmpReader // made on the first drain

	mu      sync.Mutex
	seq     uint16
	waiters map[uint16]*icmpWaiter
}

// icmpWaiter is one outstanding probe. A prober owns one and reuses it, because the
// scheduler never runs two probes of one target at once.
type icmpWaiter struct {
	dst   netip.Addr
	token uint64
	sent  time.Time
	reply chan icmpReply // Probe waits here; capacity 1: the receiver never blocks on it
	done  func(Result)   // set by Start instead: the receiver completes the probe itself
}

// Open opens the socket of one family now rather than at its first probe, so that a
// missing permission stops an agent at start with a clear error instead of showing up
// as failed probes.
func (e *ICMPEngine) Open(v6 bool) error {
	_, err := e.socket(v6)
	return err
}

// socket returns the shared socket for the family, opening it on first use.
func (e *ICMPEngine) socket(v6 bool) (*icmpSocket, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, errors.New("icmp engine is closed")
	}
	slot := &e.v4
	if v6 {
		slot = &e.v6
	}
	if *slot != nil {
		return *slot, nil
	}
	s, err := e.open(v6)
	if err != nil {
		return nil, err
	}
	*slot = s
	go s.receive()
	return s, nil
}

func (e *ICMPEngine) open(v6 bool) (*icmpSocket, error) {
	family := "ip4"
	if v6 {
		family = "ip6"
	}
	perm := &ICMPPermissionError{Mode: e.mode, Family: family}
	if e.mode != ICMPDatagram {
		conn, err := listenRaw(v6)
		if err == nil {
			return e.newSocket(conn, v6, false)
		}
		if !isPermission(err) {
			return nil, fmt.Errorf("open raw %s ICMP socket: %w", family, err)
		}
		perm.Raw = err
	}
	if e.mode != ICMPRaw {
		conn, err := listenDatagram(v6)
		if err == nil {
			return e.newSocket(conn, v6, true)
		}
		if !isPermission(err) {
			return nil, fmt.Errorf("open datagram %s ICMP socket: %w", family, err)
		}
		perm.Dgram = err
	}
	return nil, perm
}

func listenRaw(v6 bool) (net.PacketConn, error) {
	if v6 {
		return net.ListenPacket("ip6:ipv6-icmp", "::")
	}
	return net.ListenPacket("ip4:icmp", "0.0.0.0")
}

// listenDatagram opens a ping socket bound to the wildcard address; the kernel picks
// the echo identifier as it picks an ephemeral port.
func listenDatagram(v6 bool) (net.PacketConn, error) {
	domain, proto := unix.AF_INET, unix.IPPROTO_ICMP
	var sa unix.Sockaddr = &unix.SockaddrInet4{}
	if v6 {
		domain, proto = unix.AF_INET6, unix.IPPROTO_ICMPV6
		sa = &unix.SockaddrInet6{}
	}
	fd, err := unix.Socket(domain, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, proto)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return nil, os.NewSyscallError("bind", err)
	}
	f := os.NewFile(uintptr(fd), "icmp-datagram")
	defer f.Close()
	return net.FilePacketConn(f)
}

func (e *ICMPEngine) newSocket(conn net.PacketConn, v6, datagram bool) (*icmpSocket, error) {
	s := &icmpSocket{
		engine: e, ipv6: v6, datagram: datagram, conn: conn,
		done: make(chan struct{}), closing: make(chan struct{}), armed: make(chan struct{}, 1),
		waiters: make(map[uint16]*icmpWaiter),
		seq:     uint16(rand.UintN(1 << 16)),
	}
	if err := s.setup(); err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

func (s *icmpSocket) setup() error {
	sc, ok := s.conn.(syscall.Conn)
	if !ok {
		return fmt.Errorf("icmp socket %T has no descriptor", s.conn)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	s.raw = rc
	type option struct {
		name         string
		level, value int
	}
	opts := []option{{"SO_TIMESTAMPNS", unix.SOL_SOCKET, unix.SO_TIMESTAMPNS}}
	if s.datagram {
		// Ping sockets hear of ICMP errors for their echoes only through the error queue.
		if s.ipv6 {
			opts = append(opts, option{"IPV6_RECVERR", unix.SOL_IPV6, unix.IPV6_RECVERR})
		} else {
			opts = append(opts, option{"IP_RECVERR", unix.SOL_IP, unix.IP_RECVERR})
		}
	}
	for _, o := range opts {
		var sockErr error
		if err := rc.Control(func(fd uintptr) {
			sockErr = unix.SetsockoptInt(int(fd), o.level, o.value, 1)
		}); err != nil {
			return err
		}
		if sockErr != nil {
			return fmt.Errorf("enable %s on icmp socket: %w", o.name, sockErr)
		}
	}
	if s.datagram {
		s.errBuf, s.errOOB = make([]byte, 576), make([]byte, 256)
		return nil
	}
	prog, err := echoIDFilter(s.ipv6, s.engine.id)
	if err != nil {
		return fmt.Errorf("assemble icmp socket filter: %w", err)
	}
	if s.ipv6 {
		var f ipv6.ICMPFilter
		f.SetAll(true)
		f.Accept(ipv6.ICMPTypeEchoReply)
		f.Accept(ipv6.ICMPTypeDestinationUnreachable)
		c := ipv6.NewPacketConn(s.conn)
		return errors.Join(c.SetICMPFilter(&f), c.SetBPF(prog))
	}
	var f ipv4.ICMPFilter
	f.SetAll(true)
	f.Accept(ipv4.ICMPTypeEchoReply)
	f.Accept(ipv4.ICMPTypeDestinationUnreachable)
	c := ipv4.NewPacketConn(s.conn)
	return errors.Join(c.SetICMPFilter(&f), c.SetBPF(prog))
}

// echoIDFilter is a socket filter for a raw socket that drops echo replies carrying
// another identifier (other processes' pings) in the kernel, so they never wake the
// receiver. Everything else passes: the type filter has already cut the rest, and an
// unreachable's identifier sits in the quoted packet, checked by handleUnreachable.
// Raw IPv4 sockets see the IP header first; raw IPv6 sockets start at the ICMPv6 header.
func echoIDFilter(v6 bool, id uint16) ([]bpf.RawInstruction, error) {
	const accept, drop = ^uint32(0), 0
	loadType := []bpf.Instruction{bpf.LoadMemShift{Off: 0}, bpf.LoadIndirect{Off: 0, Size: 1}}
	var loadID bpf.Instruction = bpf.LoadIndirect{Off: 4, Size: 2}
	echoReply := uint32(ipv4.ICMPTypeEchoReply)
	if v6 {
		loadType = []bpf.Instruction{bpf.LoadAbsolute{Off: 0, Size: 1}}
		loadID = bpf.LoadAbsolute{Off: 4, Size: 2}
		echoReply = uint32(ipv6.ICMPTypeEchoReply)
	}
	prog := append(loadType,
		bpf.JumpIf{Cond: bpf.JumpNotEqual, Val: echoReply, SkipTrue: 2},
		loadID,
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(id), SkipFalse: 1},
		bpf.RetConstant{Val: accept},
		bpf.RetConstant{Val: drop},
	)
	return bpf.Assemble(prog)
}

// netAddr is the destination in the form the socket's WriteTo wants.
func (s *icmpSocket) netAddr(ip netip.Addr) net.Addr {
	if s.datagram {
		return net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0))
	}
	return &net.IPAddr{IP: ip.AsSlice(), Zone: ip.Zone()}
}

// register assigns a free sequence number to w.
func (s *icmpSocket) register(w *icmpWaiter) (uint16, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range 1 << 16 {
		s.seq++
		if _, busy := s.waiters[s.seq]; !busy {
			s.waiters[s.seq] = w
			return s.seq, nil
		}
	}
	return 0, errors.New("icmp: 65536 probes outstanding on one socket")
}

// unregister removes w if it is still waiting and reports whether it was.
func (s *icmpSocket) unregister(seq uint16, w *icmpWaiter) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.waiters[seq] != w {
		return false
	}
	delete(s.waiters, seq)
	return true
}
