package testkit

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// FreePort returns a loopback address ("127.0.0.1:port") that nothing listens on, for
// network "tcp" or "udp": a connection to it is refused (TCP) or answered by port
// unreachable (UDP), and a server the test starts later can listen on it, also after it
// stopped listening there for a while. The port is reserved (see ReservePort).
func FreePort(tb TB, network string) string {
	tb.Helper()
	addr, err := FreeLoopback()
	if err != nil {
		tb.Fatalf("testkit: a free %s port: %v", network, err)
	}
	return addr
}

// IPv4Loopback is the address FreePort gives ports of.
var IPv4Loopback = netip.MustParseAddr("127.0.0.1")

// FreeLoopback is FreePort for callers without a testing.TB.
func FreeLoopback() (string, error) {
	port, err := ReservePort(IPv4Loopback)
	if err != nil {
		return "", err
	}
	return netip.AddrPortFrom(IPv4Loopback, uint16(port)).String(), nil
}

// ReservePort returns a port free on addr for both TCP and UDP, which no other caller of
// ReservePort gets while this process lives, in this process or another.
//
// A port picked by listening on port 0 and closing is free only at that moment: the
// kernel may give it to the next listener on port 0 or take it as the local port of an
// outgoing connection before the test's server listens on it (two parallel tests then
// share one port, and one of them talks to the other's server). So the port comes from
// below the kernel's ephemeral range, which it never assigns by itself, and is held for
// the life of the process by an abstract unix socket named after it, which every process
// calling ReservePort sees and the kernel releases when the process ends.
func ReservePort(addr netip.Addr) (int, error) {
	reserved.mu.Lock()
	defer reserved.mu.Unlock()
	lo, hi := reservableRange()
	n := hi - lo
	if reserved.next == 0 {
		reserved.next = rand.IntN(n) + 1 // processes start apart
	}
	for range n {
		port := lo + reserved.next%n
		reserved.next++
		hold, err := net.Listen("unix", "@edgeprobe-test-port-"+strconv.Itoa(port))
		if errors.Is(err, syscall.EADDRINUSE) {
			continue // another process holds it
		}
		// Any other error: a system without abstract sockets, where only this process's
		// own reservations and the range keep ports apart.
		if !freeNow(addr, port) {
			if hold != nil {
				hold.Close()
			}
			continue
		}
		if hold != nil {
			reserved.held = append(reserved.held, hold)
		}
		return port, nil
	}
	return 0, fmt.Errorf("no port from %d to %d free on %s for both TCP and UDP", lo, hi-1, addr)
}

var reserved struct {
	mu   sync.Mutex
	next int
	held []net.Listener // kept so that no finalizer closes them
}

// reservableRange is the 10,000 ports below the ephemeral range (32768-60999 by default).
func reservableRange() (lo, hi int) {
	hi = 32768
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if v, err := strconv.Atoi(f[0]); err == nil && v > 11024 {
				hi = v
			}
		}
	}
	return hi - 10000, hi
}

func freeNow(addr netip.Addr, port int) bool {
	hostPort := netip.AddrPortFrom(addr, uint16(port)).String()
	t, err := net.Listen("tcp", hostPort)
	if err != nil {
		return false
	}
	defer t.Close()
	u, err := net.ListenPacket("udp", hostPort)
	if err != nil {
		return false
	}
	u.Close()
	return true
}
