package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/edgeprobe/edgeprobe/probes"
)

const probeAbout = `Send one probe (or --count echo requests for icmp) and print the result.
Exit 0 when it succeeded, 1 when it failed, 2 on bad usage.

KIND and TARGET:
  icmp  an IP address or host name
  dns   the server: host or host:port (port 53, 853 with --transport tls)
  http  a URL
  tcp   host:port

Options may come before or after KIND and TARGET.`

// probeFlagKinds says which kinds each kind-specific option applies to, so that
// "--method" on a tcp probe is a usage error instead of being silently ignored.
var probeFlagKinds = map[string][]probes.Kind{
	"count":       {probes.KindICMP},
	"size":        {probes.KindICMP},
	"icmp-mode":   {probes.KindICMP},
	"query":       {probes.KindDNS},
	"type":        {probes.KindDNS},
	"transport":   {probes.KindDNS},
	"rcodes":      {probes.KindDNS},
	"status":      {probes.KindHTTP},
	"method":      {probes.KindHTTP},
	"body-match":  {probes.KindHTTP},
	"redirects":   {probes.KindHTTP},
	"tls":         {probes.KindTCP},
	"insecure":    {probes.KindDNS, probes.KindHTTP, probes.KindTCP},
	"ca-file":     {probes.KindDNS, probes.KindHTTP, probes.KindTCP},
	"server-name": {probes.KindDNS, probes.KindHTTP, probes.KindTCP},
	"family":      {probes.KindICMP, probes.KindHTTP, probes.KindTCP},
}

type probeOptions struct {
	timeout    time.Duration
	family     string
	count      int
	size       int
	icmpMode   string
	query      string
	qtype      string
	transport  string
	rcodes     string
	status     string
	method     string
	bodyMatch  string
	redirects  int
	tls        bool
	insecure   bool
	caFile     string
	serverName string
}

func cmdProbe(args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("probe", "KIND TARGET [options]", probeAbout, stderr)
	var o probeOptions
	fs.DurationVar(&o.timeout, "timeout", time.Second, "give up after this `duration` (per request for icmp)")
	fs.StringVar(&o.family, "family", "", "address `family` to resolve and use: ip4 or ip6 (default: prefer IPv4)")
	fs.IntVar(&o.count, "count", 1, "icmp: echo requests to send, one second apart")
	fs.IntVar(&o.size, "size", 0, "icmp: payload `bytes` (default 56)")
	fs.StringVar(&o.icmpMode, "icmp-mode", string(probes.ICMPAuto), "icmp: socket `mode`: auto, raw (root or CAP_NET_RAW) or datagram (ping_group_range)")
	fs.StringVar(&o.query, "query", ".", "dns: `name` to ask for")
	fs.StringVar(&o.qtype, "type", "A", "dns: record `type`")
	fs.StringVar(&o.transport, "transport", "udp", "dns: udp, tcp or tls")
	fs.StringVar(&o.rcodes, "rcodes", "NOERROR", "dns: accepted `rcodes`, comma-separated")
	fs.StringVar(&o.status, "status", "", "http: accepted status `codes`, comma-separated, exact or classes like 2xx (default 2xx,3xx)")
	fs.StringVar(&o.method, "method", "GET", "http: request `method`")
	fs.StringVar(&o.bodyMatch, "body-match", "", "http: `regexp` the response body must match")
	fs.IntVar(&o.redirects, "redirects", 0, "http: redirects to follow")
	fs.BoolVar(&o.tls, "tls", false, "tcp: do a TLS handshake after connecting")
	fs.BoolVar(&o.insecure, "insecure", false, "skip TLS certificate verification")
	fs.StringVar(&o.caFile, "ca-file", "", "PEM `file` of CAs to verify the server with (default: system roots)")
	fs.StringVar(&o.serverName, "server-name", "", "TLS `name` to send and verify (default: the target's host)")

	positional, status, done := parseInterleaved(fs, args, stdout)
	if done {
		return status
	}
	if len(positional) != 2 {
		return usageError(fs, "want KIND and TARGET, got %d arguments", len(positional))
	}
	kind, target := probes.Kind(positional[0]), positional[1]
	var misplaced []string
	fs.Visit(func(f *flag.Flag) {
		if kinds, ok := probeFlagKinds[f.Name]; ok && !hasKind(kinds, kind) {
			misplaced = append(misplaced, "--"+f.Name)
		}
	})
	if len(misplaced) > 0 {
		return usageError(fs, "%s: not an option of %s probes", strings.Join(misplaced, ", "), kind)
	}
	if o.timeout <= 0 {
		return usageError(fs, "--timeout %s: must be positive", o.timeout)
	}
	if o.count < 1 {
		return usageError(fs, "--count %d: must be at least 1", o.count)
	}
	switch probes.ICMPMode(o.icmpMode) {
	case probes.ICMPAuto, probes.ICMPRaw, probes.ICMPDatagram:
	default:
		return usageError(fs, "--icmp-mode %q: want auto, raw or datagram", o.icmpMode)
	}

	if kind == probes.KindICMP && o.count > 1 {
		return pingMany(target, o, stdout, stderr)
	}
	spec, err := probeSpec(kind, target, o)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	env := &probes.Env{}
	if kind == probes.KindICMP {
		engine, err := probes.NewICMPEngine(probes.ICMPMode(o.icmpMode))
		if err != nil {
			fmt.Fprintf(stderr, "edgeprobe probe: %v\n", err)
			return exitFailure
		}
		defer engine.Close()
		env.ICMP = engine
	}
	prober, err := probes.New(kind, spec, env)
	if err != nil {
		return usageError(fs, "%v", err)
	}
	if c, ok := prober.(io.Closer); ok {
		defer c.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.timeout)
	defer cancel()
	r := prober.Probe(ctx)
	printResult(stdout, kind, target, r)
	if !r.OK {
		return exitFailure
	}
	return exitOK
}

// parseInterleaved lets options follow the positional arguments, as in
// "edgeprobe probe tcp 127.0.0.1:80 --timeout 200ms": flag.Parse stops at the first
// non-option, so parse again after each one.
func parseInterleaved(fs *flag.FlagSet, args []string, stdout io.Writer) (positional []string, status int, done bool) {
	for {
		if status, done := parseFlags(fs, args, stdout); done {
			return nil, status, true
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, exitOK, false
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(positional, rest...), exitOK, false
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

func hasKind(kinds []probes.Kind, k probes.Kind) bool {
	for _, x := range kinds {
		if x == k {
			return true
		}
	}
	return false
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// probeSpec turns the command line into the spec the agent's config would hold.
func probeSpec(kind probes.Kind, target string, o probeOptions) (any, error) {
	tls := probes.TLSSpec{Enable: o.tls, CAFile: o.caFile, ServerName: o.serverName, Insecure: o.insecure}
	switch kind {
	case probes.KindICMP:
		return probes.ICMPSpec{Address: target, Family: o.family, Size: o.size}, nil
	case probes.KindDNS:
		return probes.DNSSpec{Server: target, Transport: o.transport, Query: o.query, Type: o.qtype,
			Rcodes: splitList(o.rcodes), TLS: tls}, nil
	case probes.KindHTTP:
		return probes.HTTPSpec{URL: target, Method: o.method, Status: splitList(o.status),
			BodyMatch: o.bodyMatch, Redirects: o.redirects, Family: o.family, TLS: tls}, nil
	case probes.KindTCP:
		return probes.TCPSpec{Address: target, Family: o.family, TLS: tls}, nil
	}
	return nil, fmt.Errorf("KIND %q: want icmp, dns, http or tcp", kind)
}

// pingMany runs a ping(8)-like series with pro-bing and succeeds when any reply came
// back, as ping does: one lost echo on a good path is not a failed host.
func pingMany(target string, o probeOptions, stdout, stderr io.Writer) int {
	if o.family != "" || o.size != 0 {
		fmt.Fprintln(stderr, "edgeprobe probe: --family and --size apply to a single probe only (--count 1)")
		return exitUsage
	}
	budget := time.Duration(o.count-1)*time.Second + o.timeout
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	results, err := probes.Ping(ctx, target, o.count, probes.ICMPMode(o.icmpMode))
	if err != nil {
		fmt.Fprintf(stderr, "edgeprobe probe: %v\n", err)
		return exitFailure
	}
	ok := 0
	for _, r := range results {
		printResult(stdout, probes.KindICMP, target, r)
		if r.OK {
			ok++
		}
	}
	fmt.Fprintf(stdout, "%d sent, %d ok, %.0f%% loss\n", len(results), ok,
		100*float64(len(results)-ok)/float64(max(len(results), 1)))
	if ok == 0 {
		return exitFailure
	}
	return exitOK
}

// printResult writes one line: what was probed, ok or the failure, and the timings.
func printResult(w io.Writer, kind probes.Kind, target string, r probes.Result) {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: ", kind, target)
	// Microseconds are the resolution that means something for a network round trip.
	if r.OK {
		fmt.Fprintf(&b, "ok in %s", r.RTT.Round(time.Microsecond))
	} else {
		fmt.Fprintf(&b, "FAIL %s after %s", r.Reason, r.RTT.Round(time.Microsecond))
		if r.Detail != "" {
			fmt.Fprintf(&b, " (%s)", r.Detail)
		}
	}
	for _, p := range []struct {
		name string
		d    time.Duration
	}{
		{"resolve", r.Phases.Resolve}, {"connect", r.Phases.Connect}, {"tls", r.Phases.TLS},
		{"processing", r.Phases.Processing}, {"transfer", r.Phases.Transfer},
	} {
		if p.d > 0 {
			fmt.Fprintf(&b, " %s=%s", p.name, p.d.Round(time.Microsecond))
		}
	}
	fmt.Fprintln(w, b.String())
}
