//go:build linux

package probes

// Hostile ICMP: forged echo replies, crafted as raw IPv4 packets
// in a site namespace of a test network, reach an engine in an edge namespace while it
// probes a target that does not answer by itself (icmp_echo_ignore_all). Only the
// exported API of the engine is used (NewICMPEngine, Open, Stats, New, Probe): the forger
// learns the echo identifier, sequence number and payload by sniffing the request on the
// target's side, as an on-path attacker would.

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/edgeprobe/edgeprobe/internal/testnet"
)

// echoRequest is a request seen by the sniffer.
type echoRequest struct {
	id, seq uint16
	data    []byte // payload after the 8-byte header: token, then padding
}

// icmpForger sniffs echo requests in the target's namespace and sends crafted replies.
type icmpForger struct {
	t      *testing.T
	sniff  *net.IPConn
	raw    *ipv4.RawConn
	seen   *net.IPConn // a witness in the prober's namespace: what arrived there
	dst    netip.Addr  // the prober's address
	target netip.Addr
}

func newICMPForger(t *testing.T, n *testnet.Net, site string, prober, target netip.Addr) *icmpForger {
	f := &icmpForger{t: t, dst: prober, target: target}
	err := n.Do(site, func() error {
		c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			return err
		}
		f.sniff = c.(*net.IPConn)
		w, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
		if err != nil {
			return err
		}
		// The forger's own socket receives every ICMP message too; it is never read, and
		// it is not needed to: a full receive buffer only drops.
		f.raw, err = ipv4.NewRawConn(w)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	err = n.Do("e0", func() error {
		c, err := net.ListenPacket("ip4:icmp", "0.0.0.0")
		if err == nil {
			f.seen = c.(*net.IPConn)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		f.sniff.Close()
		f.raw.Close()
		f.seen.Close()
	})
	return f
}

// arrived waits until the witness in the prober's namespace has seen an echo reply with
// this identifier and sequence, proving that a forged packet was not lost on the way.
func (f *icmpForger) arrived(id, seq uint16) {
	f.t.Helper()
	buf := make([]byte, 1500)
	f.seen.SetReadDeadline(time.Now().Add(time.Second))
	for {
		n, _, err := f.seen.ReadFrom(buf)
		if err != nil {
			f.t.Fatalf("echo reply id %d seq %d never reached the prober's namespace: %v", id, seq, err)
		}
		if n >= 8 && buf[0] == 0 && binary.BigEndian.Uint16(buf[4:]) == id && binary.BigEndian.Uint16(buf[6:]) == seq {
			return
		}
	}
}

// next returns the next echo request to the target.
func (f *icmpForger) next() echoRequest {
	f.t.Helper()
	buf := make([]byte, 1500)
	deadline := time.Now().Add(2 * time.Second)
	f.sniff.SetReadDeadline(deadline)
	for {
		n, _, err := f.sniff.ReadFrom(buf) // the IPv4 header is stripped
		if err != nil {
			f.t.Fatalf("no echo request seen: %v", err)
		}
		if n >= 8 && buf[0] == 8 {
			return echoRequest{
				id: binary.BigEndian.Uint16(buf[4:]), seq: binary.BigEndian.Uint16(buf[6:]),
				data: append([]byte{}, buf[8:n]...),
			}
		}
	}
}

// send writes one ICMP message from src to the prober; msg's checksum is filled in.
func (f *icmpForger) send(src netip.Addr, msg []byte) {
	f.t.Helper()
	if len(msg) >= 4 {
		binary.BigEndian.PutUint16(msg[2:], 0)
		binary.BigEndian.PutUint16(msg[2:], inetChecksum(msg))
	}
	h := &ipv4.Header{
		Version: ipv4.Version, Len: ipv4.HeaderLen, TotalLen: ipv4.HeaderLen + len(msg),
		TTL: 64, Protocol: 1, Src: src.AsSlice(), Dst: f.dst.AsSlice(),
	}
	if err := f.raw.WriteTo(h, msg, nil); err != nil {
		f.t.Fatalf("forge ICMP from %s: %v", src, err)
	}
}

// reply builds an echo reply with the given identifier, sequence and payload.
func reply(id, seq uint16, data []byte) []byte {
	b := make([]byte, 8+len(data))
	b[0] = 0
	binary.BigEndian.PutUint16(b[4:], id)
	binary.BigEndian.PutUint16(b[6:], seq)
	copy(b[8:], data)
	return b
}

// inetChecksum is the Internet checksum (RFC 1071).
func inetChecksum(b []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// waitStats polls the engine's counters until cond holds or a second passes.
func waitStats(e *ICMPEngine, cond func(ICMPStats) bool) (ICMPStats, bool) {
	deadline := time.Now().Add(time.Second)
	for {
		st := e.Stats()
		if cond(st) || time.Now().After(deadline) {
			return st, cond(st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestICMPHostileReplies(t *testing.T) {
	n := testnet.New(t, testnet.Spec{Sites: []testnet.SiteSpec{{Name: "a", Hosts: 2}}, Edges: []string{"e0"}})
	target, err := n.SiteAddr("a", 0)
	if err != nil {
		t.Fatal(err)
	}
	other, err := n.SiteAddr("a", 1)
	if err != nil {
		t.Fatal(err)
	}
	prober, err := n.Addr("e0")
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{
		// The target never answers by itself: every reply the prober gets is crafted.
		{"a", "sysctl", "-qw", "net.ipv4.icmp_echo_ignore_all=1"},
		{"e0", "sysctl", "-qw", "net.ipv4.ping_group_range=0 2147483647"},
	} {
		if out, err := n.Exec(cmd[0], cmd[1:]...); err != nil {
			t.Fatalf("%v: %v %s", cmd, err, out)
		}
	}
	forger := newICMPForger(t, n, "a", prober, target)

	for _, mode := range []ICMPMode{ICMPRaw, ICMPDatagram} {
		t.Run(string(mode), func(t *testing.T) {
			forger.t = t
			e, err := NewICMPEngine(mode)
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			if err := n.Do("e0", func() error { return e.Open(false) }); err != nil {
				t.Fatal(err)
			}
			p, err := New(KindICMP, ICMPSpec{Address: target.String()}, &Env{ICMP: e})
			if err != nil {
				t.Fatal(err)
			}
			testHostileReplies(t, mode, e, p, forger, target, other)
		})
	}
}

// hostileReply is one case: forge sends crafted messages for the probe's request (and
// the request of the probe before, for late replies); moved says which counters must
// have moved before the genuine reply is sent; answer says whether it is sent at all.
type hostileReply struct {
	name   string
	forge  func(f *icmpForger, req, prev echoRequest)
	moved  func(before, now ICMPStats) bool
	answer bool
}

func testHostileReplies(t *testing.T, mode ICMPMode, e *ICMPEngine, p Prober, f *icmpForger, target, other netip.Addr) {
	token := func(data []byte, delta uint64) []byte {
		d := append([]byte{}, data...)
		binary.BigEndian.PutUint64(d, binary.BigEndian.Uint64(d)+delta)
		return d
	}
	wrongHost := func(b, s ICMPStats) bool { return s.WrongHost > b.WrongHost }
	unknownSeq := func(k uint64) func(b, s ICMPStats) bool {
		return func(b, s ICMPStats) bool { return s.UnknownSeq >= b.UnknownSeq+k }
	}
	// A forged identifier never reaches the engine's receiver in datagram mode (the kernel
	// delivers by identifier) nor, in raw mode, past the socket's BPF filter; a receiver
	// without that filter counts it as WrongID. Either way it must not answer the probe.
	forgedID := func(b, s ICMPStats) bool { return s.Matched == b.Matched }
	nothing := func(b, s ICMPStats) bool { return s.Matched == b.Matched && s.ReceiveErrors == b.ReceiveErrors }
	cases := []hostileReply{
		{"reply from the wrong host", func(f *icmpForger, req, _ echoRequest) {
			f.send(other, reply(req.id, req.seq, req.data))
		}, wrongHost, true},
		{"reply with a forged identifier", func(f *icmpForger, req, _ echoRequest) {
			f.send(target, reply(req.id^0x5a5a, req.seq, req.data))
			f.arrived(req.id^0x5a5a, req.seq)
		}, forgedID, true},
		{"right identifier and sequence, wrong token", func(f *icmpForger, req, _ echoRequest) {
			f.send(target, reply(req.id, req.seq, token(req.data, 1)))
		}, unknownSeq(1), true},
		{"late reply to the previous probe", func(f *icmpForger, req, prev echoRequest) {
			f.send(target, reply(prev.id, prev.seq, prev.data))          // its sequence is free again
			f.send(target, reply(req.id, req.seq, prev.data))            // this sequence, old token
			f.send(target, reply(req.id, req.seq+1, token(req.data, 0))) // a sequence nobody waits for
		}, unknownSeq(3), true},
		{"truncated: header without token", func(f *icmpForger, req, _ echoRequest) {
			f.send(target, reply(req.id, req.seq, nil))
		}, unknownSeq(1), true},
		{"truncated: half a token", func(f *icmpForger, req, _ echoRequest) {
			f.send(target, reply(req.id, req.seq, req.data[:4]))
		}, unknownSeq(1), true},
		{"truncated: 4 bytes of ICMP, 1 byte", func(f *icmpForger, req, _ echoRequest) {
			f.send(target, reply(req.id, req.seq, nil)[:4])
			f.send(target, []byte{0})
		}, nothing, true},
		{"200 replies with sequences nobody waits for", func(f *icmpForger, req, _ echoRequest) {
			for i := range 200 {
				f.send(target, reply(req.id, req.seq+uint16(i)+1, req.data))
			}
		}, unknownSeq(100), true}, // a few may overflow a receive buffer
		{"wrong host only", func(f *icmpForger, req, _ echoRequest) {
			f.send(other, reply(req.id, req.seq, req.data))
		}, wrongHost, false},
		{"no reply at all", func(*icmpForger, echoRequest, echoRequest) {}, nothing, false},
	}
	var prev echoRequest
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f.t = t
			timeout := time.Second
			if !tc.answer {
				timeout = 400 * time.Millisecond
			}
			before := e.Stats()
			results := make(chan Result, 1)
			start := time.Now()
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), timeout)
				defer cancel()
				results <- p.Probe(ctx)
			}()
			req := f.next()
			if len(req.data) < icmpTokenLenForTest {
				t.Fatalf("request payload of %d bytes has no token", len(req.data))
			}
			tc.forge(f, req, prev)
			prev = req
			st, ok := waitStats(e, func(s ICMPStats) bool { return tc.moved(before, s) })
			if !ok {
				t.Errorf("counters did not move as expected: before %+v, now %+v", before, st)
			}
			select {
			case r := <-results:
				if tc.answer {
					t.Fatalf("the forged replies answered the probe: %+v", r)
				}
				results <- r
			case <-time.After(50 * time.Millisecond):
			}
			if tc.answer {
				f.send(target, reply(req.id, req.seq, req.data))
			}
			r := <-results
			took := time.Since(start)
			after := e.Stats()
			t.Logf("ICMPHOSTILE | %s | %s | ok=%v reason=%s | %q | %v | matched +%d wrong_host +%d wrong_id +%d unknown_seq +%d receive_errors +%d",
				mode, tc.name, r.OK, r.Reason, r.Detail, took.Round(time.Millisecond),
				after.Matched-before.Matched, after.WrongHost-before.WrongHost, after.WrongID-before.WrongID,
				after.UnknownSeq-before.UnknownSeq, after.ReceiveErrors-before.ReceiveErrors)
			if tc.answer {
				if !r.OK || after.Matched != before.Matched+1 {
					t.Errorf("genuine reply after the forged ones: %+v, matched %d -> %d", r, before.Matched, after.Matched)
				}
			} else if r.Reason != ReasonTimeout || !strings.Contains(r.Detail, target.String()) || after.Matched != before.Matched {
				t.Errorf("got %+v (matched %d -> %d), want a timeout naming %s", r, before.Matched, after.Matched, target)
			}
			if took > timeout+slack {
				t.Errorf("took %v, deadline %v", took, timeout)
			}
			if after.ReceiveErrors != before.ReceiveErrors {
				t.Errorf("receive errors %d -> %d", before.ReceiveErrors, after.ReceiveErrors)
			}
		})
	}
}

// icmpTokenLenForTest is the token at the start of every echo payload (README: "the
// first 8 carry a per-probe token"), restated so that this test uses no engine internals.
const icmpTokenLenForTest = 8
