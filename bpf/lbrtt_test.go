package bpf

import (
	"testing"
	"time"

	"github.com/xlbproject/xlb/datapath"
)

// TestLBHandshakeRTT: a SYN marks its flow entry; the flow's first ACK
// adds one sample to its backend's histogram, in the bucket of the gap as
// datapath buckets it, and clears the mark, so later packets add nothing;
// an ICMP error about a pending flow leaves it pending; an ACK with RST
// ends the handshake without a sample; UDP never marks; IPv6 flows count
// too.
func TestLBHandshakeRTT(t *testing.T) {
	lb := loadTestLB(t)
	run := func(f []byte) {
		t.Helper()
		if v, _, d, _ := lbRun(t, lb, f); v != xdpTX {
			t.Fatalf("verdict %d (%+v)", v, d)
		}
	}
	pending := func(f []byte) bool {
		t.Helper()
		v, ok := flowOf(t, lb, f)
		if !ok {
			t.Fatal("no flow entry")
		}
		return v.Pad != 0
	}
	samples := func() (n uint64, per map[int]uint64, all []LBBackendCounters) {
		t.Helper()
		c, err := lb.BackendCounters()
		if err != nil {
			t.Fatal(err)
		}
		per = map[int]uint64{}
		for i, b := range c {
			for _, k := range b.RTTBuckets {
				n += k
				per[i] += k
			}
		}
		return n, per, c
	}

	syn := tcpFrame(t, vipTCP, 44000, 80, "S", 0, false, 0)
	ack := tcpFrame(t, vipTCP, 44000, 80, "A", 0, false, 0)
	run(syn)
	if !pending(syn) {
		t.Fatal("SYN left no handshake mark")
	}
	time.Sleep(3 * time.Millisecond)
	run(ack)
	if pending(ack) {
		t.Error("first ACK left the mark")
	}
	n, per, c := samples()
	be := lbModel(t, syn, -1, 0).backend
	if n != 1 || per[be] != 1 {
		t.Fatalf("after one handshake: %d samples, per backend %v, want 1 on backend %d", n, per, be)
	}
	// One sample: its sum (whole 1.024 µs units) lies in its bucket.
	sum := time.Duration(c[be].RTTSum)
	var b int
	for b = range c[be].RTTBuckets {
		if c[be].RTTBuckets[b] == 1 {
			break
		}
	}
	lo := time.Duration(0)
	if b > 0 {
		lo = datapath.RTTBucketBound(b - 1)
	}
	if sum < 3*time.Millisecond || sum < lo || sum >= datapath.RTTBucketBound(b) {
		t.Errorf("sample of %v in bucket %d [%v, %v), slept 3ms", sum, b, lo, datapath.RTTBucketBound(b))
	}
	run(ack)
	run(tcpFrame(t, vipTCP, 44000, 80, "A", 0, false, 100))
	if n, _, _ := samples(); n != 1 {
		t.Errorf("later packets added samples: %d", n)
	}

	// An ICMP error about the pending flow leaves it pending.
	syn = tcpFrame(t, vipTCP, 44001, 80, "S", 0, false, 0)
	run(syn)
	run(icmpErrorAbout(t, vipTCP, 80, 44001, 3, 4, 0))
	if !pending(syn) {
		t.Error("an ICMP error cleared the handshake mark")
	}
	run(tcpFrame(t, vipTCP, 44001, 80, "A", 0, false, 0))
	if n, _, _ := samples(); n != 2 {
		t.Errorf("after the second handshake: %d samples, want 2", n)
	}

	// RST|ACK: no sample, the mark is cleared.
	syn = tcpFrame(t, vipTCP, 44002, 80, "S", 0, false, 0)
	run(syn)
	rst := tcpFrame(t, vipTCP, 44002, 80, "A", 0, false, 0)
	rst[14+20+13] |= 0x04
	run(rst)
	if pending(syn) {
		t.Error("RST left the mark")
	}
	if n, _, _ := samples(); n != 2 {
		t.Errorf("a RST added a sample: %d", n)
	}

	// UDP never marks.
	u := udpFrame(t, vipUDP, 53, 20)
	run(u)
	if pending(u) {
		t.Error("a UDP flow is marked")
	}

	// IPv6.
	run(tcpFrame(t, vip6, 44003, 443, "S", 0, false, 0))
	run(tcpFrame(t, vip6, 44003, 443, "A", 0, false, 0))
	if n, per, _ := samples(); n != 3 || per[lbModel(t, tcpFrame(t, vip6, 44003, 443, "S", 0, false, 0), -1, 0).backend] == 0 {
		t.Errorf("IPv6 handshake: %d samples, per backend %v", n, per)
	}
}
