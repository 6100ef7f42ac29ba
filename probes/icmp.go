package probes

// ICMP echo probes.
//
// Raw or datagram sockets. A raw ICMP socket (SOCK_RAW, "ip4:icmp"/"ip6:ipv6-icmp") needs
// root or CAP_NET_RAW and receives a copy of every ICMP message that reaches the host, so
// the receiver must pick its own replies out by echo identifier. A datagram "ping socket"
// (SOCK_DGRAM with IPPROTO_ICMP/IPPROTO_ICMPV6) needs no privilege, only a group id inside
// the sysctl net.ipv4.ping_group_range (which governs IPv6 ping sockets too; Debian ships
// "1 0", which admits nobody). The kernel then owns the echo identifier: it rewrites it to
// the socket's local "port" and delivers to the socket only the replies that carry it, so
// in that mode replies are told apart by sequence number and source address alone.
// ICMPAuto tries raw first, then datagram, per address family. Raw sockets carry a kernel
// ICMP type filter and a BPF program that drops other processes' echo replies by
// identifier, so that the host's other ICMP traffic never wakes the receiver.
//
// Why one shared socket per family. Issue 5 measured 1000 loopback targets at 1 s:
// one continuous pro-bing Pinger per target costs 81% of a core with raw sockets and 17%
// with datagram sockets, because every Pinger owns a socket, goroutines and tickers, and
// every raw socket wakes up for every reply on the host. The floor is the kernel's own
// work, two syscalls per probe. So the engine keeps exactly one socket per address family
// (opened on the first target of that family) and one receive goroutine per socket. A
// probe registers a waiter under a fresh sequence number, sends one echo request and waits
// on its context; the receive goroutine hands each reply to the waiter registered under
// its sequence. An idle target costs nothing: no goroutine, no timer, no socket.
//
// Timestamps come from the kernel (SO_TIMESTAMPNS), taken when the reply entered the
// host, so a busy receive goroutine or a slow scheduler does not inflate the RTT. That is
// why the engine opens its sockets itself rather than through icmp.ListenPacket, which
// hides the descriptor the socket options need; golang.org/x/net/icmp still builds the
// echo messages and golang.org/x/net/ipv4 and ipv6 install the type filters.
//
// ICMP destination unreachable for one of our echoes fails that probe at once with
// ReasonUnreachable. A raw socket reads the error like any message and finds our echo in
// the quoted original packet; a ping socket gets it only from its error queue
// (IP_RECVERR), where the kernel has already matched it to the socket.
//
// pro-bing keeps the job it does well: Ping, the one-off multi-packet ping behind
// `edgeprobe probe icmp --count N`.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	probing "github.com/prometheus-community/pro-bing"
	"golang.org/x/net/bpf"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

// DefaultICMPSize is ICMPSpec.Size's default: the payload size of ping(8).
const DefaultICMPSize = 56

// icmpTokenLen is the part of the payload that carries a per-probe token, so that a late
// reply to an earlier probe that reused the sequence number is never taken as an answer.
const icmpTokenLen = 8

// ICMPStats counts what the engine's receivers saw, for tests and diagnostics.
type ICMPStats struct {
	Sent          uint64 // echo requests written
	Matched       uint64 // replies (or unreachables) handed to a waiting probe
	WrongHost     uint64 // reply to a registered sequence from another address: dropped
	WrongID       uint64 // raw mode: echo identifier not ours (another process's ping): dropped
	UnknownSeq    uint64 // no probe waits for this sequence (late, duplicate, stale token): dropped
	ReceiveErrors uint64 // failed reads other than the socket being closed
	Timestamped   uint64 // messages that carried a kernel receive timestamp
}

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

// ICMPPermissionError says that the OS refused the ICMP socket and what to grant.
type ICMPPermissionError struct {
	Mode   ICMPMode // the mode asked for
	Family string   // "ip4" or "ip6"
	Raw    error    // why the raw socket failed, nil when raw was not tried
	Dgram  error    // why the datagram socket failed, nil when datagram was not tried
}

func (e *ICMPPermissionError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "open %s ICMP socket (mode %s): ", e.Family, e.Mode)
	var tried []string
	if e.Raw != nil {
		tried = append(tried, "raw: "+e.Raw.Error())
	}
	if e.Dgram != nil {
		tried = append(tried, "datagram: "+e.Dgram.Error())
	}
	b.WriteString(strings.Join(tried, "; "))
	const grantRaw = "run as root or grant CAP_NET_RAW (setcap cap_net_raw+ep on the binary, or AmbientCapabilities=CAP_NET_RAW in the systemd unit)"
	const grantDgram = `allow ping sockets for the agent's group: sysctl -w net.ipv4.ping_group_range="0 2147483647" (persist it in /etc/sysctl.d/)`
	switch e.Mode {
	case ICMPRaw:
		b.WriteString(": " + grantRaw)
	case ICMPDatagram:
		b.WriteString(": " + grantDgram)
	default:
		b.WriteString(": either " + grantDgram + ", or " + grantRaw)
	}
	return b.String()
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

type icmpReply struct {
	rtt         time.Duration
	unreachable string // non-empty: an ICMP error for our echo, described
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

func isPermission(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) || errors.Is(err, os.ErrPermission)
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

func (s *icmpSocket) receive() {
	defer close(s.done)
	r := &icmpReader{buf: make([]byte, 1<<16), oob: make([]byte, 128)}
	r.fn = r.read
	for {
		select {
		case <-s.armed:
		case <-s.closing:
			return
		}
		for s.awaiting() {
			err := s.raw.Read(r.fn)
			if err == nil && r.errno != 0 {
				err = os.NewSyscallError("recvmsg", r.errno)
			}
			now := time.Now()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				// A ping socket reports a queued ICMP error as a failed read.
				if s.datagram && s.drainErrorQueue() > 0 {
					continue
				}
				s.engine.stats.receiveErrors.Add(1)
				// A persistent error must not spin the CPU.
				time.Sleep(10 * time.Millisecond)
				continue
			}
			s.handleRead(r, now)
		}
	}
}

// arm wakes the receive goroutine to read until no probe awaits a reply.
//
// The receive goroutine reads only while armed. Probe arms it at once. Start does not:
// a scheduler that sends a batch then calls Poll, which reads the replies already there
// (from nearby hosts, loopback always, they are there before sendto returns) and arms
// the receiver only for those still to come. Were it always reading, every reply would
// wake it, and through the result it hands over the scheduler too, only to find the
// replies already taken. Expire reads what is queued before it gives up, so a probe is
// never failed for a reply that the kernel holds.
func (s *icmpSocket) arm() {
	select {
	case s.armed <- struct{}{}:
	default:
	}
}

// awaiting reports whether some probe waits for a reply on this socket.
func (s *icmpSocket) awaiting() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.waiters) > 0
}

// handleRead matches one message read into r, stamped by the kernel if it can be.
func (s *icmpSocket) handleRead(r *icmpReader, now time.Time) {
	if ts, ok := kernelTimestamp(r.oob[:r.oobn]); ok {
		now = ts
		s.engine.stats.timestamped.Add(1)
	}
	s.handle(r.buf[:r.n], sockaddrAddr(&r.from), now)
}

// drain reads and matches every message already queued on the socket, without waiting.
// Expire calls it before it declares a timeout: a reply that the kernel took in time
// but the receive goroutine has not been scheduled to read yet (a busy host, one
// processor) is an answer, not a timeout, and its kernel timestamp keeps its RTT true.
// It reads through Control, not Read: the receive goroutine holds the read lock while
// it waits for data. A failed read on a ping socket means a queued ICMP error, which is
// read from the error queue here too (drainErrorQueue).
func (s *icmpSocket) drain() {
	s.drainMu.Lock()
	defer s.drainMu.Unlock()
	if s.drainer == nil {
		s.drainer = &icmpReader{buf: make([]byte, 1<<16), oob: make([]byte, 128)}
	}
	r := s.drainer
	for {
		s.raw.Control(func(fd uintptr) {
			for {
				if r.n, r.oobn, r.errno = recvmsg(fd, r.buf, r.oob, &r.from, unix.MSG_DONTWAIT); r.errno != 0 {
					return
				}
				s.handleRead(r, time.Now())
			}
		})
		if r.errno == unix.EAGAIN || !s.datagram || s.drainErrorQueue() == 0 {
			return
		}
	}
}

// icmpReader holds the receive goroutine's buffers and its read callback, made once so
// that a read allocates nothing.
type icmpReader struct {
	buf, oob []byte
	from     unix.RawSockaddrAny
	n, oobn  int
	errno    unix.Errno
	fn       func(fd uintptr) bool
}

// read is the syscall.RawConn read callback: false asks the poller to wait for data.
func (r *icmpReader) read(fd uintptr) bool {
	r.n, r.oobn, r.errno = recvmsg(fd, r.buf, r.oob, &r.from, unix.MSG_DONTWAIT)
	return r.errno != unix.EAGAIN
}

// kernelTimestamp finds the SCM_TIMESTAMPNS control message. Its struct timespec has
// two 64-bit fields on 64-bit kernels' ABIs and two 32-bit fields on 32-bit ARM.
func kernelTimestamp(oob []byte) (time.Time, bool) {
	for len(oob) > 0 {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return time.Time{}, false
		}
		oob = rest
		if h.Level != unix.SOL_SOCKET || h.Type != unix.SCM_TIMESTAMPNS {
			continue
		}
		switch len(data) {
		case 16:
			return time.Unix(int64(binary.NativeEndian.Uint64(data)), int64(binary.NativeEndian.Uint64(data[8:]))), true
		case 8:
			return time.Unix(int64(int32(binary.NativeEndian.Uint32(data))), int64(int32(binary.NativeEndian.Uint32(data[4:])))), true
		}
	}
	return time.Time{}, false
}

// handle matches one received ICMP message to a waiting probe.
func (s *icmpSocket) handle(b []byte, from netip.Addr, received time.Time) {
	if !s.ipv6 && !s.datagram {
		// Raw IPv4 sockets deliver the IP header too.
		if len(b) < 20 {
			return
		}
		ihl := int(b[0]&0x0f) * 4
		if len(b) < ihl {
			return
		}
		b = b[ihl:]
	}
	if len(b) < 8 {
		return
	}
	typ := b[0]
	echoReply, unreach := byte(ipv4.ICMPTypeEchoReply), byte(ipv4.ICMPTypeDestinationUnreachable)
	if s.ipv6 {
		echoReply, unreach = byte(ipv6.ICMPTypeEchoReply), byte(ipv6.ICMPTypeDestinationUnreachable)
	}
	switch typ {
	case echoReply:
		id, seq := binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:])
		var token uint64
		if len(b) >= 8+icmpTokenLen {
			token = binary.BigEndian.Uint64(b[8:])
		}
		s.deliver(id, seq, from, token, true, received, "")
	case unreach:
		s.handleUnreachable(b, received)
	}
}

// handleUnreachable parses the quoted original packet of a destination unreachable
// message: its IP header says where our echo was going, the first 8 bytes after it are
// our echo header.
func (s *icmpSocket) handleUnreachable(b []byte, received time.Time) {
	code := b[1]
	quoted := b[8:]
	var dst netip.Addr
	if s.ipv6 {
		if len(quoted) < 40+8 || quoted[6] != 58 || quoted[40] != byte(ipv6.ICMPTypeEchoRequest) {
			return
		}
		dst = netip.AddrFrom16([16]byte(quoted[24:40]))
		quoted = quoted[40:]
	} else {
		if len(quoted) < 20 {
			return
		}
		ihl := int(quoted[0]&0x0f) * 4
		if len(quoted) < ihl+8 || quoted[9] != 1 || quoted[ihl] != byte(ipv4.ICMPTypeEcho) {
			return
		}
		dst = netip.AddrFrom4([4]byte(quoted[16:20]))
		quoted = quoted[ihl:]
	}
	id, seq := binary.BigEndian.Uint16(quoted[4:]), binary.BigEndian.Uint16(quoted[6:])
	s.deliver(id, seq, dst, 0, false, received, fmt.Sprintf("ICMP destination unreachable (code %d) for %s", code, dst))
}

// drainErrorQueue reads every queued ICMP error of a ping socket and returns how many
// there were. Each holds our echo's header as data, the echo's destination as source
// address and a sock_extended_err saying what happened.
//
// It reads through Control, never waiting (an empty queue ends the loop), so the
// receive goroutine and drain may both call it; errMu guards the buffers.
func (s *icmpSocket) drainErrorQueue() int {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	count := 0
	for {
		var n, oobn int
		var from unix.Sockaddr
		var readErr error
		err := s.raw.Control(func(fd uintptr) {
			n, oobn, _, from, readErr = unix.Recvmsg(int(fd), s.errBuf, s.errOOB, unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		})
		if err != nil || readErr != nil {
			return count
		}
		count++
		s.handleQueuedError(s.errBuf[:n], s.errOOB[:oobn], from)
	}
}

func (s *icmpSocket) handleQueuedError(b, oob []byte, from unix.Sockaddr) {
	received, ok := kernelTimestamp(oob)
	if !ok {
		received = time.Now()
	}
	var dst netip.Addr
	switch sa := from.(type) {
	case *unix.SockaddrInet4:
		dst = netip.AddrFrom4(sa.Addr)
	case *unix.SockaddrInet6:
		dst = netip.AddrFrom16(sa.Addr).Unmap()
	}
	if len(b) < 8 || !dst.IsValid() {
		return
	}
	level, typ, origin, unreach := unix.SOL_IP, unix.IP_RECVERR, uint8(unix.SO_EE_ORIGIN_ICMP), uint8(ipv4.ICMPTypeDestinationUnreachable)
	if s.ipv6 {
		level, typ, origin, unreach = unix.SOL_IPV6, unix.IPV6_RECVERR, unix.SO_EE_ORIGIN_ICMP6, uint8(ipv6.ICMPTypeDestinationUnreachable)
	}
	for len(oob) > 0 {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return
		}
		oob = rest
		// struct sock_extended_err: errno (4 bytes), origin, type, code, pad, info, data.
		if int(h.Level) != level || int(h.Type) != typ || len(data) < 8 {
			continue
		}
		if data[4] != origin || data[5] != unreach {
			return
		}
		id, seq := binary.BigEndian.Uint16(b[4:]), binary.BigEndian.Uint16(b[6:])
		s.deliver(id, seq, dst, 0, false, received, fmt.Sprintf("ICMP destination unreachable (code %d) for %s", data[6], dst))
		return
	}
}

// deliver hands a reply to the probe waiting for seq, or counts why it was dropped.
// Unreachables quote only 8 bytes of our echo, so their token cannot be checked.
func (s *icmpSocket) deliver(id, seq uint16, from netip.Addr, token uint64, checkToken bool, received time.Time, unreachable string) {
	st := &s.engine.stats
	if !s.datagram && id != s.engine.id {
		st.wrongID.Add(1)
		return
	}
	s.mu.Lock()
	w := s.waiters[seq]
	switch {
	case w == nil:
		s.mu.Unlock()
		st.unknownSeq.Add(1)
		return
	case w.dst != from:
		s.mu.Unlock()
		st.wrongHost.Add(1)
		return
	case checkToken && w.token != token:
		s.mu.Unlock()
		st.unknownSeq.Add(1)
		return
	}
	delete(s.waiters, seq)
	s.mu.Unlock()
	st.matched.Add(1)
	rtt := icmpRTT(w.sent, received, time.Since(w.sent))
	if w.done != nil {
		w.done(icmpResult(w.sent, icmpReply{rtt: rtt, unreachable: unreachable}))
		return
	}
	w.reply <- icmpReply{rtt: rtt, unreachable: unreachable}
}

// icmpRTT is the round trip from sent (with its monotonic reading) to received (a kernel
// timestamp: wall-clock time only). The kernel's stamp is the more exact, but a step of
// the wall clock between the two falsifies it, so it must lie between zero and elapsed,
// the monotonic time from sending to now, which the reply cannot have taken longer than;
// outside that, elapsed is the answer.
func icmpRTT(sent, received time.Time, elapsed time.Duration) time.Duration {
	if rtt := received.Sub(sent); rtt >= 0 && rtt <= elapsed {
		return rtt
	}
	return elapsed
}

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

func icmpResult(sent time.Time, r icmpReply) Result {
	if r.unreachable != "" {
		return Result{Start: sent, RTT: r.rtt, Reason: ReasonUnreachable, Detail: r.unreachable}
	}
	return Result{Start: sent, OK: true, RTT: r.rtt}
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

// icmpChecksum is the Internet checksum (RFC 1071) of an ICMPv4 message.
func icmpChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// Ping sends count echo requests one second apart to address with pro-bing, as ping(8)
// does, and returns one Result per request sent, in order. It opens its own socket: it
// is for one-off use (the CLI's `probe icmp --count N`), not for the agent's schedule.
// ctx bounds the whole run; requests without a reply by then are timeouts.
func Ping(ctx context.Context, address string, count int, mode ICMPMode) ([]Result, error) {
	if count < 1 {
		return nil, fmt.Errorf("count: %d, must be at least 1", count)
	}
	var privileged []bool
	switch mode {
	case ICMPAuto, "":
		mode, privileged = ICMPAuto, []bool{true, false}
	case ICMPRaw:
		privileged = []bool{true}
	case ICMPDatagram:
		privileged = []bool{false}
	default:
		return nil, fmt.Errorf("icmp mode %q: must be %q, %q or %q", mode, ICMPAuto, ICMPRaw, ICMPDatagram)
	}
	perm := &ICMPPermissionError{Mode: mode}
	for _, raw := range privileged {
		results, family, err := pingOnce(ctx, address, count, raw)
		if err == nil {
			return results, nil
		}
		if !isPermission(err) {
			return nil, fmt.Errorf("ping %s: %w", address, err)
		}
		perm.Family = family
		if raw {
			perm.Raw = err
		} else {
			perm.Dgram = err
		}
	}
	return nil, fmt.Errorf("ping %s: %w", address, perm)
}

// pingOnce runs one pro-bing Pinger; a Pinger cannot be run twice.
func pingOnce(ctx context.Context, address string, count int, privileged bool) ([]Result, string, error) {
	pinger := probing.New(address)
	pinger.Count = count
	pinger.Interval = time.Second
	pinger.Timeout = time.Duration(count)*pinger.Interval + time.Second
	pinger.RecordRtts = false
	pinger.RecordTTLs = false
	pinger.SetLogger(probing.NoopLogger{})
	pinger.SetPrivileged(privileged)
	if err := pinger.Resolve(); err != nil {
		return nil, "", fmt.Errorf("resolve: %w", err)
	}
	family := "ip6"
	if pinger.IPAddr().IP.To4() != nil {
		family = "ip4"
	}
	if deadline, ok := ctx.Deadline(); ok {
		pinger.Timeout = time.Until(deadline)
	}

	var mu sync.Mutex
	var results []Result
	pinger.OnSend = func(pkt *probing.Packet) {
		mu.Lock()
		defer mu.Unlock()
		results = append(results, Result{Start: time.Now(), Reason: ReasonTimeout,
			Detail: "no echo reply from " + pkt.IPAddr.String()})
	}
	pinger.OnRecv = func(pkt *probing.Packet) {
		mu.Lock()
		defer mu.Unlock()
		if pkt.Seq >= 0 && pkt.Seq < len(results) {
			results[pkt.Seq] = Result{Start: results[pkt.Seq].Start, OK: true, RTT: pkt.Rtt}
		}
	}
	err := pinger.RunWithContext(ctx)
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return nil, family, err
	}
	mu.Lock()
	defer mu.Unlock()
	return results, family, nil
}
