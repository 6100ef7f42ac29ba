package probes

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	probing "github.com/prometheus-community/pro-bing"
)

// Ping sends count echo requests one second apart to address with pro-bing, as ping(8)
// does, and returns one Result per request sent, in order. It opens its own socket: it
// is for one-off use (the CLI's `probe icmp --count N`), not for the agent's schedule.
// ctx bounds the whole run; requests without a reply by then are timeouts.
func Ping(ctx context.Context, address string, count int, mode ICMPMode) ([]Result, error) {
	if count < 1 {
		return nil, fmt.Errorf("count: %d, must be at least 1", count)
	}
	var privileged []bool
	switch mode {
	case ICMPAuto, "":
		mode, privileged = ICMPAuto, []bool{true, false}
	case ICMPRaw:
		privileged = []bool{true}
	case ICMPDatagram:
		privileged = []bool{false}
	default:
		return nil, fmt.Errorf("icmp mode %q: must be %q, %q or %q", mode, ICMPAuto, ICMPRaw, ICMPDatagram)
	}
	perm := &ICMPPermissionError{Mode: mode}
	for _, raw := range privileged {
		results, family, err := pingOnce(ctx, address, count, raw)
		if err == nil {
			return results, nil
		}
		if !isPermission(err) {
			return nil, fmt.Errorf("ping %s: %w", address, err)
		}
		perm.Family = family
		if raw {
			perm.Raw = err
		} else {
			perm.Dgram = err
		}
	}
	return nil, fmt.Errorf("ping %s: %w", address, perm)
}

// pingOnce runs one pro-bing Pinger; a Pinger cannot be run twice.
func pingOnce(ctx context.Context, address string, count int, privileged bool) ([]Result, string, error) {
	pinger := probing.New(address)
	pinger.Count = count
	pinger.Interval = time.Second
	pinger.Timeout = time.Duration(count)*pinger.Interval + time.Second
	pinger.RecordRtts = false
	pinger.RecordTTLs = false
	pinger.SetLogger(probing.NoopLogger{})
	pinger.SetPrivileged(privileged)
	if err := pinger.Resolve(); err != nil {
		return nil, "", fmt.Errorf("resolve: %w", err)
	}
	family := "ip6"
	if pinger.IPAddr().IP.To4() != nil {
		family = "ip4"
	}
	if deadline, ok := ctx.Deadline(); ok {
		pinger.Timeout = time.Until(deadline)
	}

	var mu sync.Mutex
	var results []Result
	pinger.OnSend = func(pkt *probing.Packet) {
		mu.Lock()
		defer mu.Unlock()
		results = append(results, Result{Start: time.Now(), Reason: ReasonTimeout,
			Detail: "no echo reply from " + pkt.IPAddr.String()})
	}
	pinger.OnRecv = func(pkt *probing.Packet) {
		mu.Lock()
		defer mu.Unlock()
		if pkt.Seq >= 0 && pkt.Seq < len(results) {
			results[pkt.Seq] = Result{Start: results[pkt.Seq].Start, OK: true, RTT: pkt.Rtt}
		}
	}
	err := pinger.RunWithContext(ctx)
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded) {
		return nil, family, err
	}
	mu.Lock()
	defer mu.Unlock()
	return results, family, nil
}
