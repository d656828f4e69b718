// SPDX-License-Identifier: (GPL-2.0-only OR MIT)

//go:build ignore

// fwd: the perf lab's reference programs on the balancer's interface.
//
// xlb_l2fwd rewrites both MAC addresses (to the next hop, from this host)
// and sends the frame back out with XDP_TX: the least work a native XDP
// forwarder can do, so its rate is the lab's native-XDP ceiling.
// xlb_xsk redirects every frame to the AF_XDP socket of its queue, the
// least an AF_XDP datapath needs in the kernel.
// xlb_pass passes everything; on a veth it lets the peer receive what
// XDP_TX sends.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <bpf/bpf_helpers.h>

// Set by the loader before xlb_l2fwd is loaded.
volatile const __u8 dst_mac[ETH_ALEN] = {};
volatile const __u8 src_mac[ETH_ALEN] = {};

struct {
	__uint(type, BPF_MAP_TYPE_XSKMAP);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 64);
} xsks SEC(".maps");

SEC("xdp")
int xlb_l2fwd(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if ((void *)(eth + 1) > end)
		return XDP_DROP;
#pragma unroll
	for (int i = 0; i < ETH_ALEN; i++) {
		eth->h_dest[i] = dst_mac[i];
		eth->h_source[i] = src_mac[i];
	}
	return XDP_TX;
}

SEC("xdp")
int xlb_xsk(struct xdp_md *ctx)
{
	return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
}

SEC("xdp")
int xlb_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
