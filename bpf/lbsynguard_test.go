package bpf

import (
	"testing"
)

// TestLBSYNGuard: past the SYN rate in a CPU's window, a new flow's SYN is
// forwarded to its Maglev pick without a flow entry and counted; its first
// ACK makes the entry, on that same backend; a SYN that finds its entry
// rewrites it whatever the count; a new window admits SYNs again; rate 0
// admits every one.
func TestLBSYNGuard(t *testing.T) {
	lb := loadTestLB(t)
	onCPU0(t)
	if err := lb.SetSYNRate(2); err != nil {
		t.Fatal(err)
	}
	syn := func(port uint16) []byte { return tcpFrame(t, vipTCP, port, 80, "S", 0, false, 0) }
	send := func(frame []byte) (int, LBCounters) {
		t.Helper()
		before, err := lb.Counters()
		if err != nil {
			t.Fatal(err)
		}
		be, _ := lbBackendOf(t, lb, frame)
		after, err := lb.Counters()
		if err != nil {
			t.Fatal(err)
		}
		return be, subLB(after, before)
	}
	// A fresh window (the program's clock is far from 0).
	for port := uint16(43000); port < 43002; port++ {
		if _, d := send(syn(port)); d.SYNUntracked != 0 || d.Forwarded != 1 {
			t.Fatalf("SYN %d within the rate: %+v", port, d)
		}
		if _, ok := flowOf(t, lb, syn(port)); !ok {
			t.Fatalf("SYN %d within the rate made no flow entry", port)
		}
	}
	over := syn(43002)
	be, d := send(over)
	if d.SYNUntracked != 1 || d.Forwarded != 1 {
		t.Fatalf("SYN past the rate: %+v, want forwarded and untracked", d)
	}
	if _, ok := flowOf(t, lb, over); ok {
		t.Fatal("SYN past the rate made a flow entry")
	}
	// Its first ACK tracks the flow, on the SYN's backend.
	ack := tcpFrame(t, vipTCP, 43002, 80, "A", 0, false, 0)
	if got, _ := send(ack); got != be {
		t.Fatalf("ACK of the untracked SYN went to backend %d, want the SYN's %d", got, be)
	}
	if fv, ok := flowOf(t, lb, ack); !ok || fv.Backend != LBBackendID(be, lbTestGen) {
		t.Fatalf("ACK after an untracked SYN: entry %+v (present %v), want backend %d", fv, ok, be)
	}
	// A SYN that finds its entry re-picks in place, past the rate too.
	first := syn(43000)
	fv, _ := flowOf(t, lb, first)
	pick := fv.Backend
	fv.Backend = LBBackendID(0, lbTestGen)
	if fv.Backend == pick {
		fv.Backend = LBBackendID(1, lbTestGen)
	}
	setFlow(t, lb, first, fv)
	if _, d := send(first); d.SYNUntracked != 0 {
		t.Fatalf("SYN of a tracked flow past the rate counted untracked: %+v", d)
	}
	if fv, _ := flowOf(t, lb, first); fv.Backend != pick {
		t.Fatalf("SYN of a tracked flow past the rate left backend %#x, want the Maglev pick %#x", fv.Backend, pick)
	}
	// A new window admits again.
	var g []lbSynGuard
	if err := lb.objs.SynGuard.Lookup(uint32(0), &g); err != nil {
		t.Fatal(err)
	}
	g[0].Start -= uint64(lb.settings.SynWindow)
	if err := lb.objs.SynGuard.Put(uint32(0), g); err != nil {
		t.Fatal(err)
	}
	if _, d := send(syn(43003)); d.SYNUntracked != 0 {
		t.Fatalf("SYN in a new window: %+v", d)
	}
	// Rate 0: no limit.
	if err := lb.SetSYNRate(0); err != nil {
		t.Fatal(err)
	}
	for port := uint16(43100); port < 43110; port++ {
		if _, d := send(syn(port)); d.SYNUntracked != 0 {
			t.Fatalf("SYN %d without a rate: %+v", port, d)
		}
	}
}
