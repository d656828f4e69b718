package datapath

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"testing"
)

// trackPlan is one TCP VIP on 198.18.100.1:80 whose backends are
// 198.18.0.11 to .16 with the given weights (absent: not in the plan), the
// down ones held down by health checks.
func (ps *planSet) trackPlan(t *testing.T, weights map[string]int, down ...string) *Plan {
	t.Helper()
	return ps.plan(t, ps.trackPlanVIP(weights, down...))
}

// trackPlanVIP is trackPlan's VIP.
func (ps *planSet) trackPlanVIP(weights map[string]int, down ...string) tvip {
	v := tvip{addr: "198.18.100.1", port: 80}
	for i := 11; i <= 16; i++ {
		addr := fmt.Sprintf("198.18.0.%d", i)
		w, ok := weights[addr]
		if !ok {
			continue
		}
		v.backends = append(v.backends, tbe{addr: addr, weight: uint32(w), mac: byte(i), down: slices.Contains(down, addr)})
	}
	return v
}

// sendTo forwards one packet of the flow from sport and returns the backend
// address it was encapsulated to.
func sendTo(t *testing.T, f *Forwarder, p *Plan, sport uint16, syn bool) netip.Addr {
	t.Helper()
	in := frame(t, frameSpec{dst: vipAddr, sport: sport, dport: 80})
	if syn {
		in[14+20+13] = 0x02 // SYN only
	}
	buf := umemFrame(in)
	off, _, ok := f.Forward(p, buf, headroom, len(in))
	if !ok {
		t.Fatalf("sport %d not forwarded: %v", sport, dropsOf(f))
	}
	return netip.AddrFrom4([4]byte(buf[off+30 : off+34]))
}

// TestTrackedFlowsKeepTheirBackend: a flow stays on its backend across
// weight changes, additions and drains, moves when its backend is removed or
// down, and a SYN always takes the current Maglev decision.
func TestTrackedFlowsKeepTheirBackend(t *testing.T) {
	ps := newPlanSet()
	base := map[string]int{"198.18.0.11": 1, "198.18.0.12": 1, "198.18.0.13": 1}
	p1 := ps.trackPlan(t, base)
	f := newForwarder(t, 1500)
	const flows = 400
	first := make([]netip.Addr, flows)
	for i := range flows {
		first[i] = sendTo(t, f, p1, uint16(10000+i), true)
	}

	changes := []struct {
		name    string
		weights map[string]int
		down    []string
	}{
		{"weights change", map[string]int{"198.18.0.11": 5, "198.18.0.12": 1, "198.18.0.13": 1}, nil},
		{"backend added", map[string]int{"198.18.0.11": 1, "198.18.0.12": 1, "198.18.0.13": 1, "198.18.0.14": 3}, nil},
		{"backend drained", map[string]int{"198.18.0.11": 1, "198.18.0.12": 0, "198.18.0.13": 1}, nil},
	}
	for _, c := range changes {
		p2 := ps.trackPlan(t, c.weights, c.down...)
		moved, wouldMove := 0, 0
		for i := range flows {
			if got := sendTo(t, f, p2, uint16(10000+i), false); got != first[i] {
				moved++
			}
			// What an untracked (new) flow with this tuple would get.
			fresh := newForwarder(t, 1500)
			if sendTo(t, fresh, p2, uint16(10000+i), true) != first[i] {
				wouldMove++
			}
		}
		if moved != 0 {
			t.Errorf("%s: %d of %d tracked flows changed backend", c.name, moved, flows)
		}
		if wouldMove == 0 {
			t.Errorf("%s: the change moves no flow in Maglev: the test proves nothing", c.name)
		}
		t.Logf("%s: 0 tracked flows moved; %d of %d would have without tracking", c.name, wouldMove, flows)
	}

	// Removed or down: the flows re-pick, and only those flows move.
	for _, c := range []struct {
		name    string
		weights map[string]int
		down    []string
		gone    netip.Addr
	}{
		{"backend removed", map[string]int{"198.18.0.11": 1, "198.18.0.13": 1}, nil, netip.MustParseAddr("198.18.0.12")},
		{"backend down", base, []string{"198.18.0.13"}, netip.MustParseAddr("198.18.0.13")},
	} {
		f := newForwarder(t, 1500)
		for i := range flows {
			first[i] = sendTo(t, f, p1, uint16(10000+i), true)
		}
		p2 := ps.trackPlan(t, c.weights, c.down...)
		for i := range flows {
			got := sendTo(t, f, p2, uint16(10000+i), false)
			switch {
			case got == c.gone:
				t.Fatalf("%s: flow %d still sent to %s", c.name, i, c.gone)
			case first[i] != c.gone && got != first[i]:
				t.Fatalf("%s: flow %d moved from %s to %s though its backend is fine", c.name, i, first[i], got)
			}
		}
	}

	// SYN re-picks: with the weights changed, a SYN on a tracked tuple
	// follows the new table.
	p2 := ps.trackPlan(t, map[string]int{"198.18.0.11": 1, "198.18.0.12": 1, "198.18.0.13": 1, "198.18.0.14": 1, "198.18.0.15": 1, "198.18.0.16": 1})
	fresh := newForwarder(t, 1500)
	repicked := 0
	for i := range flows {
		want := sendTo(t, fresh, p2, uint16(10000+i), true)
		if got := sendTo(t, f, p2, uint16(10000+i), true); got != want {
			t.Fatalf("SYN of flow %d went to %s, Maglev says %s", i, got, want)
		}
		if want != first[i] {
			repicked++
		}
	}
	if repicked == 0 {
		t.Error("no SYN changed backend: the test proves nothing")
	}
	if s := f.flows.Stats(); s.Hits == 0 || s.Inserts == 0 {
		t.Errorf("flow table counters: %+v", s)
	}
}

// TestCensusStep: a flow count walked in small steps, restarted half way
// through, counts every tracked flow once, by the backend it is pinned to.
func TestCensusStep(t *testing.T) {
	ps := newPlanSet()
	p := ps.trackPlan(t, map[string]int{"198.18.0.11": 1, "198.18.0.12": 2, "198.18.0.13": 1})
	f := newForwarder(t, 1500)
	const flows = 400
	sent := map[netip.Addr]int{}
	for i := range flows {
		sent[sendTo(t, f, p, uint16(10000+i), true)]++
	}
	if f.CensusStep(50, true) != nil {
		t.Fatal("a walk of 50 buckets finished the whole table")
	}
	var counts map[uint32]uint64
	for i := 0; counts == nil; i++ {
		if i > 10000 {
			t.Fatal("census never finished")
		}
		counts = f.CensusStep(3, i == 0) // restart: the first 50 buckets again
		if i == 100 && counts == nil {
			counts = f.CensusStep(math.MaxInt, false) // an idle worker: the rest at once
		}
	}
	var got, want []int
	for _, n := range counts {
		got = append(got, int(n))
	}
	for _, n := range sent {
		want = append(want, n)
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("flows per backend ID %v, want the counts %v (by address %v)", counts, want, sent)
	}
}
