// SPDX-License-Identifier: (GPL-2.0-only OR MIT)

//go:build ignore

// steer: the XDP program in front of the AF_XDP workers. It only decides
// "is this frame for a VIP?" and, if so, redirects it into the AF_XDP socket
// bound to the receiving queue. Everything else goes to the kernel untouched.
// The Go worker re-parses every redirected frame and makes all the real
// decisions (backend choice, drop reasons, ICMP), so this program stays small.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "xlb.h"
#include "firewall.h"
#include "splice.h"

// MAX_IPV6_EXT_HDRS bounds the IPv6 extension headers (hop-by-hop, routing,
// destination options) skipped to find the ports. Real traffic carries one
// or two; a frame with more goes through the address marker.
#define MAX_IPV6_EXT_HDRS 4

// steer_counter indexes the counters map. Mirrored in Go (counter.go).
// SEEN = REDIRECTED + PASSED + MALFORMED + SPLICED + SPLICE_EXPIRED;
// NO_SOCKET is a subset of PASSED.
enum steer_counter {
	STEER_SEEN = 0,
	STEER_REDIRECTED = 1,
	STEER_PASSED = 2,
	STEER_MALFORMED = 3,
	STEER_NO_SOCKET = 4,
	STEER_SPLICED = 5, // rewritten and sent out by splice_frame
	STEER_SPLICE_EXPIRED = 6, // a spliced connection's, TTL or hop limit <= 1: dropped
	STEER_COUNTER_MAX = 7,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct vip_key);
	__type(value, struct vip_value);
	__uint(max_entries, 4096);
} vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 64);
} xsks SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, STEER_COUNTER_MAX);
} counters SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);

	if (v)
		*v += 1;
}

static __always_inline int pass(void)
{
	count(STEER_PASSED);
	return XDP_PASS;
}

// Malformed frames are passed, never dropped: the kernel drops what it
// cannot parse, and this program must not decide for non-VIP traffic.
static __always_inline int malformed(void)
{
	count(STEER_MALFORMED);
	return XDP_PASS;
}

static __always_inline int redirect(struct xdp_md *ctx)
{
	// The lower bits of flags are the verdict when the slot is empty.
	int act = bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);

	if (act == XDP_REDIRECT) {
		count(STEER_REDIRECTED);
		return act;
	}
	count(STEER_NO_SOCKET);
	return pass();
}

// spliced hands a TCP frame to splice_frame and counts what it did; a frame
// of no spliced connection is passed.
static __always_inline int spliced(struct xdp_md *ctx, struct ethhdr *eth, void *l3, __u8 family,
				  struct tcphdr *tcp, void *end)
{
	int act = splice_frame(ctx, eth, l3, family, tcp, end);

	switch (act) {
	case SPLICE_NONE:
		return pass();
	case SPLICE_MALFORMED:
		return malformed();
	case SPLICE_EXPIRED:
		count(STEER_SPLICE_EXPIRED);
		return XDP_DROP;
	}
	count(STEER_SPLICED);
	return act;
}

SEC("xdp")
int xlb_steer(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct vip_key key = {};
	void *l4 = NULL; // NULL: ports cannot be read
	__u16 frag = 0; // non-zero: an IPv4 or IPv6 fragment
	__u8 src[16]; // the source address, IPv4 mapped (firewall)
	int syn = 0; // a TCP SYN without ACK (SYN rate limit)
	__u16 ethertype;
	void *l3;

	count(STEER_SEEN);

	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return malformed();
	ethertype = eth->h_proto;
	l3 = eth + 1;

	if (ethertype == bpf_htons(ETH_P_8021Q) ||
	    ethertype == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vlan = l3;
		if ((void *)(vlan + 1) > end)
			return malformed();
		ethertype = vlan->proto;
		l3 = vlan + 1;
	}

	if (ethertype == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > end)
			return malformed();
		__u32 hlen = ip->ihl * 4;
		if (hlen < sizeof(*ip))
			return malformed();
		if (l3 + hlen > end)
			return malformed();
		key.family = 4;
		fw_src4(src, ip->saddr);
		key.proto = ip->protocol;
		__builtin_memcpy(key.addr, &ip->daddr, 4);
		frag = ip->frag_off & bpf_htons(IP_MF | IP_FRAG_OFFSET_MASK);
		if (!(ip->frag_off & bpf_htons(IP_FRAG_OFFSET_MASK)))
			l4 = l3 + hlen;
	} else if (ethertype == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) > end)
			return malformed();
		key.family = 6;
		__builtin_memcpy(key.addr, &ip6->daddr, 16);
		__builtin_memcpy(src, &ip6->saddr, 16);
		__u8 next = ip6->nexthdr;
		l4 = ip6 + 1;
		// Skip the extension headers that come before the transport
		// header of an unfragmented packet. A fragment header, or more
		// of them than the bound, leaves next on an extension header:
		// not TCP/UDP, so the frame goes through the address marker.
#pragma unroll
		for (int i = 0; i < MAX_IPV6_EXT_HDRS; i++) {
			if (next != IPPROTO_HOPOPTS && next != IPPROTO_ROUTING &&
			    next != IPPROTO_DSTOPTS)
				break;
			struct ipv6_opt_hdr *opt = l4;
			if ((void *)(opt + 1) > end)
				return malformed();
			next = opt->nexthdr;
			l4 += (opt->hdrlen + 1) * 8;
		}
		key.proto = next;
		frag = next == IPPROTO_FRAGMENT;
	} else {
		return pass(); // ARP, LLDP, ...
	}

	// A fragment of a VIP address follows the address's fragment policy:
	// the first fragment too, so a datagram's pieces all end up in one
	// place (the workers drop and count them; the kernel may reassemble).
	if (frag) {
		key.port = 0;
		key.proto = 0;
		struct vip_value *marker = bpf_map_lookup_elem(&vips, &key);
		if (!marker || (marker->flags & VIP_FLAG_PASS_FRAGMENTS))
			return pass();
		return redirect(ctx);
	}

	if (l4 && key.proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;
		if ((void *)(tcp + 1) <= end) {
			key.port = tcp->dest;
			syn = tcp->syn && !tcp->ack;
		} else
			l4 = NULL;
	} else if (l4 && key.proto == IPPROTO_UDP) {
		struct udphdr *udp = l4;
		if ((void *)(udp + 1) <= end)
			key.port = udp->dest;
		else
			l4 = NULL;
	} else {
		l4 = NULL;
	}

	if (l4) {
		if (!bpf_map_lookup_elem(&vips, &key)) {
			key.port = 0;
			if (!bpf_map_lookup_elem(&vips, &key)) {
				// Spliced connections are not VIPs' (a splice VIP is
				// left to the kernel, the backend side is addressed to
				// the balancer): only frames headed for the kernel
				// pay for the lookup.
				if (splice_on && key.proto == IPPROTO_TCP)
					return spliced(ctx, eth, l3, key.family, l4, end);
				return pass();
			}
		}
		// The firewall decides for the VIP key that matched, before
		// anything else is spent on the frame.
		if (fw_check(&key, src, end - data, syn))
			return XDP_DROP;
		return redirect(ctx);
	}

	// No ports: is the destination a VIP address at all?
	key.port = 0;
	key.proto = 0;
	if (bpf_map_lookup_elem(&vips, &key))
		return redirect(ctx);
	return pass();
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
