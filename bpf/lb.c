// SPDX-License-Identifier: (GPL-2.0-only OR MIT)

//go:build ignore

// lb: the native XDP datapath ("mode = native"). It does in the kernel what
// the AF_XDP worker does in Go, for IPv4 VIPs with IPIP encapsulation:
// VIP lookup, flow table, Maglev pick with the same flow hash, IPIP header
// identical to datapath/packet.EncapIPIP, XDP_TX back out of the interface.
// Frames that are not for a VIP address are passed to the kernel; frames to
// a VIP address that cannot be forwarded are dropped and counted with the Go
// worker's drop reason.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xlb.h"

#define IPIP_OVERHEAD 20
#define OUTER_TTL 64

// FLOW_SEED is hash.FlowSeed ("XLB1"), JHASH_INITVAL lookup3's start value.
#define FLOW_SEED 0x584c4231
#define JHASH_INITVAL 0xdeadbeef

// EMPTY_SLOT is hash.EmptySlot: a Maglev slot with no backend.
#define EMPTY_SLOT 0xffffffff

// Set by the loader before loading (LBOptions): the Maglev table size M and
// the number of VIP tables in the maglev map (its size is max_vips * M).
volatile const __u32 table_size = 65537;
volatile const __u32 max_vips = 1;

// vip_key and vip_value: xlb.h. Here vip_value.id is the VIP's index: its
// Maglev table is maglev[id*M, id*M+M).

// flow_key is the 5-tuple, in the words the flow hash takes. Mirrored by
// lbFlowKey in Go.
struct flow_key {
	__be32 saddr;
	__be32 daddr;
	__u32 ports; // source then destination port, as in the packet
	__u8 proto;
	__u8 pad[3];
};

// flow_value: the backend a flow is pinned to, and the flow hash that
// picked it (tells which Maglev slot the flow came from). Mirrored by
// lbFlowValue in Go.
struct flow_value {
	__u32 backend;
	__u32 hash;
};

#define BACKEND_VALID 1    // the id is in use
#define BACKEND_RESOLVED 2 // mac holds the next hop's address

// backend is one entry of the backends map, indexed by backend id (the
// values of the Maglev slots). Mirrored by lbBackend in Go.
struct backend {
	__be32 addr;
	__u8 mac[6];
	__u16 flags;
};

struct backend_stats {
	__u64 packets;
	__u64 bytes; // received frame bytes, as the Go worker counts them
};

// source: the outer source address, the interface's MAC and the egress MTU
// the outer IP packet must fit. Mirrored by lbSource in Go.
struct source {
	__be32 addr;
	__u8 mac[6];
	__u16 mtu;
};

// lb_counter indexes counters. Mirrored in Go (counter.go).
// SEEN = FORWARDED + PASSED + MALFORMED + the drops; FLOW_HIT counts the
// forwarded frames whose backend came from the flow table.
enum lb_counter {
	LB_SEEN = 0,
	LB_FORWARDED,
	LB_PASSED,
	LB_MALFORMED,
	LB_FLOW_HIT,
	// Drop reasons, named as the Go worker's (datapath.Drop).
	LB_DROP_BAD_IP_VERSION,
	LB_DROP_BAD_IP_LENGTH,
	LB_DROP_FRAGMENT,
	LB_DROP_UNSUPPORTED_PROTOCOL,
	LB_DROP_TRUNCATED_L4,
	LB_DROP_NO_VIP,
	LB_DROP_NO_BACKEND,
	LB_DROP_NO_NEIGHBOR,
	LB_DROP_TOO_BIG,
	LB_DROP_NO_HEADROOM,
	LB_COUNTER_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct vip_key);
	__type(value, struct vip_value);
	__uint(max_entries, 4096);
} vips SEC(".maps");

// maglev: the Maglev tables of every VIP, back to back; max_entries is set
// by the loader to max_vips * table_size.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} maglev SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct backend);
	__uint(max_entries, 1);
} backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct backend_stats);
	__uint(max_entries, 1);
} backend_stats SEC(".maps");

// flows: the connection table. An LRU hash: when full, the least recently
// used flows are evicted and re-picked from the Maglev table if they come
// back. Its size is set by the loader. BPF_F_NO_COMMON_LRU keeps one LRU
// list per CPU (one hash table still): no CPU takes a shared lock to
// insert, which is what a flow table on every packet needs.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct flow_key);
	__type(value, struct flow_value);
	__uint(max_entries, 1);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct source);
	__uint(max_entries, 1);
} source SEC(".maps");

// ip_ids: the outer IPv4 identification, one counter per CPU as the Go
// workers keep one each.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} ip_ids SEC(".maps");

// counters: all of a CPU's counters in one value, so that a packet pays one
// map lookup for the three or four counters it bumps.
struct lb_counters {
	__u64 c[LB_COUNTER_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_counters);
	__uint(max_entries, 1);
} counters SEC(".maps");

static __always_inline void count(struct lb_counters *cnt, __u32 idx)
{
	if (idx < LB_COUNTER_MAX)
		cnt->c[idx] += 1;
}

static __always_inline int pass(struct lb_counters *cnt)
{
	count(cnt, LB_PASSED);
	return XDP_PASS;
}

static __always_inline int malformed(struct lb_counters *cnt)
{
	count(cnt, LB_MALFORMED);
	return XDP_PASS;
}

static __always_inline int drop(struct lb_counters *cnt, __u32 reason)
{
	count(cnt, reason);
	return XDP_DROP;
}

static __always_inline __u32 rol32(__u32 w, int s)
{
	return (w << s) | (w >> (32 - s));
}

// jhash_3words is the Linux kernel's (include/linux/jhash.h), as hash.Flow4.
static __always_inline __u32 jhash_3words(__u32 a, __u32 b, __u32 c, __u32 initval)
{
	__u32 iv = JHASH_INITVAL + (3 << 2) + initval;

	a += iv;
	b += iv;
	c += iv;
	c ^= b;
	c -= rol32(b, 14);
	a ^= c;
	a -= rol32(c, 11);
	b ^= a;
	b -= rol32(a, 25);
	c ^= b;
	c -= rol32(b, 16);
	a ^= c;
	a -= rol32(c, 4);
	b ^= a;
	b -= rol32(a, 14);
	c ^= b;
	c -= rol32(b, 24);
	return c;
}

static __always_inline __u16 ipv4_csum(struct iphdr *ip)
{
	__u16 *w = (__u16 *)ip;
	__u32 sum = 0;

#pragma unroll
	for (int i = 0; i < (int)(sizeof(*ip) / 2); i++)
		sum += w[i];
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return ~sum;
}

static __always_inline int lb_process(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct vip_key key = {};
	__u32 reason = 0; // why the frame cannot be forwarded, 0 if it can
	__u32 zero = 0;
	int tagged = 0;
	__u32 ports = 0;
	__u8 syn = 0;

	struct lb_counters *cnt = bpf_map_lookup_elem(&counters, &zero);
	if (!cnt)
		return XDP_PASS; // cannot happen: a per-CPU array always has key 0
	count(cnt, LB_SEEN);

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return malformed(cnt);
	__u16 ethertype = eth->h_proto;
	void *l3 = eth + 1;
	if (ethertype == bpf_htons(ETH_P_8021Q) ||
	    ethertype == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vlan = l3;
		if ((void *)(vlan + 1) > end)
			return malformed(cnt);
		ethertype = vlan->proto;
		l3 = vlan + 1;
		tagged = 1;
	}
	if (ethertype != bpf_htons(ETH_P_IP))
		return pass(cnt); // IPv6 VIPs are the AF_XDP datapath's for now

	struct iphdr *ip = l3;
	if ((void *)(ip + 1) > end)
		return malformed(cnt);
	__u32 hlen = ip->ihl * 4;
	if (hlen < sizeof(*ip) || l3 + hlen > end)
		return malformed(cnt);
	key.family = 4;
	key.proto = ip->protocol;
	__builtin_memcpy(key.addr, &ip->daddr, 4);

	// The Go parser's checks, in its order (packet.ParseIPv4).
	__u32 total = bpf_ntohs(ip->tot_len);
	void *l4 = l3 + hlen;
	if (ip->version != 4) {
		reason = LB_DROP_BAD_IP_VERSION;
	} else if (total < hlen || l3 + total > end) {
		reason = LB_DROP_BAD_IP_LENGTH;
	} else if (ip->frag_off & bpf_htons(IP_FRAG_MASK)) {
		reason = LB_DROP_FRAGMENT;
	} else if (key.proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;
		if ((void *)(tcp + 1) > end || (void *)(tcp + 1) > l3 + total) {
			reason = LB_DROP_TRUNCATED_L4;
		} else {
			ports = *(__u32 *)tcp;
			key.port = tcp->dest;
			syn = tcp->syn && !tcp->ack;
		}
	} else if (key.proto == IPPROTO_UDP) {
		struct udphdr *udp = l4;
		if ((void *)(udp + 1) > end || (void *)(udp + 1) > l3 + total) {
			reason = LB_DROP_TRUNCATED_L4;
		} else {
			ports = *(__u32 *)udp;
			key.port = udp->dest;
		}
	} else {
		reason = LB_DROP_UNSUPPORTED_PROTOCOL;
	}

	struct vip_value *vip = NULL;
	if (!reason) {
		vip = bpf_map_lookup_elem(&vips, &key);
		if (!vip) {
			key.port = 0;
			vip = bpf_map_lookup_elem(&vips, &key);
		}
	}
	if (!vip) {
		// Not forwardable: the Go worker's business (drop and count)
		// if the address is a VIP's, the kernel's otherwise.
		key.port = 0;
		key.proto = 0;
		if (!bpf_map_lookup_elem(&vips, &key))
			return pass(cnt);
		return drop(cnt, reason ? reason : LB_DROP_NO_VIP);
	}
	__u32 vip_id = vip->id;
	if (vip_id >= max_vips)
		return drop(cnt, LB_DROP_NO_VIP);

	// Flow table first, except for a TCP SYN: a new connection always
	// takes the current Maglev choice (a reused 5-tuple must not stick to
	// the backend of the connection before it).
	struct flow_key fk = {
		.saddr = ip->saddr,
		.daddr = ip->daddr,
		.ports = ports,
		.proto = key.proto,
	};
	struct backend *be = NULL;
	__u32 backend_id;
	// Looked up for a SYN too: an entry that exists is rewritten in place,
	// which costs far less than replacing it (an LRU node freed and one
	// allocated) when a client reuses a 5-tuple or retransmits its SYN.
	struct flow_value *fvp = bpf_map_lookup_elem(&flows, &fk);
	if (fvp && !syn) {
		backend_id = fvp->backend;
		be = bpf_map_lookup_elem(&backends, &backend_id);
		// A flow whose backend id was freed is picked again.
		if (be && !(be->flags & BACKEND_VALID))
			be = NULL;
		if (be)
			count(cnt, LB_FLOW_HIT);
	}
	if (!be) {
		__u32 h = jhash_3words(fk.saddr, fk.daddr, ports, FLOW_SEED ^ key.proto);
		__u32 slot = ((__u64)h * table_size) >> 32;
		__u32 idx = vip_id * table_size + slot;
		__u32 *s = bpf_map_lookup_elem(&maglev, &idx);
		if (!s || *s == EMPTY_SLOT)
			return drop(cnt, LB_DROP_NO_BACKEND);
		backend_id = *s;
		be = bpf_map_lookup_elem(&backends, &backend_id);
		if (!be || !(be->flags & BACKEND_VALID))
			return drop(cnt, LB_DROP_NO_BACKEND);
		if (fvp) {
			fvp->backend = backend_id;
			fvp->hash = h;
		} else {
			struct flow_value fv = { .backend = backend_id, .hash = h };
			bpf_map_update_elem(&flows, &fk, &fv, BPF_ANY);
		}
	}
	if (!(be->flags & BACKEND_RESOLVED))
		return drop(cnt, LB_DROP_NO_NEIGHBOR);

	struct source *src = bpf_map_lookup_elem(&source, &zero);
	if (!src)
		return drop(cnt, LB_DROP_TOO_BIG);
	if (total + IPIP_OVERHEAD > src->mtu)
		return drop(cnt, LB_DROP_TOO_BIG);

	// Everything the new headers need from the old ones, read before the
	// frame moves.
	struct iphdr outer = {
		.version = 4,
		.ihl = 5,
		.tos = ip->tos,
		.tot_len = bpf_htons(total + IPIP_OVERHEAD),
		.frag_off = ip->frag_off & bpf_htons(IP_DF),
		.ttl = OUTER_TTL,
		.protocol = IPPROTO_IPIP,
		.saddr = src->addr,
		.daddr = be->addr,
	};
	__u32 *id = bpf_map_lookup_elem(&ip_ids, &zero);
	if (id) {
		*id += 1;
		outer.id = bpf_htons((__u16)*id);
	}
	outer.check = ipv4_csum(&outer);
	struct vlan_hdr tag = {};
	if (tagged)
		tag.tci = ((struct vlan_hdr *)(eth + 1))->tci;
	__u16 tpid = eth->h_proto;
	// The whole frame: BPF_PROG_TEST_RUN hands a frame longer than a page
	// over in fragments even to a program that is not multi-buffer aware,
	// with only the first part between data and data_end.
	__u32 frame_len = bpf_xdp_get_buff_len(ctx);
	__u32 l3off = l3 - data;

	// Drop Ethernet padding past the IP packet, as EncapIPIP does.
	__u32 padding = frame_len - (l3off + total);
	if (padding && bpf_xdp_adjust_tail(ctx, -(int)padding))
		return drop(cnt, LB_DROP_BAD_IP_LENGTH);
	if (bpf_xdp_adjust_head(ctx, -IPIP_OVERHEAD))
		return drop(cnt, LB_DROP_NO_HEADROOM);

	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	eth = data;
	if (tagged) {
		struct vlan_hdr *vlan = (void *)(eth + 1);
		struct iphdr *oip = (void *)(vlan + 1);
		if ((void *)(oip + 1) > end)
			return drop(cnt, LB_DROP_NO_HEADROOM);
		eth->h_proto = tpid;
		vlan->tci = tag.tci;
		vlan->proto = bpf_htons(ETH_P_IP);
		__builtin_memcpy(oip, &outer, sizeof(outer));
	} else {
		struct iphdr *oip = (void *)(eth + 1);
		if ((void *)(oip + 1) > end)
			return drop(cnt, LB_DROP_NO_HEADROOM);
		eth->h_proto = bpf_htons(ETH_P_IP);
		__builtin_memcpy(oip, &outer, sizeof(outer));
	}
	__builtin_memcpy(eth->h_dest, be->mac, ETH_ALEN);
	__builtin_memcpy(eth->h_source, src->mac, ETH_ALEN);

	struct backend_stats *st = bpf_map_lookup_elem(&backend_stats, &backend_id);
	if (st) {
		st->packets += 1;
		st->bytes += frame_len;
	}
	count(cnt, LB_FORWARDED);
	return XDP_TX;
}

SEC("xdp")
int xlb_lb(struct xdp_md *ctx)
{
	return lb_process(ctx);
}

// xlb_lb_bench is the benchmarks' harness; LoadLB never loads it. It runs
// the same code, then undoes an encapsulation (moves the start of the frame
// back and restores the Ethernet header; untagged frames without padding
// only), so that a repeated BPF_PROG_TEST_RUN, which keeps what the previous
// run left, runs every time on the same input.
SEC("xdp")
int xlb_lb_bench(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr saved;

	if (data + sizeof(saved) > end)
		return XDP_ABORTED;
	__builtin_memcpy(&saved, data, sizeof(saved));
	int act = lb_process(ctx);
	if (act != XDP_TX)
		return act;
	if (bpf_xdp_adjust_head(ctx, IPIP_OVERHEAD))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + sizeof(saved) > end)
		return XDP_ABORTED;
	__builtin_memcpy(data, &saved, sizeof(saved));
	return act;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
