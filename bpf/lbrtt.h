// SPDX-License-Identifier: (GPL-2.0-only OR MIT)

// lbrtt.h: the lb program's handshake round-trip times, as the AF_XDP
// worker's (datapath/rtt.go): the gap between a client's SYN and that
// client's first ACK of the same flow, both through the balancer, per
// backend in a per-CPU log2 histogram.
//
// Where the SYN's time lives: in the flow entry's spare word
// (flow_value.pad), so the flow table keeps its layout and size. A SYN
// that creates or refreshes an entry stores the monotonic clock there in
// units of 2^RTT_SHIFT ns (1.024 µs), truncated to 32 bits (it wraps after
// 73 minutes, far beyond any handshake); 0 means "no handshake pending", so
// a SYN that reads 0 stores 1. Every other packet that creates or refreshes
// an entry stores 0. A packet that finds its flow pays one compare on the
// entry it already holds (pad != 0); only the first packet after a SYN
// takes the branch: if it is an ACK without RST the gap goes into the
// backend's histogram, and pad is cleared either way, so a flow gives one
// sample per handshake. A retransmitted SYN restarts the measurement.
//
// Precision: both ends are read in 1.024 µs units, so a sample is within
// one unit of the true gap; the buckets start at that unit anyway.

#ifndef LBRTT_H
#define LBRTT_H

// datapath.RTTBuckets and rttShift: bucket 0 counts gaps under 2^10 ns,
// bucket i those in [2^(9+i), 2^(10+i)) ns, the last has no upper bound.
#define RTT_BUCKETS 24
#define RTT_SHIFT 10

// rtt_hist is one backend's histogram on one CPU; the Go side sums the
// CPUs (lbRttHist).
struct rtt_hist {
	__u64 buckets[RTT_BUCKETS];
	__u64 sum; // ns
};

// rtt_hists: indexed by BACKEND_INDEX; max_entries set by the loader
// (MaxBackends).
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct rtt_hist);
	__uint(max_entries, 1);
} rtt_hists SEC(".maps");

// rtt_mark is what a packet that creates or refreshes a flow entry stores
// in its pad: the clock for a SYN, else 0. The clock is a call, paid by
// SYNs only.
static __always_inline __u32 rtt_mark(struct pkt *p)
{
	if (!p->syn)
		return 0;
	__u32 t = bpf_ktime_get_ns() >> RTT_SHIFT;
	return t ? t : 1;
}

// rtt_bucket is bits.Len(units) capped at the last bucket: the index
// datapath.rttBucket gives the same gap.
static __always_inline __u32 rtt_bucket(__u32 v)
{
	__u32 n = 0;

	if (v >= 1 << 16) {
		v >>= 16;
		n += 16;
	}
	if (v >= 1 << 8) {
		v >>= 8;
		n += 8;
	}
	if (v >= 1 << 4) {
		v >>= 4;
		n += 4;
	}
	if (v >= 1 << 2) {
		v >>= 2;
		n += 2;
	}
	if (v >= 1 << 1) {
		v >>= 1;
		n += 1;
	}
	n += v;
	return n < RTT_BUCKETS ? n : RTT_BUCKETS - 1;
}

// rtt_handshake takes the first packet after a SYN of the flow fv, found
// in the flow table and pinned to backend_id: an ACK without RST records
// the gap since the SYN. ICMP errors about the flow leave it pending.
// Called only when fv->pad != 0, so its cost is the handshake's alone.
static __noinline void rtt_handshake(struct xdp_md *ctx, struct pkt *p, struct flow_value *fv, __u32 backend_id)
{
	if (!p || !fv || p->icmp != ICMP_NONE)
		return;
	void *data = (void *)(long)ctx->data;
	__u8 *flags = data + (p->l4off & 0xfff) + 13; // tcphdr's flags byte
	__u32 start = fv->pad;

	fv->pad = 0;
	if ((void *)(flags + 1) > (void *)(long)ctx->data_end || (*flags & 0x14) != 0x10)
		return;
	__u32 units = (__u32)(bpf_ktime_get_ns() >> RTT_SHIFT) - start;
	__u32 idx = BACKEND_INDEX(backend_id);
	struct rtt_hist *h = bpf_map_lookup_elem(&rtt_hists, &idx);
	if (!h)
		return;
	__u32 b = rtt_bucket(units);
	// The compiler knows b < RTT_BUCKETS and drops the check; the
	// verifier does not: hide b from the compiler so the check stays.
	asm volatile("" : "+r"(b));
	if (b < RTT_BUCKETS)
		h->buckets[b] += 1;
	h->sum += (__u64)units << RTT_SHIFT;
}

#endif
