//go:build linux

package probes

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// requireRoot skips a test that needs root, except in CI, where nothing may skip.
func requireRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatalf("CI must run as root: %s", why)
	}
	t.Skipf("needs root: %s", why)
}

// requireIPv6Loopback skips (or in CI fails) a test when the host has no ::1.
func requireIPv6Loopback(t testing.TB) {
	t.Helper()
	data, err := os.ReadFile("/proc/net/if_inet6")
	if err == nil && strings.Contains(string(data), "00000000000000000000000000000001") {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("CI needs ::1 on lo")
	}
	t.Skip("no IPv6 loopback (::1) on this host")
}

// testCert makes a throwaway CA and a server certificate for 127.0.0.1, ::1 and
// localhost signed by it. It returns the server's certificate and the CA's PEM file.
func testCert(t testing.TB) (tls.Certificate, string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edgeprobe test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		DNSNames:    []string{"localhost"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile
}

// freePort returns a loopback address nobody listens on, so connections are refused.
func freePort(t testing.TB, network string) string {
	t.Helper()
	if network == "udp" {
		c, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
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

// writeKeyPair stores cert and its ECDSA key as PEM files.
func writeKeyPair(t testing.TB, cert tls.Certificate, certFile, keyFile string) {
	t.Helper()
	keyDER, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Certificate[0]}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
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
	requireRoot(t, "creates a network namespace")
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
