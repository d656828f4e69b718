package datapath

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// Handshake round-trip time. A worker sees a client's SYN and, one round
// trip through the balancer and the backend later, the client's first ACK
// of the same flow. The gap is the client-to-backend RTT as the balancer
// sees it: a slow or overloaded backend shows up from the balancer alone.
//
// Where the SYN's time lives. The flow table's Entry is the backend ID and
// the VIP ID; growing it would grow every slot of every table. Instead the
// SYN's entry carries handshakePending in the VIP ID (VIP IDs count up from
// 1 and are never reused, so the top bit is free) and the SYN's time goes
// into a small direct-mapped side table indexed by the flow hash. A packet
// of an established flow finds its entry exactly as before and compares the
// VIP ID as before; only the first packet after a SYN fails that compare,
// takes the slow branch, records the sample and clears the bit. The hot
// path pays nothing measurable: no extra load, no extra store.
//
// The clock is the batch clock (one monotonic read per batch, nanoseconds),
// so a sample is exact to within the time one batch takes. A SYN that is
// retransmitted restarts the measurement; two handshakes that collide in
// the side table lose the older sample (counted nowhere: it is a sample,
// not a packet).
const handshakePending = 1 << 31

// handshakeSlots is the side table's size per worker (16 bytes a slot): it
// must hold the handshakes in flight on one worker at once, about the new
// connections a second times the RTT.
const handshakeSlots = 1 << 12

type handshakeSlot struct {
	hash    uint32
	backend uint32
	synAt   int64 // batch clock of the SYN, ns; 0 when the slot is free
}

// RTTBuckets is the number of buckets of a handshake RTT histogram. Bucket
// 0 counts RTTs under RTTBucketBound(0); bucket i counts those in
// [RTTBucketBound(i-1), RTTBucketBound(i)); the last bucket has no upper
// bound. The bounds double from 1.024 µs to 4.29 s: log-scale buckets
// resolve a LAN's tens of microseconds and a WAN's hundreds of
// milliseconds alike, and the index is one shift and one bit count.
const RTTBuckets = 24

// rttShift sets the first bound: 2^10 ns.
const rttShift = 10

// RTTBucketBound is the upper bound of bucket i (math.Inf for the last).
func RTTBucketBound(i int) time.Duration {
	if i >= RTTBuckets-1 {
		return time.Duration(math.MaxInt64)
	}
	return time.Duration(1) << (rttShift + i)
}

func rttBucket(d time.Duration) int {
	return min(bits.Len64(uint64(d)>>rttShift), RTTBuckets-1)
}

// rttSlot is one worker's histogram of one backend: written by that worker
// only, read by anyone.
type rttSlot struct {
	buckets [RTTBuckets]atomic.Uint64
	sum     atomic.Uint64 // nanoseconds
	_       [56]byte      // keep the next worker's slot off this cache line
}

// RTTHistogram is a snapshot of one backend's handshake RTTs summed over
// the workers.
type RTTHistogram struct {
	Buckets [RTTBuckets]uint64
	Sum     time.Duration
}

// Count is how many handshakes were measured.
func (h *RTTHistogram) Count() uint64 {
	var n uint64
	for _, c := range h.Buckets {
		n += c
	}
	return n
}

// Quantile estimates the q-quantile (0 < q < 1) by linear interpolation
// inside the bucket that holds it, as Prometheus's histogram_quantile does;
// in the unbounded last bucket it answers that bucket's lower bound. It is
// 0 without samples.
func (h *RTTHistogram) Quantile(q float64) time.Duration {
	n := h.Count()
	if n == 0 {
		return 0
	}
	rank := q * float64(n)
	var seen float64
	for i, c := range h.Buckets {
		if c == 0 || seen+float64(c) < rank {
			seen += float64(c)
			continue
		}
		var lo time.Duration
		if i > 0 {
			lo = RTTBucketBound(i - 1)
		}
		if i == RTTBuckets-1 {
			return lo
		}
		hi := RTTBucketBound(i)
		return lo + time.Duration((rank-seen)/float64(c)*float64(hi-lo))
	}
	return RTTBucketBound(RTTBuckets - 2)
}

// HandshakeRTT sums the backend's handshake RTT histogram over the workers.
func (c *BackendCounters) HandshakeRTT() RTTHistogram {
	var h RTTHistogram
	for i := range c.rtt {
		s := &c.rtt[i]
		for b := range s.buckets {
			h.Buckets[b] += s.buckets[b].Load()
		}
		h.Sum += time.Duration(s.sum.Load())
	}
	return h
}

// synSeen notes a SYN of the flow with hash h, sent to backend, at the
// batch clock.
func (f *Forwarder) synSeen(h, backend uint32) {
	f.handshakes[h&(handshakeSlots-1)] = handshakeSlot{hash: h, backend: backend, synAt: int64(f.clock)}
}

// handshakeDone takes the first packet after a SYN of the flow with hash h
// on be: an ACK (not a RST) completes the handshake and records its RTT.
func (f *Forwarder) handshakeDone(h uint32, be *backendState, flags byte) {
	s := &f.handshakes[h&(handshakeSlots-1)]
	if s.synAt == 0 || s.hash != h || s.backend != be.id {
		return
	}
	if flags&0x14 == 0x10 { // ACK without RST
		d := f.clock - time.Duration(s.synAt)
		r := &be.counters.rtt[f.worker]
		r.buckets[rttBucket(d)].Add(1)
		r.sum.Add(uint64(d))
	}
	s.synAt = 0
}
