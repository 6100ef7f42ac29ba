//go:build linux

package probes

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

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
