// Package failover is the part of the central view that acts on a lost site
// (docs/architecture.md, "Failover"): it rewrites DNS records by RFC 2136 dynamic update signed
// with TSIG, runs runbooks, and keeps the guard rails and the audit log around both.
//
// It exists apart from view/ because acting is a different trade from judging. The view
// decides verdicts in milliseconds from pushes and must never wait; the controller here
// talks to name servers that refuse, time out and are shared with other views, keeps
// state that must survive a restart (which sites are failed over, the hold, the rate
// window), and writes an fsynced audit trail of every decision. Kept in its own package
// it imports nothing of view/, agent/, probes/ or config/: the view hands it a Verdict
// per site change and mounts its HTTP handler, and it can be tested against a real BIND
// without a view, the same way `edgeprobe check --test-actions` uses it without one.
//
// The parts:
//
//   - Config (the [actions] table of view.toml) with Check, which validates everything,
//     including the TSIG key files (ParseKeyFile reads BIND's key-file syntax);
//   - Controller: Update and Tick make the decisions at the times they are given,
//     damping each site's verdicts with internal/damp; Run adds the timers; attempts
//     and runbooks run in goroutines and report back;
//   - the audit log (audit.log, JSON lines, fsynced, rotated) and the state file
//     (failover.json, replaced atomically) in the view's state directory;
//   - Handler (the operator API), Collector (metrics) and the Alert callback.
package failover
