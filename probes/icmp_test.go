//go:build linux

package probes

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// loopbackNetns is a namespace of the test's own with lo up and ping sockets open to
// every group.
var loopbackNetns = isolation{loopbackUp: true, pingGroupRange: "0 2147483647"}

// icmpEngine returns an engine in mode whose IPv4 and IPv6 sockets live in a network
// namespace of the test's own (see onIsolatedThread), closed when the test ends.
func icmpEngine(t testing.TB, mode ICMPMode) *ICMPEngine {
	t.Helper()
	e, err := NewICMPEngine(mode)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	var openErr error
	onIsolatedThread(t, loopbackNetns, func() {
		for _, v6 := range []bool{false, true} {
			if _, err := e.socket(v6); err != nil {
				openErr = err
			}
		}
	})
	if openErr != nil {
		t.Fatal(openErr)
	}
	return e
}

func probeOnce(t testing.TB, p Prober, timeout time.Duration) Result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return p.Probe(ctx)
}

func TestICMPLoopback(t *testing.T) {
	for _, mode := range []ICMPMode{ICMPRaw, ICMPDatagram, ICMPAuto} {
		for _, addr := range []string{"127.0.0.1", "::1", "localhost"} {
			t.Run(fmt.Sprintf("%s/%s", mode, addr), func(t *testing.T) {
				if addr == "::1" {
					requireIPv6Loopback(t)
				}
				e := icmpEngine(t, mode)
				p, err := New(KindICMP, ICMPSpec{Address: addr}, &Env{ICMP: e})
				if err != nil {
					t.Fatal(err)
				}
				for i := range 3 {
					r := probeOnce(t, p, 2*time.Second)
					if !r.OK || r.Reason != ReasonNone {
						t.Fatalf("probe %d to %s: %+v", i, addr, r)
					}
					if r.RTT <= 0 || r.RTT > time.Second {
						t.Errorf("probe %d to %s: RTT %v out of (0, 1s]", i, addr, r.RTT)
					}
				}
				if st := e.Stats(); st.Sent != 3 || st.Matched != 3 || st.Timestamped < 3 {
					t.Errorf("stats %+v, want 3 sent, 3 matched, all with kernel timestamps", st)
				}
			})
		}
	}
}

// TestICMPProBingReference pings the same loopback addresses with the engine and with
// pro-bing: both must succeed, so a failure of either is not a quirk of the host.
func TestICMPProBingReference(t *testing.T) {
	for _, mode := range []ICMPMode{ICMPRaw, ICMPDatagram} {
		for _, addr := range []string{"127.0.0.1", "::1"} {
			t.Run(fmt.Sprintf("%s/%s", mode, addr), func(t *testing.T) {
				if addr == "::1" {
					requireIPv6Loopback(t)
				}
				e := icmpEngine(t, mode)
				p, err := New(KindICMP, &ICMPSpec{Address: addr}, &Env{ICMP: e})
				if err != nil {
					t.Fatal(err)
				}
				engine := probeOnce(t, p, 2*time.Second)
				var ref []Result
				onIsolatedThread(t, loopbackNetns, func() {
					ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
					defer cancel()
					ref, err = Ping(ctx, addr, 1, mode)
				})
				if err != nil {
					t.Fatalf("pro-bing: %v", err)
				}
				if !engine.OK || len(ref) != 1 || !ref[0].OK {
					t.Fatalf("engine %+v, pro-bing %+v: both must succeed", engine, ref)
				}
				t.Logf("engine RTT %v, pro-bing RTT %v", engine.RTT, ref[0].RTT)
			})
		}
	}
}

func TestPingCount(t *testing.T) {
	var results []Result
	var err, zeroErr error
	onIsolatedThread(t, loopbackNetns, func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		results, err = Ping(ctx, "127.0.0.1", 2, ICMPAuto)
		_, zeroErr = Ping(ctx, "127.0.0.1", 0, ICMPAuto)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(results) != 2 || !results[0].OK || !results[1].OK {
		t.Fatalf("got %+v, want 2 successful results", results)
	}
	if zeroErr == nil || !strings.Contains(zeroErr.Error(), "count") {
		t.Errorf("count 0: error %v, want one naming count", zeroErr)
	}
}

// TestICMPPermission opens ICMP sockets where the OS refuses them: ping sockets while
// ping_group_range admits nobody ("1 0"), raw sockets without CAP_NET_RAW. The probe
// and Ping must fail with one error that says what to grant.
func TestICMPPermission(t *testing.T) {
	const sysctl = `sysctl -w net.ipv4.ping_group_range="0 2147483647"`
	tests := []struct {
		mode       ICMPMode
		dropNetRaw bool
		want       []string
		notWant    string
	}{
		{ICMPDatagram, false, []string{"datagram: ", sysctl}, "CAP_NET_RAW"},
		{ICMPRaw, true, []string{"raw: ", "CAP_NET_RAW"}, "ping_group_range"},
		{ICMPAuto, true, []string{"raw: ", "datagram: ", "CAP_NET_RAW", sysctl}, ""},
	}
	for _, tt := range tests {
		t.Run(string(tt.mode), func(t *testing.T) {
			var r Result
			var pingErr error
			onIsolatedThread(t, isolation{dropNetRaw: tt.dropNetRaw}, func() {
				e, err := NewICMPEngine(tt.mode)
				if err != nil {
					pingErr = err
					return
				}
				defer e.Close()
				p, err := New(KindICMP, ICMPSpec{Address: "127.0.0.1"}, &Env{ICMP: e})
				if err != nil {
					pingErr = err
					return
				}
				r = probeOnce(t, p, time.Second)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				_, pingErr = Ping(ctx, "127.0.0.1", 1, tt.mode)
			})
			if r.OK || r.Reason != ReasonPermission {
				t.Fatalf("probe: %+v, want reason permission", r)
			}
			for _, msg := range []string{r.Detail, fmt.Sprint(pingErr)} {
				for _, w := range tt.want {
					if !strings.Contains(msg, w) {
						t.Errorf("%q lacks %q", msg, w)
					}
				}
				if tt.notWant != "" && strings.Contains(msg, tt.notWant) {
					t.Errorf("%q mentions %q, which does not apply to mode %s", msg, tt.notWant, tt.mode)
				}
			}
		})
	}
}

// TestICMPConcurrent probes several loopback addresses at once through one socket: every
// probe must get its own reply, none may be mixed up or lost.
func TestICMPConcurrent(t *testing.T) {
	for _, mode := range []ICMPMode{ICMPRaw, ICMPDatagram} {
		t.Run(string(mode), func(t *testing.T) {
			e := icmpEngine(t, mode)
			const targets, rounds = 8, 25
			var wg sync.WaitGroup
			errs := make(chan string, targets*rounds)
			for i := range targets {
				addr := fmt.Sprintf("127.0.0.%d", i+1)
				p, err := New(KindICMP, ICMPSpec{Address: addr}, &Env{ICMP: e})
				if err != nil {
					t.Fatal(err)
				}
				wg.Go(func() {
					for range rounds {
						if r := probeOnce(t, p, 2*time.Second); !r.OK {
							errs <- fmt.Sprintf("%s: %+v", addr, r)
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for msg := range errs {
				t.Error(msg)
			}
			st := e.Stats()
			if st.Sent != targets*rounds || st.Matched != st.Sent || st.WrongHost != 0 {
				t.Errorf("stats %+v: want %d sent, all matched, none from a wrong host", st, targets*rounds)
			}
		})
	}
}

// TestICMPRawFilter pings loopback with pro-bing (its own raw socket and identifier)
// while the engine's raw socket is open in the same namespace: the kernel filter must keep
// pro-bing's replies from the engine's receiver.
func TestICMPRawFilter(t *testing.T) {
	var e *ICMPEngine
	var engineResult Result
	var pingErr error
	onIsolatedThread(t, loopbackNetns, func() {
		var err error
		if e, err = NewICMPEngine(ICMPRaw); err != nil {
			pingErr = err
			return
		}
		p, err := New(KindICMP, ICMPSpec{Address: "127.0.0.1"}, &Env{ICMP: e})
		if err != nil {
			pingErr = err
			return
		}
		engineResult = probeOnce(t, p, 2*time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, pingErr = Ping(ctx, "127.0.0.1", 2, ICMPRaw)
	})
	if e != nil {
		defer e.Close()
	}
	if pingErr != nil {
		t.Fatal(pingErr)
	}
	if !engineResult.OK {
		t.Fatalf("engine probe: %+v", engineResult)
	}
	if st := e.Stats(); st.WrongID != 0 || st.UnknownSeq != 0 {
		t.Errorf("stats %+v: pro-bing's replies reached the engine's receiver", st)
	}
}

// TestICMPDemultiplex feeds crafted replies to a socket's matcher: only the reply with
// the right sequence, source, identifier and token reaches the waiting probe.
func TestICMPDemultiplex(t *testing.T) {
	e, err := NewICMPEngine(ICMPRaw)
	if err != nil {
		t.Fatal(err)
	}
	dst := netip.MustParseAddr("127.0.0.9")
	reply := func(id, seq uint16, token uint64) []byte {
		b := make([]byte, 8+DefaultICMPSize)
		b[0] = 0 // echo reply
		binary.BigEndian.PutUint16(b[4:], id)
		binary.BigEndian.PutUint16(b[6:], seq)
		binary.BigEndian.PutUint64(b[8:], token)
		return b
	}
	// unreachable quotes an IPv4 header to dst and our echo's first 8 bytes.
	unreachable := func(id, seq uint16, to netip.Addr) []byte {
		b := make([]byte, 8+20+8)
		b[0], b[1] = 3, 1
		ip := b[8:]
		ip[0], ip[9] = 0x45, 1
		copy(ip[16:20], to.AsSlice())
		echo := ip[20:]
		echo[0] = 8
		binary.BigEndian.PutUint16(echo[4:], id)
		binary.BigEndian.PutUint16(echo[6:], seq)
		return b
	}
	tests := []struct {
		name      string
		datagram  bool
		packet    func(seq uint16, token uint64) []byte
		from      netip.Addr
		delivered bool
		unreach   bool
		counter   func(ICMPStats) uint64
	}{
		{"match", false, func(s uint16, tok uint64) []byte { return reply(e.id, s, tok) }, dst, true, false, func(s ICMPStats) uint64 { return s.Matched }},
		{"wrong host", false, func(s uint16, tok uint64) []byte { return reply(e.id, s, tok) }, netip.MustParseAddr("127.0.0.10"), false, false, func(s ICMPStats) uint64 { return s.WrongHost }},
		{"wrong id raw", false, func(s uint16, tok uint64) []byte { return reply(e.id+1, s, tok) }, dst, false, false, func(s ICMPStats) uint64 { return s.WrongID }},
		{"kernel-owned id datagram", true, func(s uint16, tok uint64) []byte { return reply(e.id+1, s, tok) }, dst, true, false, func(s ICMPStats) uint64 { return s.Matched }},
		{"unknown seq", false, func(s uint16, tok uint64) []byte { return reply(e.id, s+1, tok) }, dst, false, false, func(s ICMPStats) uint64 { return s.UnknownSeq }},
		{"stale token", false, func(s uint16, tok uint64) []byte { return reply(e.id, s, tok+1) }, dst, false, false, func(s ICMPStats) uint64 { return s.UnknownSeq }},
		{"unreachable", false, func(s uint16, _ uint64) []byte { return unreachable(e.id, s, dst) }, netip.MustParseAddr("127.0.0.254"), true, true, func(s ICMPStats) uint64 { return s.Matched }},
		{"unreachable for another target", false, func(s uint16, _ uint64) []byte {
			return unreachable(e.id, s, netip.MustParseAddr("127.0.0.11"))
		}, netip.MustParseAddr("127.0.0.254"), false, false, func(s ICMPStats) uint64 { return s.WrongHost }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &icmpSocket{engine: e, datagram: tt.datagram, waiters: map[uint16]*icmpWaiter{}}
			w := &icmpWaiter{dst: dst, token: 42, sent: time.Now(), reply: make(chan icmpReply, 1)}
			seq, err := s.register(w)
			if err != nil {
				t.Fatal(err)
			}
			before := tt.counter(e.Stats())
			pkt := tt.packet(seq, w.token)
			if !tt.datagram {
				// Raw IPv4 sockets deliver the IP header too.
				pkt = append([]byte{0x45, 19: 0}, pkt...)
			}
			s.handle(pkt, tt.from, time.Now())
			if got := tt.counter(e.Stats()) - before; got != 1 {
				t.Errorf("counter moved by %d, want 1", got)
			}
			select {
			case r := <-w.reply:
				if !tt.delivered {
					t.Fatalf("reply %+v delivered, want it dropped", r)
				}
				if (r.unreachable != "") != tt.unreach {
					t.Errorf("reply %+v, unreachable want %v", r, tt.unreach)
				}
			default:
				if tt.delivered {
					t.Fatal("reply not delivered")
				}
				if !s.unregister(seq, w) {
					t.Error("dropped reply took the waiter out")
				}
			}
		})
	}
}

// TestICMPDemultiplexIPv6 checks the ICMPv6 side of the matcher: raw IPv6 sockets
// deliver no IP header, and an unreachable quotes a 40-byte IPv6 header.
func TestICMPDemultiplexIPv6(t *testing.T) {
	e, err := NewICMPEngine(ICMPRaw)
	if err != nil {
		t.Fatal(err)
	}
	dst := netip.MustParseAddr("2001:db8::9")
	router := netip.MustParseAddr("2001:db8::1")
	echoReply := func(seq uint16, token uint64) []byte {
		b := make([]byte, 8+DefaultICMPSize)
		b[0] = 129
		binary.BigEndian.PutUint16(b[4:], e.id)
		binary.BigEndian.PutUint16(b[6:], seq)
		binary.BigEndian.PutUint64(b[8:], token)
		return b
	}
	unreachable := func(seq uint16, _ uint64) []byte {
		b := make([]byte, 8+40+8)
		b[0], b[1] = 1, 3 // destination unreachable, address unreachable
		ip := b[8:]
		ip[0], ip[6] = 0x60, 58
		copy(ip[24:40], dst.AsSlice())
		echo := ip[40:]
		echo[0] = 128
		binary.BigEndian.PutUint16(echo[4:], e.id)
		binary.BigEndian.PutUint16(echo[6:], seq)
		return b
	}
	tests := []struct {
		name    string
		packet  func(seq uint16, token uint64) []byte
		from    netip.Addr
		unreach bool
	}{
		{"echo reply", echoReply, dst, false},
		{"unreachable from a router", unreachable, router, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &icmpSocket{engine: e, ipv6: true, waiters: map[uint16]*icmpWaiter{}}
			w := &icmpWaiter{dst: dst, token: 7, sent: time.Now(), reply: make(chan icmpReply, 1)}
			seq, err := s.register(w)
			if err != nil {
				t.Fatal(err)
			}
			s.handle(tt.packet(seq, w.token), tt.from, time.Now())
			select {
			case r := <-w.reply:
				if (r.unreachable != "") != tt.unreach || (tt.unreach && !strings.Contains(r.unreachable, dst.String())) {
					t.Errorf("reply %+v, unreachable want %v naming %s", r, tt.unreach, dst)
				}
			default:
				t.Fatal("reply not delivered")
			}
		})
	}
}

// TestICMPCloseLeavesNoGoroutines opens both families' sockets, closes the engine and
// checks that the receive goroutines are gone and later probes fail cleanly.
func TestICMPCloseLeavesNoGoroutines(t *testing.T) {
	requireIPv6Loopback(t)
	for _, mode := range []ICMPMode{ICMPRaw, ICMPDatagram} {
		t.Run(string(mode), func(t *testing.T) {
			before := stableGoroutines()
			e := icmpEngine(t, mode)
			for _, addr := range []string{"127.0.0.1", "::1"} {
				p, err := New(KindICMP, ICMPSpec{Address: addr}, &Env{ICMP: e})
				if err != nil {
					t.Fatal(err)
				}
				if r := probeOnce(t, p, 2*time.Second); !r.OK {
					t.Fatalf("%s: %+v", addr, r)
				}
			}
			if during := settledGoroutines(before + 2); during != before+2 {
				t.Errorf("%d goroutines while open, want %d (one receiver per family)", during, before+2)
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			if after := settledGoroutines(before); after > before {
				t.Errorf("%d goroutines after Close, want %d", after, before)
			}
			p, _ := New(KindICMP, ICMPSpec{Address: "127.0.0.1"}, &Env{ICMP: e})
			if r := probeOnce(t, p, time.Second); r.OK || r.Reason != ReasonError {
				t.Errorf("probe after Close: %+v, want reason error", r)
			}
		})
	}
}

// stableGoroutines returns the goroutine count once it has stayed the same for 100ms
// (at most 2s), so that earlier tests' servers winding down do not skew a comparison.
func stableGoroutines() int {
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		m := runtime.NumGoroutine()
		if m == n {
			break
		}
		n = m
	}
	return n
}

// settledGoroutines waits up to a second for the goroutine count to reach want, since
// goroutines of earlier tests (servers shutting down) may still be on their way out.
func settledGoroutines(want int) int {
	n := runtime.NumGoroutine()
	for deadline := time.Now().Add(time.Second); n != want && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		n = runtime.NumGoroutine()
	}
	return n
}

func TestICMPSpecErrors(t *testing.T) {
	e, err := NewICMPEngine(ICMPAuto)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		spec ICMPSpec
		env  *Env
		want string
	}{
		{ICMPSpec{}, &Env{ICMP: e}, "address: missing"},
		{ICMPSpec{Address: "127.0.0.1", Family: "ipx"}, &Env{ICMP: e}, `family: "ipx"`},
		{ICMPSpec{Address: "127.0.0.1", Size: 4}, &Env{ICMP: e}, "size: 4 is out of range"},
		{ICMPSpec{Address: "127.0.0.1"}, &Env{}, "no ICMP engine"},
	}
	for _, tt := range tests {
		_, err := New(KindICMP, tt.spec, tt.env)
		if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.HasPrefix(err.Error(), "icmp probe: ") {
			t.Errorf("spec %+v: error %v, want %q", tt.spec, err, tt.want)
		}
	}
	if _, err := NewICMPEngine("turbo"); err == nil || !strings.Contains(err.Error(), `"turbo"`) {
		t.Errorf("mode turbo: error %v", err)
	}
}

func BenchmarkICMPProbeLoopback(b *testing.B) {
	for _, mode := range []ICMPMode{ICMPRaw, ICMPDatagram} {
		b.Run(string(mode), func(b *testing.B) {
			e := icmpEngine(b, mode)
			p, err := New(KindICMP, ICMPSpec{Address: "127.0.0.1"}, &Env{ICMP: e})
			if err != nil {
				b.Fatal(err)
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if r := p.Probe(ctx); !r.OK {
					b.Fatalf("%+v", r)
				}
			}
		})
	}
}

// TestKernelTimestamp parses SCM_TIMESTAMPNS in both layouts of struct timespec (64-bit
// fields, and 32-bit ones as on 32-bit ARM), after another control message.
func TestKernelTimestamp(t *testing.T) {
	cmsg := func(level, typ int, data []byte) []byte {
		b := make([]byte, unix.CmsgSpace(len(data)))
		h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
		h.Level, h.Type = int32(level), int32(typ)
		h.SetLen(unix.CmsgLen(len(data)))
		copy(b[unix.CmsgLen(0):], data)
		return b
	}
	want := time.Unix(1_800_000_000, 123_456_789)
	ts64 := binary.NativeEndian.AppendUint64(binary.NativeEndian.AppendUint64(nil, uint64(want.Unix())), uint64(want.Nanosecond()))
	ts32 := binary.NativeEndian.AppendUint32(binary.NativeEndian.AppendUint32(nil, uint32(want.Unix())), uint32(want.Nanosecond()))
	other := cmsg(unix.SOL_IP, unix.IP_TTL, []byte{64, 0, 0, 0})
	tests := []struct {
		name string
		oob  []byte
		ok   bool
	}{
		{"64-bit timespec", append(other, cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, ts64)...), true},
		{"32-bit timespec", cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, ts32), true},
		{"no timestamp", other, false},
		{"truncated", cmsg(unix.SOL_SOCKET, unix.SCM_TIMESTAMPNS, ts64)[:10], false},
	}
	for _, tt := range tests {
		got, ok := kernelTimestamp(tt.oob)
		if ok != tt.ok || (ok && !got.Equal(want)) {
			t.Errorf("%s: %v, %v; want %v, %v", tt.name, got, ok, want, tt.ok)
		}
	}
}

// startOnce runs one probe as the agent does, through AsyncProber.Start, calling Expire
// at the deadline, and checks that done is called exactly once.
func startOnce(t testing.TB, p Prober, timeout time.Duration) Result {
	t.Helper()
	ap, ok := p.(AsyncProber)
	if !ok {
		t.Fatalf("%T is not an AsyncProber", p)
	}
	results := make(chan Result, 2)
	if !ap.Start(func(r Result) { results <- r }) {
		t.Fatal("Start declined an IP literal")
	}
	var r Result
	select {
	case r = <-results:
	case <-time.After(timeout):
		ap.Expire()
		r = <-results
	}
	ap.Expire() // too late: must not call done again
	select {
	case extra := <-results:
		t.Fatalf("done called twice: %+v after %+v", extra, r)
	case <-time.After(20 * time.Millisecond):
	}
	return r
}

// TestICMPStartExpireRace starts loopback probes and expires each at once, so that the
// reply and the expiry race: whichever wins, done is called once, with a result that is
// either the reply or a timeout, and no waiter is left behind.
//
// The engine is opened in the host's namespace (raw mode, root), not in a namespace of
// the test's own as icmpEngine does: in those, after a burst of a few hundred echoes,
// later replies sometimes never reach the socket (seen with the Probe path as well, also
// before Start existed, and never in the host's namespace), which is a matter of the
// test namespace, not of the engine.
func TestICMPStartExpireRace(t *testing.T) {
	testkit.RequireRoot(t, "opens a raw ICMP socket")
	e, err := NewICMPEngine(ICMPRaw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	p, err := New(KindICMP, ICMPSpec{Address: "127.0.0.1"}, &Env{ICMP: e})
	if err != nil {
		t.Fatal(err)
	}
	ap := p.(AsyncProber)
	var ok, timedOut int
	for range 300 {
		results := make(chan Result, 2)
		if !ap.Start(func(r Result) { results <- r }) {
			t.Fatal("Start declined an IP literal")
		}
		ap.Expire()
		r := <-results
		switch {
		case r.OK:
			ok++
		case r.Reason == ReasonTimeout:
			timedOut++
		default:
			t.Fatalf("result %+v", r)
		}
		if len(results) != 0 {
			t.Fatalf("done called twice")
		}
	}
	t.Logf("reply won %d times, expiry %d times; %+v", ok, timedOut, e.Stats())
	if r := startOnce(t, p, time.Second); !r.OK {
		t.Fatalf("after the races a probe fails: %+v", r)
	}
	// A host name needs a lookup: Start declines and the caller uses Probe.
	named, err := New(KindICMP, ICMPSpec{Address: "localhost"}, &Env{ICMP: e})
	if err != nil {
		t.Fatal(err)
	}
	if named.(AsyncProber).Start(func(Result) { t.Error("done called for a declined Start") }) {
		t.Error("Start accepted a host name")
	}
}

// TestICMPRTTClockStep: the kernel's receive stamp is wall-clock time, so a step of the
// wall clock between send and receive must not become the RTT; the monotonic time since
// sending bounds it.
func TestICMPRTTClockStep(t *testing.T) {
	sent := time.Now() // with a monotonic reading
	wall := sent.Round(0)
	for _, tc := range []struct {
		name     string
		received time.Time
		elapsed  time.Duration
		want     time.Duration
	}{
		{"no step", wall.Add(300 * time.Microsecond), time.Millisecond, 300 * time.Microsecond},
		{"clock stepped an hour forwards", wall.Add(time.Hour + 300*time.Millisecond), 310 * time.Millisecond, 310 * time.Millisecond},
		{"clock stepped an hour backwards", wall.Add(-time.Hour + 300*time.Millisecond), 310 * time.Millisecond, 310 * time.Millisecond},
		{"stamp equals elapsed", wall.Add(5 * time.Millisecond), 5 * time.Millisecond, 5 * time.Millisecond},
	} {
		if got := icmpRTT(sent, tc.received, tc.elapsed); got != tc.want {
			t.Errorf("%s: rtt %v, want %v", tc.name, got, tc.want)
		}
	}
}
