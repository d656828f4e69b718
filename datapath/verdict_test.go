package datapath

import (
	"net/netip"
	"testing"

	"github.com/xlbproject/xlb/capture"
)

// TestVerdict: what a capture learns of a frame Forward took: its backend,
// or its drop reason.
func TestVerdict(t *testing.T) {
	p, _ := testPlan(t, false)
	f := newForwarder(t, 1500)
	try := func(in []byte) capture.Verdict {
		f.lastBackend = nil
		_, _, ok := f.Forward(p, umemFrame(in), headroom, len(in))
		return f.verdict(ok)
	}
	v := try(frame(t, frameSpec{dst: netip.MustParseAddr("198.18.100.2"), sport: 9, dport: 7, udp: true}))
	if v.Kind != capture.Forwarded || v.BackendAddr() != netip.MustParseAddr("198.18.0.21") {
		t.Errorf("forwarded: %+v (%s)", v, v.BackendAddr())
	}
	v = try(frame(t, frameSpec{dst: netip.MustParseAddr("198.18.100.9"), sport: 9, dport: 7, udp: true}))
	if v.Kind != capture.Dropped || Drop(v.Drop) != DropNoVIP || v.BackendAddr().IsValid() {
		t.Errorf("no vip: %+v", v)
	}
	v = try(frame(t, frameSpec{dst: netip.MustParseAddr("198.18.100.3"), sport: 9, dport: 53, udp: true}))
	if v.Kind != capture.Dropped || Drop(v.Drop) != DropNoBackend {
		t.Errorf("drained vip: %+v", v)
	}
}
