//go:build linux && clockjump

package e2e

import (
	"fmt"
	"os"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"

	"github.com/edgeprobe/edgeprobe/internal/testnet"
)

// serveSlowEcho makes every host of a site answer ICMP echo requests after delay instead
// of at once: the kernel's own answers are turned off in the site's namespace
// (net.ipv4.icmp_echo_ignore_all), and one raw socket per host address answers from that
// address. With replies that slow, a probe is in flight a good part of the time, so a
// clock step lands in the middle of some. The sockets close when the test ends.
func serveSlowEcho(t testing.TB, n *testnet.Net, site string, hosts int, delay time.Duration) error {
	// /proc/sys/net belongs to the network namespace of the thread that opens it.
	if err := n.Do(site, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/icmp_echo_ignore_all", []byte("1\n"), 0o644)
	}); err != nil {
		return fmt.Errorf("turning off the kernel's echo replies in site %q: %w", site, err)
	}
	for i := range hosts {
		addr, err := n.SiteAddr(site, i)
		if err != nil {
			return err
		}
		var conn *icmp.PacketConn
		if err := n.Do(site, func() (err error) {
			conn, err = icmp.ListenPacket("ip4:icmp", addr.String())
			return err
		}); err != nil {
			return fmt.Errorf("slow echo on %s: %w", addr, err)
		}
		go func() {
			buf := make([]byte, 1500)
			for {
				k, from, err := conn.ReadFrom(buf)
				if err != nil {
					return // closed
				}
				m, err := icmp.ParseMessage(1, buf[:k])
				if err != nil || m.Type != ipv4.ICMPTypeEcho {
					continue
				}
				echo, ok := m.Body.(*icmp.Echo)
				if !ok {
					continue
				}
				reply, err := (&icmp.Message{Type: ipv4.ICMPTypeEchoReply, Body: &icmp.Echo{ID: echo.ID, Seq: echo.Seq, Data: append([]byte(nil), echo.Data...)}}).Marshal(nil)
				if err != nil {
					continue
				}
				time.AfterFunc(delay, func() { conn.WriteTo(reply, from) })
			}
		}()
		t.Cleanup(func() { conn.Close() })
	}
	return nil
}
