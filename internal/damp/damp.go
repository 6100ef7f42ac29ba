// Package damp is the damping of verdicts for everything that notifies or acts on them
// (docs/architecture.md, "Acting on a verdict: damping and silences"). Verdicts stay immediate;
// a Damper turns one site's stream of verdicts into what a notifier or an action should
// currently assert: nothing, "lost" or "partitioned". It fires lost once the verdict has
// been lost without a break for LostFor, partitioned once it has been partitioned (or
// lost) that long without firing lost, and resolves once the verdict has been up without
// a break for RecoverFor; any other verdict keeps what fires.
//
// A Damper reads no clock and starts no timer: the caller passes the time and asks
// Next for the moment its answer may change, so notifiers, actions and tests drive it
// alike. Consumers compare Firing with what they last delivered and deliver the
// difference (reconciliation), which is also how a silence that ends, or a notification
// that failed, catches up.
package damp

import "time"

// The verdicts a Damper tells apart; every other verdict counts as neither.
const (
	VerdictLost        = "lost"
	VerdictPartitioned = "partitioned"
	VerdictUp          = "up"
)

// DefaultRecoverFor is recover_for where a config leaves it out (docs/architecture.md, "Acting on a
// verdict: damping and silences"); lost_for defaults to zero, a Damper's zero value.
const DefaultRecoverFor = 10 * time.Second

// Firing is what should currently be asserted about a site.
type Firing uint8

// What a Damper can assert.
const (
	None        Firing = iota // nothing fires (never fired, or resolved)
	Lost                      // the site is lost: notify critical, fail over
	Partitioned               // reachable from some vantage points only: warn, never act
)

func (f Firing) String() string {
	switch f {
	case Lost:
		return VerdictLost
	case Partitioned:
		return VerdictPartitioned
	}
	return "none"
}

// Damper damps one site's verdicts. The zero value (no delays) follows the verdict at
// once: lost fires on lost, partitioned on partitioned, and resolves on up.
type Damper struct {
	LostFor    time.Duration // a loss must last this long before it fires
	RecoverFor time.Duration // an up must last this long before a firing alert resolves

	verdict string
	since   time.Time // when the current verdict began
	// troubleSince is when the current unbroken run of lost or partitioned verdicts began:
	// a site that goes lost -> partitioned -> lost has been in trouble all along.
	troubleSince time.Time
	lostSince    time.Time // start of the current unbroken run of lost, zero if not lost
	firing       Firing
}

// Update records the site's verdict at now; it may change what fires.
func (d *Damper) Update(verdict string, now time.Time) {
	if verdict == d.verdict {
		d.advance(now)
		return
	}
	trouble := func(v string) bool { return v == VerdictLost || v == VerdictPartitioned }
	if !trouble(d.verdict) && trouble(verdict) {
		d.troubleSince = now
	}
	if verdict == VerdictLost && d.verdict != VerdictLost {
		d.lostSince = now
	}
	if verdict != VerdictLost {
		d.lostSince = time.Time{}
	}
	d.verdict, d.since = verdict, now
	d.advance(now)
}

// Firing is what fires at now. Call it with times that do not go backwards.
func (d *Damper) Firing(now time.Time) Firing {
	d.advance(now)
	return d.firing
}

// Verdict is the last verdict recorded.
func (d *Damper) Verdict() string { return d.verdict }

// advance moves the firing state to what holds at now.
func (d *Damper) advance(now time.Time) {
	switch d.verdict {
	case VerdictLost:
		if d.firing != Lost && !now.Before(d.lostSince.Add(d.LostFor)) {
			d.firing = Lost
		} else if d.firing == None && !now.Before(d.troubleSince.Add(d.LostFor)) {
			d.firing = Partitioned // in trouble long enough, lost only lately
		}
	case VerdictPartitioned:
		if d.firing == None && !now.Before(d.troubleSince.Add(d.LostFor)) {
			d.firing = Partitioned
		}
	case VerdictUp:
		if d.firing != None && !now.Before(d.since.Add(d.RecoverFor)) {
			d.firing = None
		}
	}
}

// Next is the earliest time after now at which Firing may change without a new verdict,
// or the zero time when it cannot.
func (d *Damper) Next(now time.Time) time.Time {
	d.advance(now)
	var at time.Time
	consider := func(t time.Time) {
		if t.After(now) && (at.IsZero() || t.Before(at)) {
			at = t
		}
	}
	switch d.verdict {
	case VerdictLost:
		if d.firing != Lost {
			consider(d.lostSince.Add(d.LostFor))
		}
		if d.firing == None {
			consider(d.troubleSince.Add(d.LostFor))
		}
	case VerdictPartitioned:
		if d.firing == None {
			consider(d.troubleSince.Add(d.LostFor))
		}
	case VerdictUp:
		if d.firing != None {
			consider(d.since.Add(d.RecoverFor))
		}
	}
	return at
}
