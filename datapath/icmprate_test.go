package datapath

import (
	"net/netip"
	"testing"
	"time"
)

// An echo flood gets at most the configured reply rate: 5,000 requests a
// second for two seconds of batch clock, against 1,000/s with a burst of
// 50, get the burst plus 1,000 a second and no more; the rest are dropped
// and counted. Frag-needed messages share the bucket.
func TestICMPRateLimit(t *testing.T) {
	s := newPlanSet().spec(t, testVIPs...)
	s.ICMPRate = ICMPRate{PerSecond: 1000, Burst: 50}
	p, err := NewPlan(s)
	if err != nil {
		t.Fatal(err)
	}
	f := newForwarder(t, 1500)
	echo := packetTo(t, netip.MustParseAddr("198.18.0.2"), vipAddr, 56, true)
	const batches, perBatch, step = 200, 50, 10 * time.Millisecond // 5,000/s for 2s
	replies := 0
	for i := range batches {
		f.BeginBatch(p, time.Duration(i)*step)
		for range perBatch {
			if _, _, ok := f.Forward(p, umemFrame(echo), headroom, len(echo)); ok {
				replies++
			}
		}
	}
	elapsed := time.Duration(batches-1) * step
	most := 50 + int(elapsed/time.Millisecond)
	if replies > most || replies < most-perBatch {
		t.Errorf("%d echo replies in %v, want at most %d (and close to it)", replies, elapsed, most)
	}
	limited := f.Drops(DropEchoRateLimited)
	if int(limited) != batches*perBatch-replies || f.Events(EventICMPRateLimited) != limited || f.Events(EventEchoReply) != uint64(replies) {
		t.Errorf("replies %d, echo_rate_limited %d, icmp_rate_limited %d", replies, limited, f.Events(EventICMPRateLimited))
	}
	t.Logf("%d requests: %d replies, %d rate limited", batches*perBatch, replies, limited)

	// The bucket is empty now: a too-big DF packet is dropped too_big
	// without its frag-needed, until the clock refills a token.
	big := frame(t, frameSpec{dst: netip.MustParseAddr("198.18.100.2"), sport: 1, dport: 80, udp: true, payload: 1472, df: true})
	if _, _, ok := f.Forward(p, umemFrame(big), headroom, len(big)); ok || f.Events(EventICMPRateLimited) != limited+1 {
		t.Errorf("frag-needed sent from an empty bucket (rate limited %d)", f.Events(EventICMPRateLimited))
	}
	f.BeginBatch(p, elapsed+time.Millisecond)
	if _, _, ok := f.Forward(p, umemFrame(big), headroom, len(big)); !ok || f.Events(EventFragNeeded) != 1 {
		t.Errorf("no frag-needed after a refill: %v", dropsOf(f))
	}
	// Rate 0: no limit.
	s.ICMPRate = ICMPRate{}
	unlimited, err := NewPlan(s)
	if err != nil {
		t.Fatal(err)
	}
	g := newForwarder(t, 1500)
	g.BeginBatch(unlimited, 0)
	for range 500 {
		if _, _, ok := g.Forward(unlimited, umemFrame(echo), headroom, len(echo)); !ok {
			t.Fatal("echo dropped without a limit")
		}
	}
}

func TestEchoWithRateLimitAllocatesNothing(t *testing.T) {
	s := newPlanSet().spec(t, testVIPs...)
	s.ICMPRate = ICMPRate{PerSecond: 1000, Burst: 50}
	p, err := NewPlan(s)
	if err != nil {
		t.Fatal(err)
	}
	f := newForwarder(t, 1500)
	echo := packetTo(t, netip.MustParseAddr("198.18.0.2"), vipAddr, 56, true)
	buf := umemFrame(echo)
	var now time.Duration
	allocs := testing.AllocsPerRun(1000, func() {
		now += time.Millisecond
		f.BeginBatch(p, now)
		copy(buf[headroom:], echo)
		sinkInt, _, _ = f.Forward(p, buf, headroom, len(echo))
	})
	if allocs != 0 {
		t.Fatalf("echo with a rate limit allocates %v times per packet", allocs)
	}
}
