// SPDX-License-Identifier: (GPL-2.0-only OR MIT)

// lbflowcache.h: a per-CPU cache of the flow tables, in front of them.
//
// Why. The flow tables (flows, flows6) are LRU hashes of up to millions of
// entries (a million in the perf lab), shared by every CPU. A lookup walks a bucket head
// and then an element elsewhere, and in a table that large each of those
// is a miss in the TLB as well as in the caches: the map lives in 4 KiB
// pages of vmalloc space, a few thousand active flows touch more pages than
// the TLB holds, and under KVM every page walk is two-dimensional. In the
// perf lab the lookup took a fifth of the balancer core, about 78 ns of a
// frame's 370. The cache is small (LBFlowCacheSize entries per CPU and
// family: 1 MiB of IPv4 entries), so the active flows stay on pages the
// TLB covers, and a lookup is one inlined array access: one cache line for
// IPv4.
//
// What it holds. Each CPU has its own slice of buckets of FC_WAYS entries,
// indexed by the flow hash's low bits; a new entry takes the bucket's least
// recently seen one. An entry copies what the flow table says about a
// flow: the 5-tuple, the VIP index it was picked for and the protocol (pv:
// protocol in the low byte, FC_PENDING, the VIP index in the high half),
// its backend (full ID), when it was last seen (jiffies) and the epoch
// (flow_epoch) it was copied in.
//
// The contract: a frame takes its backend from the cache only where the
// flow table would have given the same backend with nothing else to do:
// not a SYN, not an ICMP error, no handshake pending (its RTT sample is
// taken on the table's entry, which any CPU can reach), the same VIP, the
// backend still in use, and seen within the idle timeout less 2^flow_sync
// jiffies. Every other frame takes the flow table's path unchanged and then
// refreshes the cache entry, except a SYN of a flow the cache does not
// hold: a SYN flood must not push the established flows out, and the
// flow's next frame makes the entry. So the table stays the one authority
// across CPUs:
//  - its time: a cache hit writes the flow's time through to the table
//    whenever it crosses a multiple of 2^flow_sync jiffies (a sixteenth of
//    the shorter idle timeout, settings.flow_sync), so the table's time is
//    never more than that behind the flow's last frame; since the cache
//    stops short of the timeout by as much, a flow the table calls expired
//    is expired in every cache too, and all CPUs re-pick it alike.
//  - its backend: the only change the table sees to a live entry that
//    another CPU may hold in its cache is a SYN that moves a reused 5-tuple
//    to another backend (every other re-pick happens because the entry
//    expired, changed VIP or lost its backend, which every cache sees as
//    well); such a SYN moves flow_epoch on, which voids every cache entry
//    of every CPU.
//  - its capacity: the LRU evicts flows as before. If it evicts a flow
//    that a cache still holds, the next write-through puts the flow back
//    with its backend, or, if another CPU has meanwhile re-picked it
//    elsewhere, voids this CPU's entry: only a flow whose frames reach
//    several CPUs while its table entry is evicted and its Maglev slot has
//    changed can see two backends, and only until that write-through.
// One more edge, of the handshake RTT only: a reused 5-tuple whose SYN and
// first ACK reach different CPUs, while the ACK's CPU still holds the
// previous connection's entry with the same backend, has its sample taken
// late, at its first frame back on the SYN's CPU.
// Mirrored by lbFcBucket4 and lbFcBucket6 in Go.

#ifndef LBFLOWCACHE_H
#define LBFLOWCACHE_H

#define FC_WAYS 2
#define FC_PENDING 0x100 // pv: the flow's handshake RTT is pending in the table

struct fc4 {
	__be32 saddr;
	__be32 daddr;
	__u32 ports;
	__u32 pv;
	__u32 backend;
	__u32 epoch;
	__u64 seen;
};
_Static_assert(sizeof(struct fc4) * FC_WAYS == 64, "an IPv4 bucket is one cache line");

struct fc6 {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 ports;
	__u32 pv;
	__u32 backend;
	__u32 epoch;
	__u64 seen;
	__u64 pad; // a bucket is two whole cache lines
};
_Static_assert(sizeof(struct fc6) * FC_WAYS == 128, "an IPv6 bucket is two cache lines");

struct fc_bucket4 {
	struct fc4 e[FC_WAYS];
};

struct fc_bucket6 {
	struct fc6 e[FC_WAYS];
};

// cache_shift: log2 of the buckets of one CPU's slice, set by the loader.
volatile const __u32 cache_shift = 0;

// flow_epoch: a cache entry is valid only while it equals the epoch the
// entry was copied in (above).
__u32 flow_epoch;

// The caches: possible CPUs << cache_shift buckets, set by the loader, and
// memory-mappable, which puts the first bucket on a page boundary: a
// bucket never straddles a cache line it does not need.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct fc_bucket4);
	__uint(max_entries, 1);
} flow_cache SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct fc_bucket6);
	__uint(max_entries, 1);
} flow_cache6 SEC(".maps");

// fc_bucket_index is the bucket of flow hash h in cpu's slice.
static __always_inline __u32 fc_bucket_index(__u32 cpu, __u32 h)
{
	return (cpu << cache_shift) | (h & ((1U << cache_shift) - 1));
}

// fc4_differs is 0 if e holds p's 5-tuple: the words are compared
// together, one branch per entry.
static __always_inline __u32 fc4_differs(struct fc4 *e, struct pkt *p)
{
	return (e->saddr ^ p->src) | (e->daddr ^ p->dst) | (e->ports ^ p->ports) | ((e->pv ^ p->proto) & 0xff);
}

static __always_inline __u32 fc6_differs(struct fc6 *e, struct pkt *p)
{
	__u32 d = (e->ports ^ p->ports) | ((e->pv ^ p->proto) & 0xff);

#pragma unroll
	for (int i = 0; i < 4; i++)
		d |= (word(e->saddr, i) ^ word(p->src6, i)) | (word(e->daddr, i) ^ word(p->dst6, i));
	return d;
}

// FC_PICK returns the entry of p's 5-tuple in bucket b and sets *hit, or
// returns the entry a new one replaces (the least recently seen) and clears
// *hit.
#define FC_PICK(differs, b, p, hit)                                      \
	({                                                               \
		typeof(&(b)->e[0]) e_ = &(b)->e[0];                      \
		*(hit) = 1;                                              \
		if (differs(e_, p)) {                                    \
			e_ = &(b)->e[1];                                 \
			if (differs(e_, p)) {                            \
				*(hit) = 0;                              \
				if ((b)->e[0].seen <= e_->seen)          \
					e_ = &(b)->e[0];                 \
			}                                                \
		}                                                        \
		e_;                                                      \
	})

// fc6_pick is FC_PICK in cpu's IPv6 cache. A call of its own, verified
// once: inlined into lb_process it made the verifier walk every IPv6 path
// again (xlb_lb_capture went from 166k to 221k instructions, past the
// headroom TestLBVerifierHeadroom allows), for 20 ns an IPv6 frame. NULL:
// the index is out of the cache (it cannot be).
static __noinline struct fc6 *fc6_pick(__u32 cpu, __u32 h, struct pkt *p, int *hit)
{
	__u32 i = fc_bucket_index(cpu, h);
	struct fc_bucket6 *b = bpf_map_lookup_elem(&flow_cache6, &i);

	if (!b || !p || !hit)
		return NULL;
	return FC_PICK(fc6_differs, b, p, hit);
}

// fc_ref points at one cache entry's fields, whatever its family.
struct fc_ref {
	__u32 *pv;
	__u32 *backend;
	__u32 *epoch;
	__u64 *seen;
};

#define FC_REF(r, e)                    \
	do {                            \
		(r).pv = &(e)->pv;           \
		(r).backend = &(e)->backend; \
		(r).epoch = &(e)->epoch;     \
		(r).seen = &(e)->seen;       \
	} while (0)

#endif
