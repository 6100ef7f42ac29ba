//go:build linux

package probes

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/edgeprobe/edgeprobe/internal/testkit"
)

// requireIPv6Loopback stops a test when the host has no ::1 (testkit.SkipUnlessCI).
func requireIPv6Loopback(t testing.TB) {
	t.Helper()
	data, err := os.ReadFile("/proc/net/if_inet6")
	if err == nil && strings.Contains(string(data), "00000000000000000000000000000001") {
		return
	}
	testkit.SkipUnlessCI(t, "no IPv6 loopback (::1) on lo")
}

// silentTCP accepts connections and never writes a byte, until the test ends.
func silentTCP(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// probeTimeout keeps the cases that must time out short and gives the others room on a
// loaded machine (the race detector, other tests' CPU).
func probeTimeout(want Reason) time.Duration {
	if want == ReasonTimeout {
		return 300 * time.Millisecond
	}
	return 3 * time.Second
}

// isolation says how onIsolatedThread prepares its thread.
type isolation struct {
	loopbackUp     bool   // bring lo (127.0.0.1, ::1) up
	pingGroupRange string // set the namespace's net.ipv4.ping_group_range; "" keeps "1 0"
	dropNetRaw     bool   // drop CAP_NET_RAW from the thread
}

// onIsolatedThread runs fn on an OS thread in a new network namespace of its own, set up
// as iso says. Sockets fn opens stay in that namespace and work from any goroutine. The
// namespace's ping_group_range is its own, so tests neither depend on nor disturb the
// host's value, which tests of other packages may be changing at the same time. The
// thread is never unlocked, so the runtime discards it when fn returns.
func onIsolatedThread(t testing.TB, iso isolation, fn func()) {
	t.Helper()
	testkit.RequireRoot(t, "creates a network namespace")
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		done <- isolateThread(iso)
		fn()
		close(done)
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	<-done
}

func isolateThread(iso isolation) error {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare network namespace: %w", err)
	}
	if iso.loopbackUp {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("socket for ioctl: %w", err)
		}
		defer unix.Close(fd)
		ifr, err := unix.NewIfreq("lo")
		if err != nil {
			return err
		}
		if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
			return fmt.Errorf("get lo flags: %w", err)
		}
		ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
		if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
			return fmt.Errorf("set lo up: %w", err)
		}
	}
	if iso.pingGroupRange != "" {
		// /proc/sys/net shows the namespace of the thread that opens it.
		const path = "/proc/sys/net/ipv4/ping_group_range"
		if err := os.WriteFile(path, []byte(iso.pingGroupRange), 0o644); err != nil {
			return fmt.Errorf("write %q to %s: %w", iso.pingGroupRange, path, err)
		}
	}
	if iso.dropNetRaw {
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var caps [2]unix.CapUserData
		if err := unix.Capget(&hdr, &caps[0]); err != nil {
			return fmt.Errorf("capget: %w", err)
		}
		caps[0].Effective &^= 1 << unix.CAP_NET_RAW
		if err := unix.Capset(&hdr, &caps[0]); err != nil {
			return fmt.Errorf("drop CAP_NET_RAW: %w", err)
		}
	}
	return nil
}
