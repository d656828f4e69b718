package datapath

import (
	"testing"
	"time"

	"github.com/xlbproject/xlb/datapath/packet"
	"github.com/xlbproject/xlb/flowtable"
	"github.com/xlbproject/xlb/hash"
)

// tracked reports whether f's flow table holds the flow of sendTo's packet
// from sport, and its backend ID.
func tracked(t *testing.T, f *Forwarder, sport uint16) (uint32, bool) {
	t.Helper()
	var fl packet.Flow
	if packet.Parse(frame(t, frameSpec{dst: vipAddr, sport: sport, dport: 80}), &fl) != packet.OK {
		t.Fatal("frame does not parse")
	}
	k := flowtable.Key4{Src: fl.Src, Dst: fl.Dst, Ports: fl.Ports, Proto: fl.Proto}
	e, ok := f.flows.Lookup(hash.Flow4(k.Src, k.Dst, k.Ports, k.Proto), &k, f.now)
	return e.Backend, ok
}

// TestSYNGuard, as the native program's TestLBSYNGuard: past the SYN rate
// in a second, a new flow's SYN goes to its Maglev pick without a flow
// entry and counts syn_untracked; its next packet makes the entry on that
// backend; a SYN that finds its entry still rewrites it; the next second
// admits again; rate 0 admits every SYN.
func TestSYNGuard(t *testing.T) {
	ps := newPlanSet()
	weights := map[string]int{"198.18.0.11": 1, "198.18.0.12": 1, "198.18.0.13": 1}
	s := ps.spec(t, ps.trackPlanVIP(weights))
	s.SYNRate = 2
	p, err := NewPlan(s)
	if err != nil {
		t.Fatal(err)
	}
	f := newForwarder(t, 1500)
	f.BeginBatch(p, time.Second)
	for sport := uint16(43000); sport < 43002; sport++ {
		sendTo(t, f, p, sport, true)
		if _, ok := tracked(t, f, sport); !ok {
			t.Fatalf("SYN %d within the rate made no flow entry", sport)
		}
	}
	if n := f.Events(EventSYNUntracked); n != 0 {
		t.Fatalf("syn_untracked %d within the rate", n)
	}
	be := sendTo(t, f, p, 43002, true)
	if _, ok := tracked(t, f, 43002); ok || f.Events(EventSYNUntracked) != 1 {
		t.Fatalf("SYN past the rate: tracked %v, syn_untracked %d", ok, f.Events(EventSYNUntracked))
	}
	if got := sendTo(t, f, p, 43002, false); got != be {
		t.Fatalf("the untracked SYN's next packet went to %v, want the SYN's %v", got, be)
	}
	if _, ok := tracked(t, f, 43002); !ok {
		t.Fatal("the untracked SYN's next packet made no flow entry")
	}
	// A SYN of a tracked flow re-picks in place, past the rate too: the
	// flow's entry, moved by hand, comes back to its Maglev pick.
	pick, _ := tracked(t, f, 43000)
	var fl packet.Flow
	packet.Parse(frame(t, frameSpec{dst: vipAddr, sport: 43000, dport: 80}), &fl)
	k := flowtable.Key4{Src: fl.Src, Dst: fl.Dst, Ports: fl.Ports, Proto: fl.Proto}
	h := hash.Flow4(k.Src, k.Dst, k.Ports, k.Proto)
	f.flows.Upsert(h, &k, f.now, flowtable.Entry{Backend: pick + 1, VIP: p.vips[0].id})
	sendTo(t, f, p, 43000, true)
	if got, _ := tracked(t, f, 43000); got != pick || f.Events(EventSYNUntracked) != 1 {
		t.Fatalf("SYN of a tracked flow past the rate: backend ID %d, want %d (syn_untracked %d)", got, pick, f.Events(EventSYNUntracked))
	}
	// The guard's path allocates nothing: a SYN past the rate, untracked
	// every time.
	in := frame(t, frameSpec{dst: vipAddr, sport: 44000, dport: 80})
	in[14+20+13] = 0x02
	buf := umemFrame(in)
	untracked := f.Events(EventSYNUntracked)
	if allocs := testing.AllocsPerRun(1000, func() {
		copy(buf[headroom:], in)
		sinkInt, _, _ = f.Forward(p, buf, headroom, len(in))
	}); allocs != 0 {
		t.Errorf("an untracked SYN allocates %v times", allocs)
	}
	if n := f.Events(EventSYNUntracked) - untracked; n < 1000 {
		t.Errorf("%d SYNs untracked in the allocation run, want every one", n)
	}
	f.events[EventSYNUntracked].Store(untracked)
	// The next second admits again.
	f.BeginBatch(p, 2*time.Second)
	sendTo(t, f, p, 43003, true)
	if _, ok := tracked(t, f, 43003); !ok {
		t.Fatal("SYN in a new second made no flow entry")
	}
	// Rate 0: no limit.
	s.SYNRate = 0
	if p, err = NewPlan(s); err != nil {
		t.Fatal(err)
	}
	f.BeginBatch(p, 2*time.Second)
	for sport := uint16(43100); sport < 43110; sport++ {
		sendTo(t, f, p, sport, true)
	}
	if n := f.Events(EventSYNUntracked); n != 1 {
		t.Fatalf("syn_untracked %d after SYNs without a rate, want the 1 before", n)
	}
}
