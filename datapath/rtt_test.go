package datapath

import (
	"net/netip"
	"testing"
	"time"
)

// TestHandshakeRTT: a SYN and the flow's first ACK a known batch-clock gap
// apart give one sample of that gap on the flow's backend; the packets
// after it give none, nor does a RST after a SYN.
func TestHandshakeRTT(t *testing.T) {
	ps := newPlanSet()
	p := ps.trackPlan(t, map[string]int{"198.18.0.11": 1, "198.18.0.12": 1})
	f := newForwarder(t, 1500)
	const flows = 50
	backends := map[netip.Addr]int{}
	for i := range flows {
		sport := uint16(20000 + i)
		f.BeginBatch(p, time.Second)
		be := sendTo(t, f, p, sport, true)
		f.BeginBatch(p, time.Second+300*time.Microsecond)
		if got := sendTo(t, f, p, sport, false); got != be {
			t.Fatalf("sport %d: ACK went to %s, SYN to %s", sport, got, be)
		}
		f.BeginBatch(p, 2*time.Second)
		sendTo(t, f, p, sport, false) // established: no sample
		backends[be]++
	}
	// A SYN answered by a RST: no sample.
	f.BeginBatch(p, 3*time.Second)
	sendTo(t, f, p, 30000, true)
	in := frame(t, frameSpec{dst: vipAddr, sport: 30000, dport: 80})
	in[14+20+13] = 0x14 // RST+ACK
	if _, _, ok := f.Forward(p, umemFrame(in), headroom, len(in)); !ok {
		t.Fatal("RST not forwarded")
	}

	var total uint64
	for addr, n := range backends {
		h := ps.counters["198.18.100.1:80/6 "+addr.String()].HandshakeRTT()
		if h.Count() != uint64(n) {
			t.Errorf("backend %s: %d samples, want %d", addr, h.Count(), n)
		}
		if h.Sum != time.Duration(n)*300*time.Microsecond {
			t.Errorf("backend %s: sum %v, want %d × 300µs", addr, h.Sum, n)
		}
		// 300 µs falls in [262.144 µs, 524.288 µs).
		if p50 := h.Quantile(0.5); p50 < 262144*time.Nanosecond || p50 >= 524288*time.Nanosecond {
			t.Errorf("backend %s: p50 %v outside 300 µs's bucket", addr, p50)
		}
		total += h.Count()
	}
	if total != flows {
		t.Errorf("%d samples, want %d", total, flows)
	}
}

func TestRTTBuckets(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want int
	}{
		{0, 0}, {1023, 0}, {1024, 1}, {2047, 1}, {2048, 2},
		{300 * time.Microsecond, 9}, {time.Second, 20}, {time.Hour, RTTBuckets - 1},
	} {
		if got := rttBucket(c.d); got != c.want {
			t.Errorf("rttBucket(%v) = %d, want %d", c.d, got, c.want)
		}
		if i := rttBucket(c.d); c.d >= RTTBucketBound(i) || (i > 0 && c.d < RTTBucketBound(i-1)) {
			t.Errorf("%v not within bucket %d's bounds", c.d, i)
		}
	}
}

func TestRTTQuantile(t *testing.T) {
	var h RTTHistogram
	if h.Quantile(0.5) != 0 {
		t.Error("empty histogram: quantile not 0")
	}
	h.Buckets[9] = 98 // [262 µs, 524 µs)
	h.Buckets[20] = 2 // [537 ms, 1.07 s)
	if p50 := h.Quantile(0.5); p50 < RTTBucketBound(8) || p50 >= RTTBucketBound(9) {
		t.Errorf("p50 %v", p50)
	}
	if p99 := h.Quantile(0.99); p99 < RTTBucketBound(19) || p99 >= RTTBucketBound(20) {
		t.Errorf("p99 %v", p99)
	}
	h.Buckets[RTTBuckets-1] = 1000
	if p99 := h.Quantile(0.99); p99 != RTTBucketBound(RTTBuckets-2) {
		t.Errorf("p99 in the last bucket: %v", p99)
	}
}

// TestHandshakeRTTAllocs: the SYN and first-ACK paths allocate nothing.
func TestHandshakeRTTAllocs(t *testing.T) {
	ps := newPlanSet()
	p := ps.trackPlan(t, map[string]int{"198.18.0.11": 1})
	f := newForwarder(t, 1500)
	syn := frame(t, frameSpec{dst: vipAddr, sport: 40000, dport: 80})
	syn[14+20+13] = 0x02
	ack := frame(t, frameSpec{dst: vipAddr, sport: 40000, dport: 80})
	buf := umemFrame(syn)
	if n := testing.AllocsPerRun(100, func() {
		copy(buf[headroom:], syn)
		f.Forward(p, buf, headroom, len(syn))
		copy(buf[headroom:], ack)
		f.Forward(p, buf, headroom, len(ack))
	}); n != 0 {
		t.Errorf("%v allocations per handshake", n)
	}
}
