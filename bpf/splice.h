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

// Checksums here work on host-order values of big-endian 16-bit words
// (the splice.Rewrite model's convention): a sum is folded with end-around
// carries, and an update is RFC 1624's HC' = ~(~HC + sum of (~m + m')).

static __always_inline __u32 splice_fold(__u32 s)
{
	s = (s >> 16) + (s & 0xffff);
	return (s >> 16) + (s & 0xffff);
}

// splice_csum32 adds the change of a 32-bit field from old to new.
static __always_inline __u32 splice_csum32(__u32 acc, __u32 old, __u32 new)
{
	return splice_fold(acc + (~old >> 16) + (~old & 0xffff) + (new >> 16) + (new & 0xffff));
}

static __always_inline __u16 splice_csum_update(__u16 check, __u32 acc)
{
	return ~splice_fold((__u16)~check + acc);
}

// Option fields may sit at any offset: the unaligned packet accesses are
// allowed where the kernel has efficient unaligned access (x86-64, arm64).
static __always_inline __u32 splice_load32(void *p)
{
	return bpf_ntohl(*(__u32 *)p);
}

static __always_inline void splice_store32(void *p, __u32 v)
{
	*(__u32 *)p = bpf_htonl(v);
}

#define TCP_MAX_OPTS 40 // option bytes after the 20-byte header
#define TCPOPT_EOL 0
#define TCPOPT_NOP 1
#define TCPOPT_SACK 5
#define TCPOPT_TIMESTAMP 8

// splice_walk is the state of the option walk. The options are copied to
// buf and walked by a bpf_loop callback, which the verifier checks once:
// the same walk inline is a path per option layout, past its limit.
struct splice_walk {
	__u8 buf[TCP_MAX_OPTS];
	__u32 len; // option bytes in buf
	__u32 off; // the next option's offset
	__u32 sack; // offset + 1 of the first SACK option, 0: none
	__u32 ts; // offset + 1 of the first timestamp option, 0: none
};

// splice_walk_option steps over one option. A malformed option (length
// below 2 or past the header) ends the walk.
static long splice_walk_option(__u32 i, void *arg)
{
	struct splice_walk *w = arg;
	__u32 off = w->off;

	if (off >= w->len || off >= TCP_MAX_OPTS)
		return 1;
	__u8 kind = w->buf[off];
	if (kind == TCPOPT_EOL)
		return 1;
	if (kind == TCPOPT_NOP) {
		w->off = off + 1;
		return 0;
	}
	if (off + 2 > w->len || off + 1 >= TCP_MAX_OPTS)
		return 1;
	__u32 len = w->buf[off + 1];
	if (len < 2 || off + len > w->len)
		return 1;
	if (kind == TCPOPT_SACK && !w->sack)
		w->sack = off + 1;
	if (kind == TCPOPT_TIMESTAMP && !w->ts)
		w->ts = off + 1;
	w->off = off + len;
	return 0;
}

// splice_swap16 byte-swaps a folded sum: the change of a field at an odd
// offset of the header, summed as if it were even (RFC 1071's byte order
// independence).
static __always_inline __u32 splice_swap16(__u32 s, __u32 odd)
{
	return odd ? ((s & 0xff) << 8) | (s >> 8) : s;
}

// splice_options rewrites the first SACK option and the first timestamp
// option of the TCP header at tcp (hlen bytes, 20 < hlen <= 60, inside the
// frame) and returns the checksum change. A SACK option of a length other
// than 10, 18, 26 or 34 and a timestamp option of a length other than 10
// are left as they are (the receiver ignores them as it would have).
static __always_inline __u32 splice_options(struct xdp_md *ctx, struct tcphdr *tcp, __u32 hlen, void *end,
					    struct splice_dir *d, struct splice_pair *p)
{
	void *data = (void *)(long)ctx->data;
	struct splice_walk w = {};
	__u32 acc = 0;

	w.len = (hlen - sizeof(*tcp)) & 63;
	if (w.len == 0 || w.len > TCP_MAX_OPTS)
		return 0;
	if (bpf_xdp_load_bytes(ctx, (void *)(tcp + 1) - data, w.buf, w.len))
		return 0;
	bpf_loop(TCP_MAX_OPTS, splice_walk_option, &w, 0);

	if (w.sack && (d->flags & (SPLICE_SACK_XLATE | SPLICE_SACK_STRIP))) {
		__u32 off = (w.sack - 1) & 63;
		__u8 *o = (void *)(tcp + 1) + off;
		if ((void *)(o + 2) > end)
			return 0;
		__u32 len = o[1], ch = 0;
		if (len >= 10 && len <= 34 && (len - 2) % 8 == 0) {
			if (d->flags & SPLICE_SACK_STRIP) {
				ch = (~((TCPOPT_SACK << 8) | len) & 0xffff) + 0x0101;
				o[0] = TCPOPT_NOP;
				o[1] = TCPOPT_NOP;
			}
			for (int j = 0; j < 8; j++) {
				void *e = o + 2 + 4 * j;
				if (j >= (len - 2) / 4 || e + 4 > end)
					break;
				__u32 old = splice_load32(e), new = old + d->ack_delta;
				if (d->flags & SPLICE_SACK_STRIP)
					new = 0x01010101;
				ch = splice_csum32(ch, old, new);
				splice_store32(e, new);
			}
			acc = splice_swap16(splice_fold(ch), off & 1);
		}
	}
	if (w.ts && (d->flags & SPLICE_TS_XLATE)) {
		__u32 off = (w.ts - 1) & 63, dir = d->dir & 1;
		__u8 *o = (void *)(tcp + 1) + off;
		if ((void *)(o + 10) > end || o[1] != 10)
			return acc;
		__u32 tsval = splice_load32(o + 2), tsecr = splice_load32(o + 6);
		__u64 t = p->ts_delta[dir];
		if (!(t & SPLICE_TS_SET)) {
			// The direction's first packet since the splice sets the
			// offset; a concurrent first packet may win.
			__u64 set = SPLICE_TS_SET | (__u32)(d->ts_base - tsval);
			__u64 was = __sync_val_compare_and_swap(&p->ts_delta[dir], 0, set);
			t = was ? was : set;
		}
		__u32 nval = tsval + (__u32)t, necr = tsecr;
		if (tcp->ack) {
			__u64 e = p->ts_delta[dir ^ 1];
			// An echo of a value from before the splice cannot be
			// translated: 0 is no echo.
			if ((e & SPLICE_TS_SET) && (__s32)(tsecr - d->tsecr_base) >= 0)
				necr = tsecr - (__u32)e;
			else
				necr = 0;
		}
		__u32 ch = splice_csum32(splice_csum32(0, tsval, nval), tsecr, necr);
		splice_store32(o + 2, nval);
		splice_store32(o + 6, necr);
		acc = splice_fold(acc + splice_swap16(ch, off & 1));
	}
	return acc;
}

// splice_result is what splice_frame did with a frame.
enum splice_result {
	SPLICE_NONE = -1, // not a spliced connection's
	SPLICE_MALFORMED = -2, // a spliced connection's, but its TCP header is cut
	SPLICE_EXPIRED = -3, // TTL or hop limit 1 or 0: dropped
};

// splice_frame looks the TCP frame up in the splice map and, if it is a
// spliced connection's, rewrites it for the other connection and returns
// XDP_TX or XDP_REDIRECT. l3 is the IPv4 or IPv6 header (family 4 or 6),
// tcp the TCP header, both checked to lie inside the frame.
static __always_inline int splice_frame(struct xdp_md *ctx, struct ethhdr *eth, void *l3, __u8 family,
					struct tcphdr *tcp, void *end)
{
	struct splice_key k = {};
	// The IP header is cast in each family's branch: two pointers, one
	// of them NULL, are more than the verifier can correlate.
	struct iphdr *ip4 = l3;
	struct ipv6hdr *ip6 = l3;
	__u8 ttl;

	if (family == 4) {
		if ((void *)(ip4 + 1) > end)
			return SPLICE_NONE;
		k.saddr[0] = ip4->saddr;
		k.daddr[0] = ip4->daddr;
		ttl = ip4->ttl;
	} else {
		if ((void *)(ip6 + 1) > end)
			return SPLICE_NONE;
		__builtin_memcpy(k.saddr, &ip6->saddr, 16);
		__builtin_memcpy(k.daddr, &ip6->daddr, 16);
		ttl = ip6->hop_limit;
	}
	if ((void *)(tcp + 1) > end)
		return SPLICE_NONE;
	k.family = family;
	k.sport = tcp->source;
	k.dport = tcp->dest;
	struct splice_dir *d = bpf_map_lookup_elem(&splice, &k);
	if (!d)
		return SPLICE_NONE;

	__u32 hlen = tcp->doff * 4;
	if (hlen < sizeof(*tcp) || (void *)tcp + hlen > end)
		return SPLICE_MALFORMED;
	if (ttl <= 1)
		return SPLICE_EXPIRED;
	__u32 pi = d->pair;
	struct splice_pair *p = bpf_map_lookup_elem(&splice_pairs, &pi);
	if (!p)
		return SPLICE_NONE;
	__u32 dir = d->dir & 1;
	__u32 ci = pi * 2 + dir;
	struct splice_count *c = bpf_map_lookup_elem(&splice_counts, &ci);
	if (c) {
		c->packets++;
		c->bytes += (void *)(long)ctx->data_end - (void *)(long)ctx->data;
	}

	__u32 seq = bpf_ntohl(tcp->seq), ack = bpf_ntohl(tcp->ack_seq);
	p->last_seq[dir] = seq;
	p->last_ack[dir] = ack;
	__u64 now = bpf_ktime_get_coarse_ns();
	if (p->last_ns != now)
		p->last_ns = now;
	__u32 state = (tcp->fin ? 1 << dir : 0) | (tcp->rst ? SPLICE_RST : 0);
	if (state & ~p->state)
		__sync_fetch_and_or(&p->state, state);

	__builtin_memcpy(eth->h_dest, d->dmac, 6);
	__builtin_memcpy(eth->h_source, d->smac, 6);
	if (family == 4) {
		if ((void *)(ip4 + 1) > end)
			return SPLICE_NONE;
		ip4->saddr = d->saddr[0];
		ip4->daddr = d->daddr[0];
		ip4->ttl--;
		ip4->check = bpf_htons(splice_csum_update(bpf_ntohs(ip4->check), d->ip_csum_diff));
	} else {
		if ((void *)(ip6 + 1) > end)
			return SPLICE_NONE;
		__builtin_memcpy(&ip6->saddr, d->saddr, 16);
		__builtin_memcpy(&ip6->daddr, d->daddr, 16);
		ip6->hop_limit--;
	}

	tcp->source = d->sport;
	tcp->dest = d->dport;
	__u32 acc = d->l4_csum_diff;
	__u32 nseq = seq + d->seq_delta;
	acc = splice_csum32(acc, seq, nseq);
	tcp->seq = bpf_htonl(nseq);
	if (tcp->ack) {
		__u32 nack = ack + d->ack_delta;
		acc = splice_csum32(acc, ack, nack);
		tcp->ack_seq = bpf_htonl(nack);
	}
	if (d->wscale_in != d->wscale_out) {
		// Rounded down: never more than the receiver offered.
		__u32 w = bpf_ntohs(tcp->window);
		__u32 nw = (w << (d->wscale_in & 15)) >> (d->wscale_out & 15);
		if (nw > 65535)
			nw = 65535;
		acc = splice_fold(acc + (~w & 0xffff) + nw);
		tcp->window = bpf_htons(nw);
	}
	if (hlen > sizeof(*tcp))
		acc = splice_fold(acc + splice_options(ctx, tcp, hlen, end, d, p));
	tcp->check = bpf_htons(splice_csum_update(bpf_ntohs(tcp->check), acc));

	if (d->ifindex == ctx->ingress_ifindex)
		return XDP_TX;
	return bpf_redirect(d->ifindex, 0);
}

#endif
