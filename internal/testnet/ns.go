//go:build linux

package testnet

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"runtime"
	"time"

	"golang.org/x/sys/unix"
)

// Do runs fn on an OS thread that has entered the namespace of a node ("core" is the
// bridge's namespace). Sockets fn creates belong to that namespace and keep working from
// any goroutine after Do returns; goroutines fn starts do not inherit the namespace.
func (n *Net) Do(name string, fn func() error) error {
	ns := n.coreNS()
	if name != "core" {
		var err error
		if ns, err = n.NS(name); err != nil {
			return err
		}
	}
	return inNamespace(ns, fn)
}

func inNamespace(ns string, fn func() error) error {
	done := make(chan error, 1)
	go func() {
		// Never unlocked: the thread stays in the other namespace, and the runtime ends a
		// locked thread when its goroutine returns, so no other goroutine ever runs on it.
		runtime.LockOSThread()
		path := "/run/netns/" + ns
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			done <- fmt.Errorf("open namespace %s: %w", path, err)
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			done <- fmt.Errorf("enter namespace %s: %w", ns, err)
			return
		}
		done <- fn()
	}()
	return <-done
}

// DialContext returns a dial function whose connections start in a node's namespace,
// for clients in the test process that must reach servers inside the network.
func (n *Net) DialContext(name string) func(ctx context.Context, network, address string) (net.Conn, error) {
	return func(ctx context.Context, network, address string) (net.Conn, error) {
		var conn net.Conn
		err := n.Do(name, func() error {
			var d net.Dialer
			var err error
			conn, err = d.DialContext(ctx, network, address)
			return err
		})
		return conn, err
	}
}

// HTTPClient is a client whose requests leave from a node's namespace. It keeps no idle
// connections, so every request crosses the network as it is at that moment.
func (n *Net) HTTPClient(name string) *http.Client {
	return &http.Client{Transport: &http.Transport{
		DialContext:       n.DialContext(name),
		DisableKeepAlives: true,
	}}
}

// setPort sets a node's bridge port up or down. A port that is down drops every frame
// in both directions without a word, and the node sees only its carrier go away. Bringing
// a port up returns once both ends of the pair run.
func (n *Net) setPort(nd *node, up bool) error {
	port := n.portIf(nd)
	err := inNamespace(n.coreNS(), func() error {
		return ifFlags(port, func(flags uint16) uint16 {
			if up {
				return flags | unix.IFF_UP
			}
			return flags &^ unix.IFF_UP
		})
	})
	if err != nil || !up {
		return err
	}
	return n.waitRunning(nd)
}

// waitRunning waits until both ends of a node's veth pair run, that is until the kernel
// has attached their queues; a packet sent before that is dropped.
func (n *Net) waitRunning(nd *node) error {
	deadline := time.Now().Add(linkWait)
	for _, end := range []struct{ ns, dev string }{{n.coreNS(), n.portIf(nd)}, {n.ns(nd), n.hostIf(nd)}} {
		err := inNamespace(end.ns, func() error {
			for {
				var running bool
				err := ifFlags(end.dev, func(flags uint16) uint16 {
					running = flags&unix.IFF_RUNNING != 0
					return flags
				})
				if err != nil || running {
					return err
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("%s in %s not running %v after it was set up", end.dev, end.ns, linkWait)
				}
				time.Sleep(time.Millisecond)
			}
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// linkWait bounds how long setPort waits for a link to run after bringing it up.
const linkWait = 2 * time.Second

// ifFlags reads an interface's flags in the calling thread's namespace and, when change
// returns something else, writes that back.
func ifFlags(dev string, change func(uint16) uint16) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket for interface flags: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq(dev)
	if err != nil {
		return fmt.Errorf("interface %s: %w", dev, err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("read flags of %s: %w", dev, err)
	}
	flags := ifr.Uint16()
	next := change(flags)
	if next == flags {
		return nil
	}
	ifr.SetUint16(next)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set flags of %s to %#x: %w", dev, next, err)
	}
	return nil
}
