// SPDX-License-Identifier: (GPL-2.0-only OR MIT)

//go:build ignore

// sink: the perf lab's receiver, on the far side of the balancer. It counts
// every frame per CPU and drops it, so the receiving host spends nothing past
// XDP. Frames whose source MAC is the balancer's (lb_mac) are counted apart
// from the rest: only those prove the balancer forwarded something. ARP is
// passed, so the host still answers for its address.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Indexes of the counts map. Mirrored in Go (sink.go).
enum sink_counter {
	SINK_FROM_LB = 0,
	SINK_OTHER = 1,
	SINK_COUNTER_MAX = 2,
};

struct sink_count {
	__u64 packets;
	__u64 bytes;
};

// Set by the loader before the program is loaded.
volatile const __u8 lb_mac[ETH_ALEN] = {};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct sink_count);
	__uint(max_entries, SINK_COUNTER_MAX);
} counts SEC(".maps");

SEC("xdp")
int xlb_sink(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u32 key = SINK_OTHER;

	if ((void *)(eth + 1) <= end) {
		if (eth->h_proto == bpf_htons(ETH_P_ARP))
			return XDP_PASS;
		key = SINK_FROM_LB;
#pragma unroll
		for (int i = 0; i < ETH_ALEN; i++) {
			if (eth->h_source[i] != lb_mac[i])
				key = SINK_OTHER;
		}
	}
	struct sink_count *c = bpf_map_lookup_elem(&counts, &key);
	if (c) {
		c->packets++;
		c->bytes += end - data;
	}
	return XDP_DROP;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
