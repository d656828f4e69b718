// SPDX-License-Identifier: (GPL-2.0-only OR MIT)

//go:build ignore

// decap: the backend-side XDP program for hosts whose kernel has no tunnel
// modules. It strips the outer header of
//
//   IPIP (IPv4 in IPv4), 6in4 (IPv6 in IPv4, protocol 41),
//   4in6 (IPv4 in IPv6, next header 4), 6in6 (next header 41), and
//   GUE: outer IPv4 or IPv6, UDP to the port in gue_port, then a GUE
//        header: variant 0 (4 bytes plus optional fields, its proto field
//        4 or 41) or variant 1 (no header: the inner IP packet directly)
//
// and passes the inner packet to the stack as if it had arrived on the
// interface, keeping the Ethernet addresses and any VLAN tag.
//
// Only tunnels addressed to this host (outer destination in local_addrs)
// and sent by a balancer (outer source in allowed_sources) are
// decapsulated; every other tunnel packet is dropped and counted by
// reason, because decapsulating it would hand the stack an inner packet
// whose source address anyone could have chosen. Outer IPv4 fragments and
// outer IPv6 extension headers (the fragment header included) are left to
// the stack. Everything else, UDP to any other port included, is passed
// untouched.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "../xlb.h"

// decap_counter indexes decap_counters. Mirrored in Go (decap.go).
// Every frame is counted once: the five kinds + PASSED + MALFORMED + the
// drop reasons = all.
enum decap_counter {
	DECAP_IPIP = 0,
	DECAP_6IN4 = 1,
	DECAP_4IN6 = 2,
	DECAP_6IN6 = 3,
	DECAP_GUE = 4,
	DECAP_PASSED = 5,
	DECAP_MALFORMED = 6,
	// Dropped: the outer destination is not one of local_addrs.
	DECAP_DROP_NOT_LOCAL = 7,
	// Dropped: the outer source is in no prefix of allowed_sources.
	DECAP_DROP_SOURCE = 8,
	DECAP_COUNTER_MAX = 9,
};

// GUE header, first byte: version (2 bits), C (control), hlen (5 bits,
// optional fields in 32-bit words); then the inner protocol and flags.
#define GUE_VERSION_SHIFT 6
#define GUE_CONTROL 0x20
#define GUE_HLEN_MASK 0x1f

// l2_hdr is the Ethernet header with room for one VLAN tag.
struct l2_hdr {
	struct ethhdr eth;
	struct vlan_hdr vlan;
};

struct gue_hdr {
	__u8 flags_hlen;
	__u8 proto;
	__be16 flags;
};

// addr_key is the key of allowed_sources (an LPM trie) and local_addrs (a
// hash of whole addresses). The matched data is the family (4 or 6) then
// the address (IPv4 in the first 4 bytes), so prefixlen counts 8 family
// bits before the address bits and an IPv4 prefix never matches IPv6.
// pad stays zero.
struct addr_key {
	__u32 prefixlen;
	__u8 family;
	__u8 addr[16];
	__u8 pad[3];
};

#define MAX_ALLOWED_SOURCES 1024
#define MAX_LOCAL_ADDRS 1024

// allowed_sources: the balancers' prefixes. Empty, every tunnel is dropped.
struct {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__type(key, struct addr_key);
	__type(value, __u32);
	__uint(max_entries, MAX_ALLOWED_SOURCES);
	__uint(map_flags, BPF_F_NO_PREALLOC);
} allowed_sources SEC(".maps");

// local_addrs: this host's addresses, keys with the full prefixlen (40 or
// 136). The loader fills it from the host's interfaces.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct addr_key);
	__type(value, __u32);
	__uint(max_entries, MAX_LOCAL_ADDRS);
} local_addrs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, DECAP_COUNTER_MAX);
} decap_counters SEC(".maps");

// gue_port holds the GUE UDP destination port in host byte order; 0 (the
// value until the loader sets it) disables GUE.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} gue_port SEC(".maps");

static __always_inline int count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&decap_counters, &idx);

	if (v)
		*v += 1;
	return XDP_PASS;
}

static __always_inline int drop(__u32 idx)
{
	count(idx);
	return XDP_DROP;
}

// outer_verdict returns the drop counter for a tunnel packet from src to
// dst (keys with the family and address set), or -1 if it may be
// decapsulated.
static __always_inline int outer_verdict(struct addr_key *src, struct addr_key *dst)
{
	__u32 bits = src->family == 4 ? 8 + 32 : 8 + 128;

	dst->prefixlen = bits;
	if (!bpf_map_lookup_elem(&local_addrs, dst))
		return DECAP_DROP_NOT_LOCAL;
	src->prefixlen = bits;
	if (!bpf_map_lookup_elem(&allowed_sources, src))
		return DECAP_DROP_SOURCE;
	return -1;
}

// inner_kind returns the counter of an IP-in-IP packet whose outer header
// is IPv4 (outer4) or IPv6 and carries proto, or -1 if proto is neither
// IPv4 (4) nor IPv6 (41).
static __always_inline int inner_kind(int outer4, __u8 proto)
{
	if (proto == IPPROTO_IPIP)
		return outer4 ? DECAP_IPIP : DECAP_4IN6;
	if (proto == IPPROTO_IPV6)
		return outer4 ? DECAP_6IN4 : DECAP_6IN6;
	return -1;
}

SEC("xdp")
int xlb_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct l2_hdr l2;
	__u32 outer_len; // bytes to strip after the L2 header
	__u8 proto;      // protocol after the outer IP header
	struct addr_key src = {}, dst = {}; // outer addresses (outer_verdict sets prefixlen)
	int outer4;
	int tagged = 0;

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return count(DECAP_MALFORMED);
	void *l3 = eth + 1;
	__u16 ethertype = eth->h_proto;

	if (ethertype == bpf_htons(ETH_P_8021Q) ||
	    ethertype == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vlan = l3;
		if ((void *)(vlan + 1) > end)
			return count(DECAP_MALFORMED);
		ethertype = vlan->proto;
		l3 = vlan + 1;
		tagged = 1;
	}

	if (ethertype == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > end)
			return count(DECAP_MALFORMED);
		outer_len = ip->ihl * 4;
		if (outer_len < sizeof(*ip))
			return count(DECAP_MALFORMED);
		proto = ip->protocol;
		outer4 = 1;
		if (proto != IPPROTO_IPIP && proto != IPPROTO_IPV6 &&
		    proto != IPPROTO_UDP)
			return count(DECAP_PASSED);
		// A fragment cannot be decapsulated on its own: let the stack
		// have it.
		if (ip->frag_off & bpf_htons(IP_FRAG_MASK))
			return count(DECAP_PASSED);
		src.family = dst.family = 4;
		__builtin_memcpy(src.addr, &ip->saddr, 4);
		__builtin_memcpy(dst.addr, &ip->daddr, 4);
	} else if (ethertype == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) > end)
			return count(DECAP_MALFORMED);
		outer_len = sizeof(*ip6);
		proto = ip6->nexthdr;
		outer4 = 0;
		if (proto != IPPROTO_IPIP && proto != IPPROTO_IPV6 &&
		    proto != IPPROTO_UDP)
			return count(DECAP_PASSED);
		src.family = dst.family = 6;
		__builtin_memcpy(src.addr, &ip6->saddr, 16);
		__builtin_memcpy(dst.addr, &ip6->daddr, 16);
	} else {
		return count(DECAP_PASSED);
	}

	int kind = inner_kind(outer4, proto);
	struct udphdr *udp = 0;
	if (proto == IPPROTO_UDP) {
		__u32 zero = 0;
		__u32 *port = bpf_map_lookup_elem(&gue_port, &zero);
		if (!port || !*port)
			return count(DECAP_PASSED);
		udp = l3 + outer_len;
		if ((void *)(udp + 1) > end)
			return count(DECAP_MALFORMED);
		if (udp->dest != bpf_htons((__u16)*port))
			return count(DECAP_PASSED);
	}

	// A tunnel packet (GUE: UDP to the GUE port) from here on: only ours
	// from a balancer may go further.
	int why = outer_verdict(&src, &dst);
	if (why >= 0)
		return drop(why);

	if (udp) {
		outer_len += sizeof(*udp);

		struct gue_hdr *gue = (void *)(udp + 1);
		if ((void *)(gue + 1) > end)
			return count(DECAP_MALFORMED);
		switch (gue->flags_hlen >> GUE_VERSION_SHIFT) {
		case 0:
			// A control message is for a GUE endpoint, not us.
			if (gue->flags_hlen & GUE_CONTROL)
				return count(DECAP_PASSED);
			if (inner_kind(1, gue->proto) < 0)
				return count(DECAP_PASSED);
			proto = gue->proto;
			outer_len += sizeof(*gue) + (gue->flags_hlen & GUE_HLEN_MASK) * 4;
			break;
		case 1:
			// Variant 1: the inner IP packet follows the UDP header;
			// the first nibble says which version.
			proto = (gue->flags_hlen >> 4) == 6 ? IPPROTO_IPV6 : IPPROTO_IPIP;
			break;
		default:
			return count(DECAP_PASSED);
		}
		kind = DECAP_GUE;
	}

	// At least the inner version byte must be there, and match.
	__u8 *inner = l3 + outer_len;
	if ((void *)(inner + 1) > end)
		return count(DECAP_MALFORMED);
	__u16 inner_type = bpf_htons(ETH_P_IP);
	__u8 inner_version = 4;
	if (proto == IPPROTO_IPV6) {
		inner_type = bpf_htons(ETH_P_IPV6);
		inner_version = 6;
	}
	if ((*inner >> 4) != inner_version)
		return count(DECAP_MALFORMED);

	// Save the L2 header, move the start of the frame past the outer
	// headers, and write the L2 header back in front of the inner packet.
	if (tagged) {
		__builtin_memcpy(&l2, data, sizeof(struct l2_hdr));
		l2.vlan.proto = inner_type;
	} else {
		__builtin_memcpy(&l2.eth, data, sizeof(struct ethhdr));
		l2.eth.h_proto = inner_type;
	}
	if (bpf_xdp_adjust_head(ctx, (int)outer_len))
		return count(DECAP_MALFORMED);

	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (tagged) {
		if (data + sizeof(struct l2_hdr) > end)
			return count(DECAP_MALFORMED);
		__builtin_memcpy(data, &l2, sizeof(struct l2_hdr));
	} else {
		if (data + sizeof(struct ethhdr) > end)
			return count(DECAP_MALFORMED);
		__builtin_memcpy(data, &l2.eth, sizeof(struct ethhdr));
	}
	return count(kind);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
