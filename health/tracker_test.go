package health

import (
	"errors"
	"testing"
	"time"
)

func TestTracker(t *testing.T) {
	// Each step is one probe: '+' success, '-' failure. want is the state
	// after each step and changes the steps where the state must change.
	tests := []struct {
		name       string
		rise, fall int
		start      State
		steps      string
		want       string // 'U' up, 'D' down after each step
	}{
		{"single failures never flap", 2, 3, StateUp, "+-+-+--+-", "UUUUUUUUU"},
		{"fall consecutive failures go down", 2, 3, StateUp, "+---", "UUUD"},
		{"more failures stay down", 2, 3, StateUp, "------", "UUDDDD"},
		{"one success is not enough to rise", 2, 3, StateDown, "+-+-+-", "DDDDDD"},
		{"rise consecutive successes come up", 2, 3, StateDown, "-++", "DDU"},
		{"a failure between successes restarts the count", 3, 1, StateDown, "++-+++", "DDDDDU"},
		{"fall 1 goes down at once", 1, 1, StateUp, "-+-", "DUD"},
		{"round trip", 2, 2, StateUp, "--++--", "UDDUUD"},
	}
	boom := errors.New("boom")
	t0 := time.Unix(1000, 0)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr := newTracker(tt.rise, tt.fall, tt.start, t0)
			prev := tt.start
			lastChange := t0
			for i, step := range tt.steps {
				now := t0.Add(time.Duration(i+1) * time.Second)
				var err error
				if step == '-' {
					err = boom
				}
				changed := tr.observe(err, now)
				want := StateUp
				if tt.want[i] == 'D' {
					want = StateDown
				}
				if tr.state != want {
					t.Fatalf("step %d (%c): state %v, want %v", i, step, tr.state, want)
				}
				if changed != (want != prev) {
					t.Fatalf("step %d (%c): changed %v going from %v to %v", i, step, changed, prev, want)
				}
				if changed {
					lastChange = now
				}
				if !tr.since.Equal(lastChange) {
					t.Fatalf("step %d: since %v, want %v", i, tr.since, lastChange)
				}
				if tr.checks != uint64(i+1) {
					t.Fatalf("step %d: checks %d", i, tr.checks)
				}
				if (err == nil) != (tr.lastErr == "") {
					t.Fatalf("step %d: lastErr %q after err %v", i, tr.lastErr, err)
				}
				if (tr.successes == 0) == (tr.failures == 0) {
					t.Fatalf("step %d: successes %d and failures %d are not exclusive", i, tr.successes, tr.failures)
				}
				prev = want
			}
		})
	}
}

func TestStateString(t *testing.T) {
	for s, want := range map[State]string{StateUp: "up", StateDown: "down", 0: "unknown"} {
		if got := s.String(); got != want {
			t.Errorf("State(%d).String() = %q, want %q", int(s), got, want)
		}
	}
}
