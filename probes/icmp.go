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
// Why one shared socket per family. The footprint benchmark measured 1000 loopback targets at 1 s:
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
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"time"
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

type icmpReply struct {
	rtt         time.Duration
	unreachable string // non-empty: an ICMP error for our echo, described
}

func isPermission(err error) bool {
	return errors.Is(err, syscall.EPERM) || errors.Is(err, syscall.EACCES) || errors.Is(err, os.ErrPermission)
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

func icmpResult(sent time.Time, r icmpReply) Result {
	if r.unreachable != "" {
		return Result{Start: sent, RTT: r.rtt, Reason: ReasonUnreachable, Detail: r.unreachable}
	}
	return Result{Start: sent, OK: true, RTT: r.rtt}
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
