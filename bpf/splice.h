// SPDX-License-Identifier: (GPL-2.0-only OR MIT)

// The splice of SNI proxy pairs (issue 13 phase 2), included by steer.c.
// The proxy hands over two established TCP connections, client <-> VIP and
// LB:lport <-> backend; from then on steer rewrites every packet of both in
// XDP and sends it out (XDP_TX or bpf_redirect) without either socket seeing
// it. The Go side (package splice) computes the entries (splice.Plan) and
// has a byte-for-byte model of splice_rewrite (splice.Rewrite).

#ifndef XLB_SPLICE_H
#define XLB_SPLICE_H

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

// The maps' sizes are set by the loader (bpf.SteerOptions.SpliceTableSize):
// the values here are placeholders for a program loaded without splice.
#define SPLICE_DEFAULT_PAIRS 1

// splice_dir.flags
#define SPLICE_SACK_XLATE 1 // shift SACK edges by ack_delta (the receiver negotiated SACK)
#define SPLICE_SACK_STRIP 2 // overwrite SACK options with NOPs (it did not)
#define SPLICE_TS_XLATE 4 // translate TSval and TSecr (both connections use timestamps)

// splice_pair.state: FIN seen from the client (direction 0) or the backend
// (direction 1), i.e. 1 << dir; RST seen either way.
#define SPLICE_FIN_C 1
#define SPLICE_FIN_B 2
#define SPLICE_RST 4

// ts_delta's bit 32 says the low 32 bits hold this direction's TSval offset.
#define SPLICE_TS_SET (1ULL << 32)

// splice_key: the packet as it arrives. IPv4 addresses in [0], the rest 0.
struct splice_key {
	__u8 family;
	__u8 pad[3];
	__be32 saddr[4];
	__be32 daddr[4];
	__be16 sport;
	__be16 dport;
};

// splice_dir: what to do with the packets of one direction.
struct splice_dir {
	__be32 saddr[4]; // new addresses
	__be32 daddr[4];
	__be16 sport; // new ports
	__be16 dport;
	__u8 dmac[6];
	__u8 smac[6];
	__u32 ifindex; // XDP_TX when it is the ingress interface
	__u32 seq_delta;
	__u32 ack_delta;
	__u8 wscale_in; // the sender's window shift
	__u8 wscale_out; // the shift the receiver applies
	__u8 flags; // SPLICE_SACK_XLATE, SPLICE_SACK_STRIP, SPLICE_TS_XLATE
	__u8 dir; // 0: client to backend, 1: backend to client
	__u32 ts_base; // the first TSval this direction sends: the out socket's clock + 1
	__u32 tsecr_base; // the other direction's ts_base: older echoes predate the splice
	__u32 ip_csum_diff; // ones'-complement sum of (~old + new) over the IPv4 header's changed words
	__u32 l4_csum_diff; // the same over the TCP ports and pseudo-header addresses
	__u32 pair; // index in splice_pairs
};

// splice_pair: one per pair slot, shared by both directions.
struct splice_pair {
	__u32 state; // SPLICE_FIN_C, SPLICE_FIN_B, SPLICE_RST (atomic or)
	__u32 pad;
	__u64 last_ns; // bpf_ktime_get_coarse_ns of the last packet
	__u32 last_seq[2]; // per direction, as the packet arrived
	__u32 last_ack[2];
	__u64 ts_delta[2]; // per direction: SPLICE_TS_SET | TSval offset, 0 until the first packet
};

// splice_count: per CPU, per pair*2 + dir.
struct splice_count {
	__u64 packets;
	__u64 bytes;
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct splice_key);
	__type(value, struct splice_dir);
	__uint(max_entries, 2 * SPLICE_DEFAULT_PAIRS);
} splice SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct splice_pair);
	__uint(max_entries, SPLICE_DEFAULT_PAIRS);
} splice_pairs SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct splice_count);
	__uint(max_entries, 2 * SPLICE_DEFAULT_PAIRS);
} splice_counts SEC(".maps");

// splice_on is set by the loader when the maps are sized (SpliceTableSize
// > 0); with it 0 the verifier removes the lookup, so a balancer without
// splice pays nothing for it.
volatile const __u32 splice_on = 0;

#endif
