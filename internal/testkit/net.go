package testkit

import "net"

// FreePort returns a loopback address ("127.0.0.1:port") that nothing listens on at the
// moment, for network "tcp" or "udp": a connection to it is refused (TCP) or answered
// by port unreachable (UDP), and a server the test starts later can listen on it.
func FreePort(tb TB, network string) string {
	tb.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			tb.Fatalf("testkit: %v", err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("testkit: %v", err)
	}
	defer l.Close()
	return l.Addr().String()
}
