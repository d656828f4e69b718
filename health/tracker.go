package health

import "time"

// State is a target's health.
type State int

// Values of State. The zero State is none of them, so a Status that was
// never filled in is not mistaken for a healthy one.
const (
	// StateUp: the backend takes new flows.
	StateUp State = iota + 1
	// StateDown: the backend is out of its VIP's Maglev table.
	StateDown
)

// String returns "up" or "down".
func (s State) String() string {
	switch s {
	case StateUp:
		return "up"
	case StateDown:
		return "down"
	}
	return "unknown"
}

// tracker is the rise/fall state machine of one target, kept apart from
// timers and sockets so that it is tested without either.
type tracker struct {
	rise, fall int
	state      State
	since      time.Time // of the last change, or of the start
	// successes and failures are consecutive: one resets the other.
	successes, failures int
	checks              uint64
	lastErr             string
}

// newTracker starts in state at now with fresh counters.
func newTracker(rise, fall int, state State, now time.Time) tracker {
	return tracker{rise: rise, fall: fall, state: state, since: now}
}

// observe records one probe's result (err nil: success) at now and reports
// whether the state changed: Down to Up after rise consecutive successes,
// Up to Down after fall consecutive failures.
func (t *tracker) observe(err error, now time.Time) (changed bool) {
	t.checks++
	if err == nil {
		t.lastErr = ""
		t.failures = 0
		t.successes++
		if t.state == StateDown && t.successes >= t.rise {
			t.state, t.since = StateUp, now
			return true
		}
		return false
	}
	t.lastErr = err.Error()
	t.successes = 0
	t.failures++
	if t.state == StateUp && t.failures >= t.fall {
		t.state, t.since = StateDown, now
		return true
	}
	return false
}
