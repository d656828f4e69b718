// SPDX-License-Identifier: (GPL-2.0-only OR MIT)

//go:build ignore

// decap: the backend-side XDP program for hosts whose kernel has no ipip
// module. It strips the outer IPv4 header of IPIP (protocol 4) and 6in4
// (protocol 41) packets and passes the inner packet to the stack as if it had
// arrived on the interface, keeping the Ethernet addresses and any VLAN tag.
//
// Every unfragmented IPIP/6in4 packet arriving on the interface is
// decapsulated, whatever its outer destination: attach it only on a backend's
// interface that faces the balancer. Everything else is passed untouched.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define IP_FRAG_MASK 0x3fff // MF flag and fragment offset

// decap_counter indexes decap_counters. Mirrored in Go (counter.go).
// Every frame is counted once: DECAPSULATED + PASSED + MALFORMED = all.
enum decap_counter {
	DECAP_DECAPSULATED = 0,
	DECAP_PASSED = 1,
	DECAP_MALFORMED = 2,
	DECAP_COUNTER_MAX = 3,
};

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

// l2_hdr is the Ethernet header with room for one VLAN tag.
struct l2_hdr {
	struct ethhdr eth;
	struct vlan_hdr vlan;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, DECAP_COUNTER_MAX);
} decap_counters SEC(".maps");

static __always_inline int count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&decap_counters, &idx);

	if (v)
		*v += 1;
	return XDP_PASS;
}

SEC("xdp")
int xlb_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct l2_hdr l2;
	__u16 inner_type;
	__u8 inner_version;
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
	if (ethertype != bpf_htons(ETH_P_IP))
		return count(DECAP_PASSED);

	struct iphdr *ip = l3;
	if ((void *)(ip + 1) > end)
		return count(DECAP_MALFORMED);
	__u32 hlen = ip->ihl * 4;
	if (hlen < sizeof(*ip))
		return count(DECAP_MALFORMED);
	if (ip->protocol == IPPROTO_IPIP) {
		inner_type = bpf_htons(ETH_P_IP);
		inner_version = 4;
	} else if (ip->protocol == IPPROTO_IPV6) {
		inner_type = bpf_htons(ETH_P_IPV6);
		inner_version = 6;
	} else {
		return count(DECAP_PASSED);
	}
	// A fragment cannot be decapsulated on its own: let the stack have it.
	if (ip->frag_off & bpf_htons(IP_FRAG_MASK))
		return count(DECAP_PASSED);

	// The outer header and at least the inner version byte must be there.
	__u8 *inner = l3 + hlen;
	if ((void *)(inner + 1) > end)
		return count(DECAP_MALFORMED);
	if ((*inner >> 4) != inner_version)
		return count(DECAP_MALFORMED);

	// Save the L2 header, move the start of the frame past the outer IP
	// header, and write the L2 header back in front of the inner packet.
	if (tagged) {
		__builtin_memcpy(&l2, data, sizeof(struct l2_hdr));
		l2.vlan.proto = inner_type;
	} else {
		__builtin_memcpy(&l2.eth, data, sizeof(struct ethhdr));
		l2.eth.h_proto = inner_type;
	}
	if (bpf_xdp_adjust_head(ctx, (int)hlen))
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
	return count(DECAP_DECAPSULATED);
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
