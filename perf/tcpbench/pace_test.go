package tcpbench

import (
	"testing"
	"time"
)

// fakeClock is a clock the pacer reads and sleeps on, advanced by hand.
type fakeClock struct {
	now    time.Time
	slept  []time.Duration
	oversl time.Duration // how late every sleep wakes
}

func (c *fakeClock) Now() time.Time { return c.now }
func (c *fakeClock) Sleep(d time.Duration) {
	c.slept = append(c.slept, d)
	c.now = c.now.Add(d + c.oversl)
}

func TestPacerSchedule(t *testing.T) {
	t0 := time.Unix(1000, 0)
	for _, tc := range []struct {
		rate     float64
		interval time.Duration
	}{{2000, 500 * time.Microsecond}, {500, 2 * time.Millisecond}, {3, 333333333}} {
		p := newPacer(t0, tc.rate)
		for i := range 10 {
			if got, want := p.next(), t0.Add(time.Duration(i)*tc.interval); !got.Equal(want) {
				t.Fatalf("rate %v: send %d at %v, want %v", tc.rate, i, got.Sub(t0), want.Sub(t0))
			}
		}
	}
}

func TestPacerAwait(t *testing.T) {
	t0 := time.Unix(1000, 0)
	const iv = time.Millisecond
	tests := []struct {
		name      string
		now       time.Duration // clock before await, from t0
		oversleep time.Duration
		wantSleep time.Duration // 0: no sleep
		wantFrom  time.Duration // from t0
	}{
		{"ahead by half", iv / 2, 0, iv / 2, iv},
		{"late timer counts from waking", iv / 2, 30 * time.Microsecond, iv / 2, iv + 30*time.Microsecond},
		{"behind counts from the slot", 5 * iv, 0, 0, iv},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := newPacer(t0, float64(time.Second/iv))
			p.next() // slot 0 done; the next slot is at t0+iv
			c := &fakeClock{now: t0.Add(tc.now), oversl: tc.oversleep}
			intended, from := p.await(c.Now, c.Sleep)
			if !intended.Equal(t0.Add(iv)) {
				t.Errorf("intended %v, want %v", intended.Sub(t0), iv)
			}
			if !from.Equal(t0.Add(tc.wantFrom)) {
				t.Errorf("latency counts from %v, want %v", from.Sub(t0), tc.wantFrom)
			}
			switch {
			case tc.wantSleep == 0 && len(c.slept) != 0:
				t.Errorf("slept %v behind schedule", c.slept)
			case tc.wantSleep != 0 && (len(c.slept) != 1 || c.slept[0] != tc.wantSleep):
				t.Errorf("slept %v, want [%v]", c.slept, tc.wantSleep)
			}
		})
	}
}

// TestPacerKeepsRate checks the open loop: a stall does not drop sends,
// the sends behind schedule go out at once until the schedule is caught up.
func TestPacerKeepsRate(t *testing.T) {
	t0 := time.Unix(1000, 0)
	c := &fakeClock{now: t0}
	p := newPacer(t0, 1000)
	var sends int
	for {
		intended, _ := p.await(c.Now, c.Sleep)
		if !intended.Before(t0.Add(time.Second)) {
			break
		}
		sends++
		if sends == 100 {
			c.now = c.now.Add(50 * time.Millisecond) // a 50 ms stall
		}
	}
	if sends != 1000 {
		t.Errorf("%d sends in 1 s at 1000/s, want 1000", sends)
	}
}
