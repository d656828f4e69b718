// SPDX-License-Identifier: (GPL-2.0-only OR MIT)

//go:build ignore

// gen: the perf lab's traffic generator. It runs under BPF_PROG_TEST_RUN
// with BPF_F_TEST_XDP_LIVE_FRAMES: the kernel runs it on a template frame
// once per repetition and turns XDP_TX into a transmission out of the
// interface named in the test's xdp_md (ingress_ifindex). Each run rewrites
// the source address and port from a per-CPU sequence number, so the frames
// spread over `flows` distinct 5-tuples, and writes full IPv4 and TCP/UDP
// checksums.
//
// Live-frame mode does not reset the packet bytes between runs (only the
// data pointers), and on veth a frame sent with XDP_TX reaches the peer's
// XDP program in the same page: a balancer there that encapsulates in
// place (native mode) rewrites the bytes this program sends next time. So
// each run writes the whole header back from the template (hdr) and
// computes every rewritten field and checksum from the template's constant
// sums below, never from what the page holds.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

// Flow f (0 <= f < flows) has source address src_base + f / PORTS_PER_ADDR
// and source port PORT_BASE + f % PORTS_PER_ADDR. Mirrored in Go (gen.go).
#define PORTS_PER_ADDR 16384
#define PORT_BASE 1024

// HDR_LEN covers Ethernet, IPv4 and a TCP header (UDP frames copy 12 bytes
// of payload with it); every frame is at least 60 bytes.
#define HDR_LEN 54

// Set by the loader before the program is loaded.
volatile const __u8 hdr[HDR_LEN] = {}; // the template's first HDR_LEN bytes
volatile const __u32 ifindex = 0;      // the interface the test runs send from
volatile const __u32 flows = 1;        // distinct flows, at least 1
volatile const __u32 src_base = 0;     // first source address, host order
volatile const __u8 l4_proto = IPPROTO_UDP;
// ip_sum is the one's-complement sum of the template's IPv4 header with
// saddr and check zeroed; l4_sum that of the pseudo-header and TCP/UDP
// segment with saddr, the source port and the checksum zeroed. Both sum
// 16-bit words as loaded natively (little-endian), like the loads here.
volatile const __u32 ip_sum = 0;
volatile const __u32 l4_sum = 0;

// sent counts the frames this program returned XDP_TX for, per CPU. Its
// running value is also the sequence number that picks the flow.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, 1);
} sent SEC(".maps");

static __always_inline __u16 fold(__u64 s)
{
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)s;
}

SEC("xdp")
int xlb_gen(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct iphdr *ip = data + sizeof(struct ethhdr);
	__u32 key = 0;

	// Only test runs for the generator's interface generate. Anything
	// else is passed untouched: the loader keeps the program attached to
	// an idle interface so that each test run need not register it with
	// the kernel's XDP dispatcher (a synchronize_rcu, tens of ms).
	if (ctx->ingress_ifindex != ifindex)
		return XDP_PASS;
	if (data + HDR_LEN > end)
		return XDP_ABORTED;
	// Byte by byte through the volatile: a memcpy from a cast-away
	// pointer lets the compiler fold in the zero initializer.
#pragma unroll
	for (int i = 0; i < HDR_LEN; i++)
		((__u8 *)data)[i] = hdr[i];
	__u64 *seq = bpf_map_lookup_elem(&sent, &key);
	if (!seq)
		return XDP_ABORTED;
	__u32 f = *seq % flows;
	*seq += 1;

	__u32 saddr = bpf_htonl(src_base + f / PORTS_PER_ADDR);
	__u16 sport = bpf_htons(PORT_BASE + f % PORTS_PER_ADDR);
	__u64 addr_sum = (saddr & 0xffff) + (saddr >> 16);

	ip->saddr = saddr;
	ip->check = ~fold(ip_sum + addr_sum);

	if (l4_proto == IPPROTO_TCP) {
		struct tcphdr *tcp = (void *)(ip + 1);
		if ((void *)(tcp + 1) > end)
			return XDP_ABORTED;
		tcp->source = sport;
		tcp->check = ~fold(l4_sum + addr_sum + sport);
	} else {
		struct udphdr *udp = (void *)(ip + 1);
		if ((void *)(udp + 1) > end)
			return XDP_ABORTED;
		udp->source = sport;
		__u16 check = ~fold(l4_sum + addr_sum + sport);
		// 0 means "no checksum" in UDP; its one's-complement twin is sent.
		udp->check = check ? check : 0xffff;
	}
	return XDP_TX;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
