package agent

import "time"

// rto estimates a target's timeout from its own round-trip times, as TCP does for its
// retransmission timeout (RFC 6298): srtt + 4*rttvar, clamped to [floor, ceiling].
// A target with no sample yet gets the ceiling, so a slow first answer is not a failure.
type rto struct {
	srtt, rttvar time.Duration
	sampled      bool
}

// observe feeds one successful probe's RTT. Failures are not samples: a timeout says
// nothing about how long an answer takes.
func (e *rto) observe(rtt time.Duration) {
	if !e.sampled {
		e.srtt, e.rttvar, e.sampled = rtt, rtt/2, true
		return
	}
	delta := e.srtt - rtt
	if delta < 0 {
		delta = -delta
	}
	e.rttvar = (3*e.rttvar + delta) / 4
	e.srtt = (7*e.srtt + rtt) / 8
}

// timeout is the current estimate within [floor, ceiling].
func (e *rto) timeout(floor, ceiling time.Duration) time.Duration {
	if !e.sampled {
		return ceiling
	}
	return min(max(e.srtt+4*e.rttvar, floor), ceiling)
}
