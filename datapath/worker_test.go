package datapath

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// A spinning worker never sleeps, but must still poll when the fill ring
// asks for a wakeup; an idle worker that is not spinning sleeps in poll,
// which serves the wakeup as well.
func TestNextStep(t *testing.T) {
	tests := []struct {
		n              int
		spin, rxWakeup bool
		want           idleStep
	}{
		{0, false, false, stepPoll},
		{0, false, true, stepPoll},
		{8, false, false, stepNone},
		{8, false, true, stepWake},
		{0, true, false, stepNone},
		{0, true, true, stepWake},
		{8, true, false, stepNone},
		{8, true, true, stepWake},
	}
	for _, tt := range tests {
		if got := nextStep(tt.n, tt.spin, tt.rxWakeup); got != tt.want {
			t.Errorf("nextStep(n=%d, spin=%v, wakeup=%v) = %d, want %d", tt.n, tt.spin, tt.rxWakeup, got, tt.want)
		}
	}
}

// BeginBatch applies a new plan's flow timeouts: the same two packets two
// seconds apart are one flow under a one-hour timeout and two under a
// one-second one.
func TestBeginBatchAppliesPlanTimeouts(t *testing.T) {
	ps := newPlanSet()
	for _, tt := range []struct {
		timeout      time.Duration
		hits, misses uint64
	}{
		{time.Hour, 1, 1},
		{time.Second, 0, 2},
	} {
		s := ps.spec(t, testVIPs...)
		s.TCPTimeout, s.UDPTimeout = tt.timeout, tt.timeout
		p, err := NewPlan(s)
		if err != nil {
			t.Fatal(err)
		}
		f := newForwarder(t, 1500)
		in := frame(t, frameSpec{dst: vipAddr, sport: 4000, dport: 80})
		for _, now := range []time.Duration{0, 2 * time.Second} {
			f.BeginBatch(p, now)
			if _, _, ok := f.Forward(p, umemFrame(in), headroom, len(in)); !ok {
				t.Fatalf("not forwarded: %v", dropsOf(f))
			}
		}
		if st := f.FlowStats(); st.Hits != tt.hits || st.Misses != tt.misses {
			t.Errorf("timeout %v: hits %d misses %d, want %d and %d", tt.timeout, st.Hits, st.Misses, tt.hits, tt.misses)
		}
	}
}

// Plan.Lookup agrees with Forward on a new flow's backend.
func TestPlanLookupMatchesForward(t *testing.T) {
	p, spec := testPlan(t, true)
	f := newForwarder(t, 1500)
	for sport := uint16(2000); sport < 2100; sport++ {
		in := frame(t, frameSpec{dst: vipAddr, sport: sport, dport: 80})
		buf := umemFrame(in)
		off, _, ok := f.Forward(p, buf, headroom, len(in))
		if !ok {
			t.Fatal(dropsOf(f))
		}
		vi, bi, err := p.Lookup(6, netip.AddrPortFrom(netip.MustParseAddr("198.18.0.2"), sport), netip.AddrPortFrom(vipAddr, 80))
		if err != nil || vi != 0 {
			t.Fatalf("lookup: vip %d, %v", vi, err)
		}
		if got, want := netip.AddrFrom4([4]byte(buf[off+30:off+34])), spec.VIPs[0].Backends[bi].Addr; got != want {
			t.Fatalf("sport %d: forwarded to %s, Lookup says %s", sport, got, want)
		}
	}
}

// A backend ID's index may be given to another backend with a new
// generation: a flow tracked on the old ID takes a fresh decision instead
// of following the index to the newcomer.
func TestReusedIDIndexRepicks(t *testing.T) {
	ps := newPlanSet()
	one := tvip{addr: "198.18.100.1", port: 80, backends: []tbe{{addr: "198.18.0.11", weight: 1, mac: 0x11}}}
	s1 := ps.spec(t, one)
	s1.VIPs[0].Backends[0].ID = 5
	p1, err := NewPlan(s1)
	if err != nil {
		t.Fatal(err)
	}
	f := newForwarder(t, 1500)
	if got := sendTo(t, f, p1, 7000, true); got != netip.MustParseAddr("198.18.0.11") {
		t.Fatalf("first packet went to %s", got)
	}
	// .11 leaves; .12 takes index 5 in generation 1, .13 is the only
	// backend in the table.
	two := tvip{addr: "198.18.100.1", port: 80, backends: []tbe{{addr: "198.18.0.12", weight: 0, mac: 0x12}, {addr: "198.18.0.13", weight: 1, mac: 0x13}}}
	s2 := ps.spec(t, two)
	s2.VIPs[0].Backends[0].ID = 1<<IDIndexBits | 5
	s2.VIPs[0].Backends[1].ID = 6
	p2, err := NewPlan(s2)
	if err != nil {
		t.Fatal(err)
	}
	if got := sendTo(t, f, p2, 7000, false); got != netip.MustParseAddr("198.18.0.13") {
		t.Fatalf("flow tracked on the old ID went to %s, want a fresh pick (198.18.0.13)", got)
	}
	// The same index twice in one plan is refused.
	s2.VIPs[0].Backends[1].ID = 2<<IDIndexBits | 5
	if _, err := NewPlan(s2); err == nil {
		t.Fatal("two backends on one index accepted")
	}
}

// A worker that cannot start (here: its CPU does not exist) reports why
// through Done and Err instead of leaving its queue unserved in silence.
func TestWorkerReportsItsFailure(t *testing.T) {
	w := NewWorker(3, 4095, nil, nil, nil, 64, false)
	w.Start()
	select {
	case <-w.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("worker with an impossible CPU did not stop")
	}
	if err := w.Err(); err == nil || !strings.Contains(err.Error(), "queue 3") {
		t.Fatalf("Err() = %v", err)
	}
	if err := w.Halt(); err == nil {
		t.Fatal("Halt lost the error")
	}
}
