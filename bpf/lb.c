// SPDX-License-Identifier: (GPL-2.0-only OR MIT)

//go:build ignore

// lb: the native XDP datapath ("mode = native"). It does in the kernel what
// the AF_XDP worker does in Go (datapath/forward.go and datapath/packet),
// frame for frame: IPv4 and IPv6 VIPs, the flow table with idle timeouts,
// Maglev picks with the same flow hash and tables, IPIP / 6in4 / 4in6 /
// IP6IP6, GUE over IPv4 and IPv6 and L2 DSR, ICMP echo replies, ICMP errors
// sent on to the flow's backend, frag-needed / packet-too-big, and the
// per-VIP fragment policy. Frames that are not for a VIP address are passed
// to the kernel; frames to a VIP address that cannot be forwarded are
// dropped and counted with the Go worker's drop reason.
//
// The code is split as Katran's is: parsing (lb_parse and its helpers),
// checksums (csum_*), header writers (put_*, encap) and the rarer answers
// (echo_reply, frag_needed, gue6_csum). lb_parse and the answers are global
// functions, which the verifier checks once each on their own instead of
// once per path through the caller: that keeps verification at about 15k
// instructions (everything inlined, it took 929k of the 1M allowed).
//
// Handshake RTTs (lbrtt.h) and `xlb capture` (lbcapture.h, the program
// xlb_lb_capture) live in their own headers.

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

#define IPV4_HDR 20
#define IPV6_HDR 40
#define UDP_HDR 8
#define GUE_HDR 4
#define ICMP_HDR 8
#define OUTER_TTL 64
#define MAX_IP_LEN 0xffff

// The encapsulations' overheads: packet.IPIPOverhead, IPIP6Overhead,
// GUE4Overhead, GUE6Overhead.
#define IPIP_OVERHEAD IPV4_HDR
#define IPIP6_OVERHEAD IPV6_HDR
#define GUE4_OVERHEAD (IPV4_HDR + UDP_HDR + GUE_HDR)
#define GUE6_OVERHEAD (IPV6_HDR + UDP_HDR + GUE_HDR)

// packet.GUEPortBase: the GUE source port is 0xc000 | 14 bits of the hash.
#define GUE_PORT_BASE 0xc000

// packet.MaxExtHeaders: IPv6 extension headers walked before the upper layer.
#define MAX_EXT_HDRS 4

// FragNeeded's limits (packet/icmp.go): the longest ICMP error (RFC 1812,
// RFC 4443) and the smallest MTU a host heeds.
#define ICMP4_ERROR_MAX 576
#define ICMP6_ERROR_MAX 1280
#define MIN_MTU4 68
#define MIN_MTU6 1280

// The checksum loop's bound: a frame fits one page (the program is not
// multi-buffer aware), so no checksummed range is longer than this.
#define MAX_CSUM_LEN 4096
#define CSUM_CHUNK 512 // bpf_csum_diff's largest size

// FLOW_SEED is hash.FlowSeed ("XLB1"), JHASH_INITVAL lookup3's start value.
#define FLOW_SEED 0x584c4231
#define JHASH_INITVAL 0xdeadbeef

// EMPTY_SLOT is hash.EmptySlot: a Maglev slot with no backend.
#define EMPTY_SLOT 0xffffffff

// A backend ID is its index in the backends map (low 16 bits) and a
// generation (high 16 bits) that lets the control plane reuse an index: a
// flow pinned to an older generation re-picks.
#define BACKEND_INDEX(id) ((id) & 0xffff)

// vip_key and vip_value: xlb.h. Here vip_value.id is the VIP's index into
// vip_conf.

// Values of vip_conf.forward, as config.Forward.
#define FWD_IPIP 1
#define FWD_GUE 2
#define FWD_DSR 3

// vip_conf is a VIP's forwarding configuration and its Maglev table:
// maglev[table_off, table_off+table_size). Go writes it through the map's
// memory: the first 8 bytes (the table) with one aligned 8-byte store, so a
// table of a new size is switched atomically. table_size 0: no table yet.
// Mirrored by lbVipConf in Go.
struct vip_conf {
	__u32 table_off;
	__u32 table_size;
	__u8 forward;
	__u8 pad;
	__be16 gue_port;
	__u32 pad2;
};

// flow_key4 and flow_key6 are the 5-tuples, in the words the flow hash
// takes. Mirrored by lbFlowKey4 and lbFlowKey6 in Go.
struct flow_key4 {
	__be32 saddr;
	__be32 daddr;
	__u32 ports; // source then destination port, as in the packet
	__u8 proto;
	__u8 pad[3];
};

struct flow_key6 {
	__u8 saddr[16];
	__u8 daddr[16];
	__u32 ports;
	__u8 proto;
	__u8 pad[3];
};

// flow_value: the backend (full ID) a flow is pinned to, the VIP index it
// was picked for, the flow hash that picked it and when the flow was last
// seen (jiffies, bpf_jiffies64). pad holds a pending handshake's SYN time
// (lbrtt.h). Mirrored by lbFlowValue in Go.
struct flow_value {
	__u64 seen;
	__u32 backend;
	__u32 hash;
	__u32 vip;
	__u32 pad;
};

#define BACKEND_VALID 1    // the entry is in use
#define BACKEND_RESOLVED 2 // mac holds the next hop's address
#define BACKEND_V6 4       // addr is IPv6 (else IPv4 in its first 4 bytes)
#define BACKEND_LOCAL 8    // this host: co-located mode, the kernel serves it

// backend is one entry of the backends map, indexed by BACKEND_INDEX(id).
// Mirrored by lbBackend in Go.
struct backend {
	__u32 id; // the full ID (index and generation) the entry stands for
	__u8 addr[16];
	__u8 mac[6];
	__u16 flags;
};

struct backend_stats {
	__u64 packets;
	__u64 bytes; // received frame bytes, as the Go worker counts them
};

// settings: the outer source addresses (zero: none for that family), the
// interface's MAC, the egress MTU the outer IP packet must fit, the VIP
// maps' generation (vip_cache's entries are valid for one), the flow
// idle timeouts (jiffies) of TCP and of every other protocol, and the limit
// on the ICMP the program sends itself (echo replies, frag-needed /
// packet-too-big): icmp_rate tokens a second (0: no limit) into a bucket of
// icmp_burst, per CPU (icmp_bucket), and the flow cache's write-through
// period, 2^flow_sync jiffies (lbflowcache.h), and the SYN flood guard:
// at most syn_rate SYNs per syn_window jiffies (a second) create flow
// entries, per CPU (0: every SYN does; syn_guard). Mirrored by lbSettings
// in Go.
struct settings {
	__be32 addr;
	__u8 addr6[16];
	__u8 mac[6];
	__u16 mtu;
	__u32 vips_gen;
	__u64 tcp_timeout;
	__u64 udp_timeout;
	__u32 icmp_rate;
	__u32 icmp_burst;
	__u32 flow_sync;
	__u32 syn_rate;
	__u32 syn_window;
	__u32 pad;
};

// icmp_bucket: a CPU's ICMP token bucket, tokens in billionths of a token
// (a rate a second times nanoseconds), last its last refill
// (bpf_ktime_get_ns; 0: never used, starts full). As the Go worker's
// (datapath.ICMPRate), each sender has its own bucket: no CPU takes a lock.
struct icmp_bucket {
	__u64 tokens;
	__u64 last;
};

// lb_counter indexes counters. Mirrored in Go (counter.go).
// SEEN = FORWARDED + ECHO_REPLY + PASSED + MALFORMED + the drops. FLOW_HIT
// and ICMP_ERROR are subsets of FORWARDED; FRAG_NEEDED of DROP_TOO_BIG
// (the frame is answered instead of forwarded, as the Go worker counts it).
enum lb_counter {
	LB_SEEN = 0,
	LB_FORWARDED,
	LB_PASSED,
	LB_MALFORMED,
	LB_FLOW_HIT,
	LB_ECHO_REPLY,
	LB_FRAG_NEEDED,
	LB_ICMP_ERROR,
	LB_ICMP_RATE_LIMITED, // an echo reply or frag-needed not sent: no token
	LB_SYN_UNTRACKED, // a new flow's SYN forwarded without an entry: syn_guard
	// Drop reasons, named as the Go worker's (datapath.Drop).
	LB_DROP_BAD_IP_VERSION,
	LB_DROP_BAD_IP_LENGTH,
	LB_DROP_BAD_IPV6_LENGTH,
	LB_DROP_TRUNCATED_EXT_HEADER,
	LB_DROP_TOO_MANY_EXT_HEADERS,
	LB_DROP_FRAGMENT,
	LB_DROP_UNSUPPORTED_PROTOCOL,
	LB_DROP_TRUNCATED_L4,
	LB_DROP_TRUNCATED_ICMP,
	LB_DROP_UNSUPPORTED_ICMP,
	LB_DROP_NO_VIP,
	LB_DROP_NO_BACKEND,
	LB_DROP_NO_NEIGHBOR,
	LB_DROP_TOO_BIG,
	LB_DROP_NO_HEADROOM,
	LB_DROP_NO_SOURCE,
	LB_DROP_ECHO_DISABLED,
	LB_DROP_ECHO_RATE_LIMITED,
	LB_COUNTER_MAX,
};

// vip4_key is an IPv4 VIP key (vip_key's addr, port and proto) in 8
// bytes: the kernel hashes and compares 8 bytes per lookup instead of
// vip_key's 20. Mirrored by lbVIP4Key in Go.
struct vip4_key {
	__be32 addr;
	__be16 port;
	__u8 proto;
	__u8 pad;
};
_Static_assert(sizeof(struct vip4_key) == 8, "vip_match builds vip4_key as one word");

// vips4 holds the IPv4 VIP keys and vips the IPv6 ones, with steer's
// layout and address markers: SetVIPs splits one set by family (at most
// 4096 entries in all, as steer's one map).
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct vip4_key);
	__type(value, struct vip_value);
	__uint(max_entries, 4096);
} vips4 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__type(key, struct vip_key);
	__type(value, struct vip_value);
	__uint(max_entries, 4096);
} vips SEC(".maps");

// vip_conf: indexed by vip_value.id; max_entries set by the loader.
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct vip_conf);
	__uint(max_entries, 1);
} vip_conf SEC(".maps");

// maglev: every VIP's Maglev table, at the offsets vip_conf gives;
// max_entries (maglev_slots) set by the loader.
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

// flows and flows6: the connection tables, one per family as the Go
// worker's. LRU hashes: when full, the least recently used flows are
// evicted and re-picked from the Maglev table if they come back. Their
// size is set by the loader. BPF_F_NO_COMMON_LRU keeps one LRU list per
// CPU (one hash table still): no CPU takes a shared lock to insert.
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct flow_key4);
	__type(value, struct flow_value);
	__uint(max_entries, 1);
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(map_flags, BPF_F_NO_COMMON_LRU);
	__type(key, struct flow_key6);
	__type(value, struct flow_value);
	__uint(max_entries, 1);
} flows6 SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__type(key, __u32);
	__type(value, struct settings);
	__uint(max_entries, 1);
} settings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct icmp_bucket);
	__uint(max_entries, 1);
} icmp_bucket SEC(".maps");

// syn_guard: a CPU's count of the SYNs that created flow entries in the
// window (of settings.syn_window jiffies) that started at start.
//
// Why. A SYN of a 5-tuple the table does not hold is the costliest frame
// the program sees: the LRU hash takes a free element, and once the table
// is full it evicts, walking its lists and another flow's bucket, all of
// it misses in the TLB and caches of a table of a million entries. In the
// perf lab a flood of distinct SYNs ran at a fifth of the XDP_TX ceiling.
// Past settings.syn_rate in a window, such a SYN is forwarded by its Maglev
// pick and makes no entry; its flow gets one from its first frame that is
// not a SYN (the client's ACK), which a spoofed SYN never sends. What that
// gives up, for the SYNs past the limit only: the handshake RTT sample,
// and the pin between SYN and ACK (a Maglev change within that one round
// trip sends the ACK to the new pick). A SYN that finds its entry
// rewrites it in place whatever the count: that is cheap, and a reused
// 5-tuple must still re-pick. The Go worker does the same per worker
// (datapath.PlanSpec.SYNRate).
struct syn_guard {
	__u64 start;
	__u64 count;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct syn_guard);
	__uint(max_entries, 1);
} syn_guard SEC(".maps");

// ip_ids: the outer IPv4 identification, one counter per CPU as the Go
// workers keep one each.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} ip_ids SEC(".maps");

// counters: all of a CPU's counters in one value, so that a packet pays one
// map lookup for the counters it bumps.
struct lb_counters {
	__u64 c[LB_COUNTER_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct lb_counters);
	__uint(max_entries, 1);
} counters SEC(".maps");

// ICMP kinds, as packet.ICMPKind.
#define ICMP_NONE 0
#define ICMP_ECHO 1
#define ICMP_ERROR 2

// pkt is what the parsers learn, packet.Flow's fields. For an ICMP error
// the addresses, ports and protocol are the quoted packet's, swapped to the
// client-to-VIP direction; the offsets, length, TOS and DF are the outer
// packet's.
struct pkt {
	__be32 src, dst;
	__u8 src6[16];
	__u8 dst6[16];
	__u32 ports;
	__u16 l3off;
	__u16 l4off;
	__u16 iplen;
	__be16 dport;
	__u8 family;
	__u8 proto;
	__u8 tos;
	__u8 df;
	__u8 icmp;
	__u8 syn;
	__u8 frag;    // a fragment, for the fragment policy
	__u8 noreply; // an echo request EchoReply refuses (IPv4 options, IPv6 extension headers)
};

static __always_inline void count(struct lb_counters *cnt, __u64 idx)
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

static __always_inline int drop(struct lb_counters *cnt, __u64 reason)
{
	count(cnt, reason);
	return XDP_DROP;
}

static __always_inline __u32 rol32(__u32 w, int s)
{
	return (w << s) | (w >> (32 - s));
}

// The Linux kernel's jhash (include/linux/jhash.h), as package hash.
#define JHASH_MIX(a, b, c)              \
	{                               \
		a -= c;                 \
		a ^= rol32(c, 4);       \
		c += b;                 \
		b -= a;                 \
		b ^= rol32(a, 6);       \
		a += c;                 \
		c -= b;                 \
		c ^= rol32(b, 8);       \
		b += a;                 \
		a -= c;                 \
		a ^= rol32(c, 16);      \
		c += b;                 \
		b -= a;                 \
		b ^= rol32(a, 19);      \
		a += c;                 \
		c -= b;                 \
		c ^= rol32(b, 4);       \
		b += a;                 \
	}

static __always_inline __u32 jhash_final(__u32 a, __u32 b, __u32 c)
{
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

// hash.Flow4: jhash_3words(saddr, daddr, ports, FlowSeed ^ proto).
static __always_inline __u32 flow4_hash(struct pkt *p)
{
	__u32 iv = JHASH_INITVAL + (3 << 2) + (FLOW_SEED ^ p->proto);

	return jhash_final(p->src + iv, p->dst + iv, p->ports + iv);
}

// copy16 copies an IPv6 address as four words (see copy_mac).
static __always_inline void copy16(void *dst, const void *src)
{
	__u32 *d = dst;
	const __u32 *q = src;

	d[0] = q[0];
	d[1] = q[1];
	d[2] = q[2];
	d[3] = q[3];
}

static __always_inline __u32 word(const __u8 *a, int i)
{
	__u32 w;

	__builtin_memcpy(&w, a + 4 * i, 4);
	return w;
}

// hash.Flow6: jhash2 over the nine words saddr, daddr, ports.
static __always_inline __u32 flow6_hash(struct pkt *p)
{
	__u32 iv = JHASH_INITVAL + (9 << 2) + (FLOW_SEED ^ p->proto);
	__u32 a = iv + word(p->src6, 0), b = iv + word(p->src6, 1), c = iv + word(p->src6, 2);

	JHASH_MIX(a, b, c);
	a += word(p->src6, 3);
	b += word(p->dst6, 0);
	c += word(p->dst6, 1);
	JHASH_MIX(a, b, c);
	return jhash_final(a + word(p->dst6, 2), b + word(p->dst6, 3), c + p->ports);
}

// Checksums. Sums are kept in memory order (16-bit words as loaded on this
// little-endian machine), as the kernel's csum helpers keep them: the
// folded complement is then stored with a plain 16-bit store.

static __always_inline __u16 csum_fold(__u64 s)
{
	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return ~s;
}

static __always_inline __u64 csum_words(const void *b, int n)
{
	const __u16 *w = b;
	__u64 s = 0;

#pragma unroll
	for (int i = 0; i < n / 2; i++)
		s += w[i];
	return s;
}

// csum_packet returns the unfolded sum of the frame's bytes [off, off+len)
// added to seed; off must be even within the checksummed data. It walks
// CSUM_CHUNK bytes per bpf_csum_diff call, then halves down to 4 bytes,
// then the last 0 to 3; len is at most MAX_CSUM_LEN. It returns -1 if the
// range is not inside the frame.
__noinline __s64 csum_packet(struct xdp_md *ctx, __u32 off, __u32 len, __u32 seed)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u64 s = seed;

	if (off > MAX_CSUM_LEN || len > MAX_CSUM_LEN)
		return -1;
	// off stays below 2*MAX_CSUM_LEN: the masks change nothing but show
	// the verifier a bound it keeps through the 32-bit arithmetic.
#define CSUM_PTR() (data + (off & (4 * MAX_CSUM_LEN - 1)))
	for (int i = 0; i < MAX_CSUM_LEN / CSUM_CHUNK; i++) {
		if (len < CSUM_CHUNK)
			break;
		void *p = CSUM_PTR();
		if (p + CSUM_CHUNK > end)
			return -1;
		s += (__u32)bpf_csum_diff(NULL, 0, p, CSUM_CHUNK, 0);
		off += CSUM_CHUNK;
		len -= CSUM_CHUNK;
	}
#define CSUM_STEP(n)                                                    \
	if (len & (n)) {                                                \
		void *p = CSUM_PTR();                                   \
		if (p + (n) > end)                                      \
			return -1;                                      \
		s += (__u32)bpf_csum_diff(NULL, 0, p, (n), 0);          \
		off += (n);                                             \
	}
	CSUM_STEP(256)
	CSUM_STEP(128)
	CSUM_STEP(64)
	CSUM_STEP(32)
	CSUM_STEP(16)
	CSUM_STEP(8)
	CSUM_STEP(4)
#undef CSUM_STEP
	void *p = CSUM_PTR();
#undef CSUM_PTR
	if (len & 2) {
		if (p + 2 > end)
			return -1;
		s += *(__u16 *)p;
		p += 2;
	}
	if (len & 1) {
		if (p + 1 > end)
			return -1;
		s += *(__u8 *)p; // an odd last byte is the high byte of a zero-padded word
	}
	return s;
}

// csum_update is packet's update: RFC 1624's HC' = ~(~HC + ~m + m'), on
// host-order values.
static __always_inline __u16 csum_update(__u16 hc, __u16 old, __u16 new)
{
	__u32 s = (__u16)~hc + (__u32)(__u16)~old + new;

	s = (s >> 16) + (s & 0xffff);
	s = (s >> 16) + (s & 0xffff);
	return ~s;
}

// Header writers: put_ipv4 and put_ipv6 are packet.putIPv4 and putIPv6.

static __always_inline void put_ipv4(struct iphdr *ip, __u8 tos, __u8 df, __u32 total, __u16 id,
				     __u8 proto, __be32 src, __be32 dst)
{
	// The header as five words, summed as they are: the ones' complement
	// sum of 32-bit words folds to that of the 16-bit words. No struct on
	// the stack, no copy, no bit fields.
	__u32 w0 = bpf_htonl(0x45000000 | (__u32)tos << 16 | (total & 0xffff));
	__u32 w1 = bpf_htonl((__u32)id << 16 | (df ? IP_DF : 0));
	__u32 w2 = bpf_htonl((__u32)OUTER_TTL << 24 | (__u32)proto << 16);
	__u32 *o = (void *)ip;

	w2 |= (__u32)csum_fold((__u64)w0 + w1 + w2 + src + dst) << 16; // the checksum's bytes follow TTL and protocol
	o[0] = w0;
	o[1] = w1;
	o[2] = w2;
	o[3] = src;
	o[4] = dst;
}

static __always_inline void put_ipv6(struct ipv6hdr *ip, __u8 tc, __u32 label, __u32 payload,
				     __u8 next, const __u8 *src, const __u8 *dst)
{
	__u32 w0 = bpf_htonl(6 << 28 | (__u32)tc << 20 | (label & 0xfffff));

	__builtin_memcpy(ip, &w0, 4);
	ip->payload_len = bpf_htons(payload);
	ip->nexthdr = next;
	ip->hop_limit = OUTER_TTL;
	copy16(&ip->saddr, src);
	copy16(&ip->daddr, dst);
}

// l2 is the Ethernet header (and VLAN tag) to write in front of new
// headers; the MACs are written from where they are.
struct l2 {
	const __u8 *dst;
	const __u8 *src;
	__be16 tpid; // the tag's TPID, or 0 untagged
	__be16 tci;
};

// copy_mac copies an Ethernet address with two loads and two stores (the
// byte-wise copy __builtin_memcpy makes of unaligned memory is twelve
// instructions): x86 loads and stores unaligned words at no cost, and the
// verifier allows them there.
static __always_inline void copy_mac(void *dst, const void *src)
{
	*(__u32 *)dst = *(const __u32 *)src;
	*(__u16 *)(dst + 4) = *(const __u16 *)(src + 4);
}

// put_l2 writes h at the start of the frame with EtherType et (network
// order) and returns the L3 header's position, or NULL if room bytes after
// it are not inside the frame.
static __always_inline void *put_l2(struct xdp_md *ctx, struct l2 *h, __be16 et, __u32 room)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;

	if (h->tpid) {
		struct vlan_hdr *vlan = (void *)(eth + 1);
		void *l3 = vlan + 1;
		if (l3 + room > end)
			return NULL;
		copy_mac(eth->h_dest, h->dst);
		copy_mac(eth->h_source, h->src);
		eth->h_proto = h->tpid;
		vlan->tci = h->tci;
		vlan->proto = et;
		return l3;
	}
	void *l3 = eth + 1;
	if (l3 + room > end)
		return NULL;
	copy_mac(eth->h_dest, h->dst);
	copy_mac(eth->h_source, h->src);
	eth->h_proto = et;
	return l3;
}

// read_tag reads the frame's VLAN tag into h (tpid 0 untagged).
static __always_inline void read_tag(struct xdp_md *ctx, struct pkt *p, struct l2 *h)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct vlan_hdr *vlan = (void *)(eth + 1);

	h->tpid = 0;
	if (p->l3off != sizeof(*eth) && (void *)(vlan + 1) <= end) {
		h->tpid = eth->h_proto;
		h->tci = vlan->tci;
	}
}

// set_len makes the frame, len bytes long, newlen bytes long from its
// current start (cutting Ethernet padding, or what an answer does not
// quote).
static __always_inline int set_len(struct xdp_md *ctx, __u32 len, __u32 newlen)
{
	if (len == newlen)
		return 0;
	return bpf_xdp_adjust_tail(ctx, (int)newlen - (int)len);
}

// A frame's linear part shorter than this is the whole frame. A program
// that is not multi-buffer aware gets fragments from no driver, and from
// BPF_PROG_TEST_RUN only behind a linear part filling a page less headroom
// and tailroom (about 3.5 KB).
#define LINEAR_WHOLE 3072

// frame_len is bpf_xdp_get_buff_len without the call for the frames that
// have no fragments for sure.
static __always_inline __u32 frame_len(struct xdp_md *ctx)
{
	__u32 linear = ctx->data_end - ctx->data;

	if (linear < LINEAR_WHOLE)
		return linear;
	return bpf_xdp_get_buff_len(ctx);
}

// Parsers: packet.Parse's checks in its order. They return 0 or the drop
// reason; truncated L2/L3 headers were handled by the caller (Malformed).

// parse_icmp4 is packet.icmp4 over the ICMP message at l4 (its end the IP
// packet's, ipend).
static __always_inline __u32 parse_icmp4(struct pkt *p, void *l4, void *ipend, void *end)
{
	__u8 *icmp = l4;

	if ((void *)(icmp + ICMP_HDR) > ipend || (void *)(icmp + ICMP_HDR) > end)
		return LB_DROP_TRUNCATED_ICMP;
	__u8 type = icmp[0];
	if (type == 8) {
		p->icmp = ICMP_ECHO;
		p->ports = 0;
		p->dport = 0;
		return 0;
	}
	if (type != 3 && type != 11 && type != 12)
		return LB_DROP_UNSUPPORTED_ICMP;
	struct iphdr *q = (void *)(icmp + ICMP_HDR);
	if ((void *)(q + 1) > ipend || (void *)(q + 1) > end)
		return LB_DROP_TRUNCATED_ICMP;
	__u32 ihl = q->ihl * 4;
	if (q->version != 4 || ihl < IPV4_HDR)
		return LB_DROP_UNSUPPORTED_ICMP;
	__u32 *inner = (void *)q + ihl;
	if ((void *)(inner + 2) > ipend || (void *)(inner + 2) > end)
		return LB_DROP_TRUNCATED_ICMP;
	if (q->frag_off & bpf_htons(IP_FRAG_OFFSET_MASK))
		return LB_DROP_UNSUPPORTED_ICMP;
	if (q->protocol != IPPROTO_TCP && q->protocol != IPPROTO_UDP)
		return LB_DROP_UNSUPPORTED_ICMP;
	p->icmp = ICMP_ERROR;
	p->proto = q->protocol;
	p->src = q->daddr; // the quote's destination: the client
	p->dst = q->saddr; // the quote's source: the VIP
	p->ports = rol32(*inner, 16);
	p->dport = *(__be16 *)inner; // the quote's source port: the VIP's
	return 0;
}

// skip_ext6 is packet.skipExt6 over the extension headers at l3+*off with
// next header *nh, inside the IP packet ending at ipend. On return *nh is
// the upper-layer protocol and *off its offset.
static __always_inline __u32 skip_ext6(void *l3, void *ipend, void *end, __u8 *nh, __u32 *off)
{
#pragma unroll
	for (int i = 0; i <= MAX_EXT_HDRS; i++) {
		__u8 n = *nh;
		if (n == IPPROTO_FRAGMENT)
			return LB_DROP_FRAGMENT;
		if (n != IPPROTO_HOPOPTS && n != IPPROTO_ROUTING && n != IPPROTO_DSTOPTS)
			return 0;
		if (i == MAX_EXT_HDRS)
			return LB_DROP_TOO_MANY_EXT_HEADERS;
		__u32 o = *off;
		if (o > 2048 * (i + 1))
			return LB_DROP_TRUNCATED_EXT_HEADER;
		__u8 *h = l3 + o;
		if ((void *)(h + 8) > ipend || (void *)(h + 8) > end)
			return LB_DROP_TRUNCATED_EXT_HEADER;
		__u32 len = ((__u32)h[1] + 1) * 8;
		if ((void *)h + len > ipend)
			return LB_DROP_TRUNCATED_EXT_HEADER;
		*nh = h[0];
		*off = o + len;
	}
	return 0;
}

// parse_icmp6 is packet.icmp6.
static __always_inline __u32 parse_icmp6(struct pkt *p, void *l4, void *ipend, void *end)
{
	__u8 *icmp = l4;

	if ((void *)(icmp + ICMP_HDR) > ipend || (void *)(icmp + ICMP_HDR) > end)
		return LB_DROP_TRUNCATED_ICMP;
	__u8 type = icmp[0];
	if (type == 128) {
		p->icmp = ICMP_ECHO;
		p->ports = 0;
		p->dport = 0;
		return 0;
	}
	if (type < 1 || type > 4)
		return LB_DROP_UNSUPPORTED_ICMP;
	struct ipv6hdr *q = (void *)(icmp + ICMP_HDR);
	if ((void *)(q + 1) > ipend || (void *)(q + 1) > end)
		return LB_DROP_TRUNCATED_ICMP;
	if (q->version != 6)
		return LB_DROP_UNSUPPORTED_ICMP;
	__u8 nh = q->nexthdr;
	__u32 off = IPV6_HDR;
	__u32 r = skip_ext6(q, ipend, end, &nh, &off);
	if (r == LB_DROP_TRUNCATED_EXT_HEADER)
		return LB_DROP_TRUNCATED_ICMP;
	if (r == LB_DROP_FRAGMENT)
		return LB_DROP_UNSUPPORTED_ICMP;
	if (r)
		return r;
	if (nh != IPPROTO_TCP && nh != IPPROTO_UDP)
		return LB_DROP_UNSUPPORTED_ICMP;
	if (off > 4096)
		return LB_DROP_TRUNCATED_ICMP;
	__u32 *inner = (void *)q + off;
	if ((void *)(inner + 2) > ipend || (void *)(inner + 2) > end)
		return LB_DROP_TRUNCATED_ICMP;
	p->icmp = ICMP_ERROR;
	p->proto = nh;
	copy16(p->src6, &q->daddr);
	copy16(p->dst6, &q->saddr);
	p->ports = rol32(*inner, 16);
	p->dport = *(__be16 *)inner;
	return 0;
}

// parse_l4 reads the TCP or UDP header at l4 (packet.Parse's TruncatedL4).
static __always_inline __u32 parse_l4(struct pkt *p, __u8 proto, void *l4, void *ipend, void *end)
{
	struct udphdr *udp = l4;

	if ((void *)(udp + 1) > ipend || (void *)(udp + 1) > end)
		return LB_DROP_TRUNCATED_L4;
	if (proto == IPPROTO_TCP) {
		struct tcphdr *tcp = l4;
		if ((void *)(tcp + 1) > ipend || (void *)(tcp + 1) > end)
			return LB_DROP_TRUNCATED_L4;
		p->syn = tcp->syn && !tcp->ack;
	}
	p->proto = proto;
	p->ports = *(__u32 *)l4;
	p->dport = ((struct udphdr *)l4)->dest;
	return 0;
}

#define TOKEN_UNIT 1000000000ULL       // one ICMP token; see icmp_bucket
#define MAX_REFILL (10 * 1000000000ULL) // ns: past it the bucket is full at any rate

// icmp_allowed takes an ICMP token from this CPU's bucket, refilled first
// (the Go worker's Forwarder.icmpAllowed, refilled per call rather than per
// batch). Without one it counts icmp_rate_limited and returns 0. The clock
// is a call (bpf_ktime_get_ns), paid only by the rare frames answered.
static __always_inline int icmp_allowed(struct lb_counters *cnt)
{
	__u32 zero = 0;
	struct settings *st = bpf_map_lookup_elem(&settings, &zero);
	struct icmp_bucket *b = bpf_map_lookup_elem(&icmp_bucket, &zero);

	if (!st || !b || !st->icmp_rate)
		return 1;
	__u64 now = bpf_ktime_get_ns();
	__u64 full = (__u64)st->icmp_burst * TOKEN_UNIT;
	__u64 tokens = full;
	if (b->last) {
		__u64 elapsed = now - b->last;
		if (elapsed > MAX_REFILL)
			elapsed = MAX_REFILL;
		tokens = b->tokens + elapsed * st->icmp_rate;
		if (tokens > full)
			tokens = full;
	}
	b->last = now;
	if (tokens >= TOKEN_UNIT) {
		b->tokens = tokens - TOKEN_UNIT;
		return 1;
	}
	b->tokens = tokens;
	count(cnt, LB_ICMP_RATE_LIMITED);
	return 0;
}

// echo_reply is packet.EchoReply, in place, answered with XDP_TX.
__noinline int echo_reply(struct xdp_md *ctx, struct pkt *p)
{
	if (!p)
		return -1;
	if (set_len(ctx, bpf_xdp_get_buff_len(ctx), p->l3off + p->iplen))
		return -1;
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	__u8 mac[ETH_ALEN];
	__u16 *icmp;

	if ((void *)(eth + 1) > end)
		return -1;
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	__u8 reply = 0;
	void *l3 = data + (p->l3off == sizeof(*eth) ? sizeof(*eth) : sizeof(*eth) + sizeof(struct vlan_hdr));
	if (p->family == 4) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) + ICMP_HDR > end)
			return -1;
		__be32 a = ip->saddr;
		ip->saddr = ip->daddr;
		ip->daddr = a;
		ip->ttl = OUTER_TTL;
		ip->check = 0;
		ip->check = csum_fold(csum_words(ip, sizeof(*ip)));
		icmp = (void *)(ip + 1);
	} else {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) + ICMP_HDR > end)
			return -1;
		struct in6_addr a = ip6->saddr;
		ip6->saddr = ip6->daddr;
		ip6->daddr = a;
		ip6->hop_limit = OUTER_TTL;
		reply = 129;
		icmp = (void *)(ip6 + 1);
	}
	__u16 old = bpf_ntohs(icmp[0]);
	((__u8 *)icmp)[0] = reply;
	icmp[1] = bpf_htons(csum_update(bpf_ntohs(icmp[1]), old, bpf_ntohs(icmp[0])));
	return 0;
}

// frag_needed is packet.FragNeeded with mtu, in place of the frame: the
// ICMP error goes in the headroom in front of the quote, which stays where
// it is.
__noinline int frag_needed(struct xdp_md *ctx, struct pkt *p, __u32 mtu)
{
	__u32 overhead = IPV4_HDR + ICMP_HDR, limit = ICMP4_ERROR_MAX;
	struct l2 l2 = {};
	__u8 macs[2 * ETH_ALEN];

	if (!p)
		return -1;
	if (p->family == 6) {
		overhead = IPV6_HDR + ICMP_HDR;
		limit = ICMP6_ERROR_MAX;
		if (mtu < MIN_MTU6)
			return -1;
	} else if (mtu < MIN_MTU4) {
		return -1;
	}
	if (mtu > MAX_IP_LEN)
		return -1;
	__u32 q = p->iplen;
	if (q > limit - overhead)
		q = limit - overhead;
	void *data = (void *)(long)ctx->data;
	if (data + sizeof(macs) > (void *)(long)ctx->data_end)
		return -1;
	__builtin_memcpy(macs, data, sizeof(macs));
	l2.dst = macs + ETH_ALEN;
	l2.src = macs; // the balancer's MAC, as the client addressed it
	read_tag(ctx, p, &l2);
	if (bpf_xdp_adjust_head(ctx, -(int)overhead))
		return -1;
	if (set_len(ctx, bpf_xdp_get_buff_len(ctx), p->l3off + overhead + q))
		return -1;
	// The ICMP header goes in with a zero checksum, then one sum covers
	// it and the quote behind it.
	__u32 l4off = p->l3off + overhead - ICMP_HDR;
	__u64 sum = 0;
	__be32 *ic;
	if (p->family == 4) {
		struct iphdr *ip = put_l2(ctx, &l2, bpf_htons(ETH_P_IP), IPV4_HDR + ICMP_HDR);
		if (!ip)
			return -1;
		put_ipv4(ip, 0, 1, overhead + q, 0, IPPROTO_ICMP, p->dst, p->src);
		ic = (void *)(ip + 1);
		ic[0] = bpf_htonl(3 << 24 | 4 << 16);
	} else {
		struct ipv6hdr *ip6 = put_l2(ctx, &l2, bpf_htons(ETH_P_IPV6), IPV6_HDR + ICMP_HDR);
		if (!ip6)
			return -1;
		put_ipv6(ip6, 0, 0, ICMP_HDR + q, IPPROTO_ICMPV6, p->dst6, p->src6);
		// The pseudo-header: the addresses, the length, the next header.
		sum = csum_words(&ip6->saddr, 32) + bpf_htons(ICMP_HDR + q) + bpf_htons(IPPROTO_ICMPV6);
		ic = (void *)(ip6 + 1);
		ic[0] = bpf_htonl(2 << 24);
	}
	ic[1] = bpf_htonl(mtu);
	__s64 s = csum_packet(ctx, l4off, ICMP_HDR + q, 0);
	if (s < 0)
		return -1;
	__u16 csum = csum_fold(sum + s);
	// l4off is at most 58: the mask only shows the verifier a bound.
	__u16 *icw = (void *)(long)ctx->data + (l4off & 0x7f);
	if ((void *)(icw + 2) > (void *)(long)ctx->data_end)
		return -1;
	icw[1] = csum;
	return 0;
}

// gue6_csum stores the UDP checksum of an EncapGUE6 frame: over the
// pseudo-header, the UDP and GUE headers and the inner packet.
__noinline int gue6_csum(struct xdp_md *ctx, __u32 l3off, __u32 iplen)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ipv6hdr *ip6 = data + (l3off == ETH_HLEN ? ETH_HLEN : ETH_HLEN + 4);
	struct udphdr *udp = (void *)(ip6 + 1);

	if ((void *)(udp + 1) + GUE_HDR > end)
		return -1;
	__u64 s = csum_words(&ip6->saddr, 32) + bpf_htons(UDP_HDR + GUE_HDR + iplen) +
		  bpf_htons(IPPROTO_UDP) + csum_words(udp, UDP_HDR + GUE_HDR);
	__s64 inner = csum_packet(ctx, l3off + GUE6_OVERHEAD, iplen, 0);
	if (inner < 0)
		return -1;
	__u16 csum = csum_fold(s + inner);
	if (csum == 0)
		csum = 0xffff; // 0 means no checksum
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	ip6 = data + (l3off == ETH_HLEN ? ETH_HLEN : ETH_HLEN + 4);
	udp = (void *)(ip6 + 1);
	if ((void *)(udp + 1) > end)
		return -1;
	udp->check = csum;
	return 0;
}

// encap prepends the outer headers of forward mode fwd for backend be
// (packet.EncapIPIP, EncapIPIP6, EncapGUE4, EncapGUE6). The size checks
// were made by the caller.
static __always_inline int encap(struct xdp_md *ctx, struct pkt *p, struct backend *be,
				 struct settings *st, struct vip_conf *conf, __u32 overhead, __u32 h,
				 __u32 len)
{
	struct l2 l2 = {};
	__u8 inner = p->family == 6 ? IPPROTO_IPV6 : IPPROTO_IPIP;
	__u32 iplen = p->iplen;
	int gue = conf->forward == FWD_GUE;

	l2.dst = be->mac;
	l2.src = st->mac;
	read_tag(ctx, p, &l2);
	if (set_len(ctx, len, p->l3off + iplen))
		return LB_DROP_BAD_IP_LENGTH;
	if (bpf_xdp_adjust_head(ctx, -(int)overhead))
		return LB_DROP_NO_HEADROOM;
	__be32 ports = bpf_htonl((__u32)(GUE_PORT_BASE | ((h ^ (h >> 16)) & 0x3fff)) << 16 |
				 bpf_ntohs(conf->gue_port));
	if (be->flags & BACKEND_V6) {
		// Room for the longest header: every frame has it, the inner
		// packet being at least 20 bytes.
		struct ipv6hdr *ip6 = put_l2(ctx, &l2, bpf_htons(ETH_P_IPV6), GUE6_OVERHEAD);
		if (!ip6)
			return LB_DROP_NO_HEADROOM;
		if (!gue) {
			put_ipv6(ip6, p->tos, h, iplen, inner, st->addr6, be->addr);
			return 0;
		}
		put_ipv6(ip6, p->tos, h, UDP_HDR + GUE_HDR + iplen, IPPROTO_UDP, st->addr6, be->addr);
		__be32 *u = (void *)(ip6 + 1);
		u[0] = ports;
		u[1] = bpf_htonl((UDP_HDR + GUE_HDR + iplen) << 16);
		u[2] = bpf_htonl((__u32)inner << 16);
		if (gue6_csum(ctx, p->l3off, iplen))
			return LB_DROP_NO_HEADROOM;
		return 0;
	}
	__u16 id = 0;
	__u32 zero = 0;
	__u32 *idp = bpf_map_lookup_elem(&ip_ids, &zero);
	if (idp) {
		*idp += 1;
		id = *idp;
	}
	__be32 daddr;
	__builtin_memcpy(&daddr, be->addr, 4);
	struct iphdr *ip = put_l2(ctx, &l2, bpf_htons(ETH_P_IP), GUE4_OVERHEAD);
	if (!ip)
		return LB_DROP_NO_HEADROOM;
	if (!gue) {
		put_ipv4(ip, p->tos, p->df, iplen + IPIP_OVERHEAD, id, inner, st->addr, daddr);
		return 0;
	}
	put_ipv4(ip, p->tos, p->df, iplen + GUE4_OVERHEAD, id, IPPROTO_UDP, st->addr, daddr);
	__be32 *u = (void *)(ip + 1);
	u[0] = ports;
	u[1] = bpf_htonl((UDP_HDR + GUE_HDR + iplen) << 16); // checksum 0
	u[2] = bpf_htonl((__u32)inner << 16);
	return 0;
}

// The IPv6 flow table is reached through these calls so that the compiler
// cannot merge its lookups with the IPv4 table's into one call taking
// either map: the verifier inlines a lookup only when its call site always
// sees the same map, and the IPv4 lookup is the hot one.
static __noinline struct flow_value *flow6_lookup(struct flow_key6 *k)
{
	return bpf_map_lookup_elem(&flows6, k);
}

static __noinline void flow6_update(struct flow_key6 *k, struct flow_value *v, __u64 flags)
{
	bpf_map_update_elem(&flows6, k, v, flags);
}

union flow_keys {
	struct flow_key4 k4;
	struct flow_key6 k6;
};

// flow_lookup fills fk with p's flow-table key and returns its entry. The
// keys are written in whole words, the protocol with its padding in one: a
// load behind smaller stores (a zeroed key, then a byte) would stall.
static __always_inline struct flow_value *flow_lookup(struct pkt *p, union flow_keys *fk)
{
	if (p->family == 4) {
		fk->k4.saddr = p->src;
		fk->k4.daddr = p->dst;
		fk->k4.ports = p->ports;
		*(__u32 *)&fk->k4.proto = p->proto;
		return bpf_map_lookup_elem(&flows, &fk->k4);
	}
	copy16(fk->k6.saddr, p->src6);
	copy16(fk->k6.daddr, p->dst6);
	fk->k6.ports = p->ports;
	*(__u32 *)&fk->k6.proto = p->proto;
	return flow6_lookup(&fk->k6);
}

// flow_insert adds v as the entry of key fk (p's family), with
// bpf_map_update_elem's flags.
static __always_inline void flow_insert(struct pkt *p, union flow_keys *fk, struct flow_value *v, __u64 flags)
{
	if (p->family == 4)
		bpf_map_update_elem(&flows, &fk->k4, v, flags);
	else
		flow6_update(&fk->k6, v, flags);
}

// syn_admit says whether a SYN of a flow the table does not hold may create
// its entry at now (jiffies): always without a limit, else while this
// CPU's window has room (syn_guard).
static __always_inline int syn_admit(const struct settings *st, __u64 now)
{
	if (!st->syn_rate)
		return 1;
	__u32 zero = 0;
	struct syn_guard *g = bpf_map_lookup_elem(&syn_guard, &zero);
	if (!g)
		return 1;
	if (now - g->start >= st->syn_window) {
		g->start = now;
		g->count = 0;
	}
	if (g->count >= st->syn_rate)
		return 0;
	g->count++;
	return 1;
}

#include "lbflowcache.h"

// backend_in_use returns the backends map's entry for the full backend ID
// id, or NULL if that index is unused or holds another generation.
static __always_inline struct backend *backend_in_use(__u32 id)
{
	__u32 idx = BACKEND_INDEX(id);
	struct backend *be = bpf_map_lookup_elem(&backends, &idx);

	if (!be || !(be->flags & BACKEND_VALID) || be->id != id)
		return NULL;
	return be;
}

// flow_sync_table writes a cache hit's time through to the flow table
// (lbflowcache.h): the flow's entry, or a new one if the LRU evicted it
// (unless another CPU has just added one). It returns 1 if the table holds
// another backend or VIP for the flow: the cache entry is stale.
static __always_inline int flow_sync_table(struct pkt *p, __u32 h, __u32 backend_id, __u32 vip_id, __u64 now)
{
	union flow_keys fk;
	struct flow_value *fvp = flow_lookup(p, &fk);

	if (!fvp) {
		struct flow_value fv = { .seen = now, .backend = backend_id, .hash = h, .vip = vip_id };
		flow_insert(p, &fk, &fv, BPF_NOEXIST);
		return 0;
	}
	if (fvp->backend != backend_id || fvp->vip != vip_id)
		return 1;
	fvp->seen = now;
	return 0;
}

// vip_lookup looks k up in its family's VIP map.
static __always_inline struct vip_value *vip_lookup(const struct vip_key *k)
{
	if (k->family == 4) {
		struct vip4_key k4 = { .port = k->port, .proto = k->proto };
		__builtin_memcpy(&k4.addr, k->addr, 4);
		return bpf_map_lookup_elem(&vips4, &k4);
	}
	return bpf_map_lookup_elem(&vips, k);
}

// vip_cache: per CPU, the latest IPv4 VIP resolutions of vip_match,
// direct-mapped by a hash of the key. A slot is valid while its gen is
// settings.vips_gen, which SetVIPs moves on once the VIP maps hold a new
// set: a frame then resolves from the maps again. A resolution cached by a
// frame that read the generation before the change and the maps after it
// is dropped at the next frame, which reads the new generation. XDP does
// not nest on a CPU: a slot is never written by two frames at once.
#define VIP_CACHE_SLOTS 256

#define VIP_MATCH_NONE 0
#define VIP_MATCH_PORT 1     // the key (addr, port, proto)
#define VIP_MATCH_ANY_PORT 2 // (addr, 0, proto)

struct vip_cache_slot {
	__u64 key; // the vip4_key looked up, as one word
	__u32 gen;
	__u32 match;
	struct vip_value v;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct vip_cache_slot);
	__uint(max_entries, VIP_CACHE_SLOTS);
} vip_cache SEC(".maps");

// vip_match returns the VIP of key (addr, port, proto): the key's own, else
// the one on every port of its protocol, with key->port set to 0 (the key
// the firewall decides for), else NULL. IPv4 resolutions come from
// vip_cache when it holds them, which saves the hash lookups (calls) of the
// common frame; gen is settings.vips_gen.
static __always_inline struct vip_value *vip_match(struct vip_key *key, __u32 gen)
{
	struct vip_value *vip;

	if (key->family != 4) {
		vip = vip_lookup(key);
		if (!vip) {
			key->port = 0;
			vip = vip_lookup(key);
		}
		return vip;
	}
	// The vip4_key as one word, built in registers: stored field by field
	// and loaded whole it would stall the load behind the stores.
	__u32 addr;
	__builtin_memcpy(&addr, key->addr, 4);
	__u64 w = addr | (__u64)key->port << 32 | (__u64)key->proto << 48;
	__u32 idx = (w * 0x9e3779b97f4a7c15ULL) >> 56; // Fibonacci hashing into 256 slots
	struct vip_cache_slot *c = bpf_map_lookup_elem(&vip_cache, &idx);
	if (c && c->gen == gen && c->key == w) {
		if (c->match == VIP_MATCH_NONE)
			return NULL;
		if (c->match == VIP_MATCH_ANY_PORT)
			key->port = 0;
		return &c->v;
	}
	__u32 match = VIP_MATCH_PORT;
	__u64 k4 = w;
	vip = bpf_map_lookup_elem(&vips4, &k4);
	if (!vip) {
		k4 = w & ~(0xffffULL << 32); // port 0
		vip = bpf_map_lookup_elem(&vips4, &k4);
		match = vip ? VIP_MATCH_ANY_PORT : VIP_MATCH_NONE;
	}
	if (match == VIP_MATCH_ANY_PORT)
		key->port = 0;
	if (!c)
		return vip;
	c->key = w;
	c->gen = gen;
	c->match = match;
	if (!vip)
		return NULL;
	c->v = *vip;
	return &c->v;
}

static __always_inline int is_zero16(const __u8 *a)
{
	return !(word(a, 0) | word(a, 1) | word(a, 2) | word(a, 3));
}

// PARSE_MALFORMED and PARSE_OTHER are lb_parse's results besides the
// drop reasons: a truncated L2/L3 header, and neither IPv4 nor IPv6.
#define PARSE_MALFORMED -1
#define PARSE_OTHER -2

// lb_parse is packet.Parse: it fills p and the VIP key of the destination
// address (key->port and key->proto unset) and returns 0, a drop reason, or
// PARSE_MALFORMED or PARSE_OTHER. It is a global function: the verifier
// checks it once, on its own, instead of once per path through the caller,
// which keeps the program far below the verifier's limits.
__noinline int lb_parse(struct xdp_md *ctx, struct pkt *p, struct vip_key *key)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	__u32 reason = 0;

	if (!p || !key)
		return PARSE_MALFORMED;
	struct ethhdr *eth = data;
	if ((void *)(eth + 1) > end)
		return PARSE_MALFORMED;
	__u16 ethertype = eth->h_proto;
	void *l3 = eth + 1;
	if (ethertype == bpf_htons(ETH_P_8021Q) ||
	    ethertype == bpf_htons(ETH_P_8021AD)) {
		struct vlan_hdr *vlan = l3;
		if ((void *)(vlan + 1) > end)
			return PARSE_MALFORMED;
		ethertype = vlan->proto;
		l3 = vlan + 1;
	}
	p->l3off = l3 - data;

	if (ethertype == bpf_htons(ETH_P_IP)) {
		struct iphdr *ip = l3;
		if ((void *)(ip + 1) > end)
			return PARSE_MALFORMED;
		__u32 hlen = ip->ihl * 4;
		if (hlen < sizeof(*ip) || l3 + hlen > end)
			return PARSE_MALFORMED;
		key->family = 4;
		__builtin_memcpy(key->addr, &ip->daddr, 4);
		p->family = 4;
		p->src = ip->saddr;
		p->dst = ip->daddr;
		p->tos = ip->tos;
		p->df = !!(ip->frag_off & bpf_htons(IP_DF));
		p->frag = !!(ip->frag_off & bpf_htons(IP_FRAG_MASK));

		// The Go parser's checks, in its order (packet.Parse).
		__u32 total = bpf_ntohs(ip->tot_len);
		void *l4 = l3 + hlen;
		void *ipend = l3 + total;
		p->iplen = total;
		p->l4off = l4 - data;
		if (ip->version != 4)
			reason = LB_DROP_BAD_IP_VERSION;
		else if (total < hlen || ipend > end)
			reason = LB_DROP_BAD_IP_LENGTH;
		else if (p->frag)
			reason = LB_DROP_FRAGMENT;
		else if (ip->protocol == IPPROTO_TCP || ip->protocol == IPPROTO_UDP)
			reason = parse_l4(p, ip->protocol, l4, ipend, end);
		else if (ip->protocol == IPPROTO_ICMP) {
			reason = parse_icmp4(p, l4, ipend, end);
			if (p->icmp == ICMP_ECHO) {
				p->proto = IPPROTO_ICMP;
				p->noreply = hlen != sizeof(*ip);
			}
		} else
			reason = LB_DROP_UNSUPPORTED_PROTOCOL;
	} else if (ethertype == bpf_htons(ETH_P_IPV6)) {
		struct ipv6hdr *ip6 = l3;
		if ((void *)(ip6 + 1) > end)
			return PARSE_MALFORMED;
		key->family = 6;
		copy16(key->addr, &ip6->daddr);
		p->family = 6;
		copy16(p->src6, &ip6->saddr);
		copy16(p->dst6, &ip6->daddr);
		p->tos = ip6->priority << 4 | ip6->flow_lbl[0] >> 4;
		p->df = 1;
		__u32 total = IPV6_HDR + bpf_ntohs(ip6->payload_len);
		void *ipend = l3 + total;
		p->iplen = total;
		__u8 nh = ip6->nexthdr;
		__u32 off = IPV6_HDR;
		if (ip6->version != 6)
			reason = LB_DROP_BAD_IP_VERSION;
		else if (ipend > end || total > MAX_IP_LEN)
			reason = LB_DROP_BAD_IPV6_LENGTH;
		else
			reason = skip_ext6(l3, ipend, end, &nh, &off);
		p->frag = reason == LB_DROP_FRAGMENT;
		if (off > 4096)
			return PARSE_MALFORMED;
		void *l4 = l3 + off;
		p->l4off = l4 - data;
		if (reason)
			;
		else if (nh == IPPROTO_TCP || nh == IPPROTO_UDP)
			reason = parse_l4(p, nh, l4, ipend, end);
		else if (nh == IPPROTO_ICMPV6) {
			reason = parse_icmp6(p, l4, ipend, end);
			if (p->icmp == ICMP_ECHO) {
				p->proto = IPPROTO_ICMPV6;
				p->noreply = off != IPV6_HDR;
			}
		} else
			reason = LB_DROP_UNSUPPORTED_PROTOCOL;
	} else {
		return PARSE_OTHER; // ARP, LLDP, ...
	}

	return reason;
}

// PARSE_SLOW: lb_fast4 leaves the frame to lb_parse.
#define PARSE_SLOW -3

// lb_fast4 is lb_parse for the common frame, inlined: an untagged IPv4
// packet without options, not a fragment, its TCP or UDP header whole
// inside the IP length and the frame. It fills p and key as lb_parse does
// and returns 0; for any other frame it returns PARSE_SLOW having written
// nothing, and lb_parse decides it, with packet.Parse's checks in their
// order. The frames it takes are exactly those lb_parse returns 0 for with
// those properties, so the split changes no outcome: it saves the call (a
// return costs a mitigation thunk on this class of CPU) and lb_parse's
// branches for VLAN, IPv6, options and ICMP.
static __always_inline int lb_fast4(struct xdp_md *ctx, struct pkt *p, struct vip_key *key)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip = (void *)(eth + 1);
	struct tcphdr *tcp = (void *)(ip + 1); // or the UDP header, its first 8 bytes

	if ((void *)(ip + 1) > end || eth->h_proto != bpf_htons(ETH_P_IP))
		return PARSE_SLOW;
	// Version 4, IHL 5; neither MF nor an offset.
	if (*(__u8 *)ip != 0x45 || (ip->frag_off & bpf_htons(IP_FRAG_MASK)))
		return PARSE_SLOW;
	__u8 proto = ip->protocol;
	__u32 total = bpf_ntohs(ip->tot_len);
	__u8 syn = 0;
	if (proto == IPPROTO_TCP) {
		if ((void *)(tcp + 1) > end || total < IPV4_HDR + sizeof(*tcp))
			return PARSE_SLOW;
		syn = tcp->syn && !tcp->ack;
	} else if (proto == IPPROTO_UDP) {
		if ((void *)tcp + UDP_HDR > end || total < IPV4_HDR + UDP_HDR)
			return PARSE_SLOW;
	} else {
		return PARSE_SLOW;
	}
	if ((void *)ip + total > end)
		return PARSE_SLOW;
	key->family = 4;
	__builtin_memcpy(key->addr, &ip->daddr, 4);
	p->l3off = sizeof(*eth);
	p->l4off = sizeof(*eth) + IPV4_HDR;
	p->family = 4;
	p->src = ip->saddr;
	p->dst = ip->daddr;
	p->tos = ip->tos;
	p->df = !!(ip->frag_off & bpf_htons(IP_DF));
	p->iplen = total;
	p->proto = proto;
	p->syn = syn;
	p->ports = *(__u32 *)tcp;
	p->dport = tcp->dest;
	return 0;
}

#include "lbrtt.h"
#include "lbcapture.h"

// lb_process is the datapath. backend_out, NULL but in xlb_lb_capture,
// receives the ID of the backend a forwarded frame went to.
static __always_inline int lb_process(struct xdp_md *ctx, __u32 *backend_out)
{
	struct vip_key key = {};
	struct pkt p = {};
	__u32 zero = 0;

	struct lb_counters *cnt = bpf_map_lookup_elem(&counters, &zero);
	if (!cnt)
		return XDP_PASS; // cannot happen: a per-CPU array always has key 0
	count(cnt, LB_SEEN);

	// Why the frame cannot be forwarded, 0 if it can. 64 bits: the
	// verifier must see the bound check and the counter index in one
	// register.
	__s64 reason = lb_fast4(ctx, &p, &key);
	if (reason == PARSE_SLOW)
		reason = lb_parse(ctx, &p, &key);
	if (reason == PARSE_MALFORMED)
		return malformed(cnt);
	if (reason == PARSE_OTHER)
		return pass(cnt);
	// An IPv4 flow's cache bucket is fetched now: its load, often a miss
	// in the CPU's caches, overlaps the VIP match instead of stalling the
	// flow lookup.
	__u32 cpu = bpf_get_smp_processor_id();
	__u32 h = 0; // the flow hash
	struct fc_bucket4 *cb4 = NULL;
	if (p.family == 4) {
		h = flow4_hash(&p);
		__u32 ci = fc_bucket_index(cpu, h);
		cb4 = bpf_map_lookup_elem(&flow_cache, &ci);
		if (cb4) {
			__u32 w = cb4->e[0].saddr;
			asm volatile("" ::"r"(w));
		}
	}
	struct settings *st = bpf_map_lookup_elem(&settings, &zero);
	if (!st)
		return pass(cnt); // cannot happen: an array always has key 0
	struct vip_value *vip = NULL;
	if (!reason && p.icmp == ICMP_NONE) {
		key.proto = p.proto;
		key.port = p.dport;
		vip = vip_match(&key, st->vips_gen);
		// The firewall decides for the VIP key that matched, before a
		// flow lookup or anything else is spent on the frame.
		if (vip) {
			__u8 src[16];
			if (p.family == 4)
				fw_src4(src, p.src);
			else
				copy16(src, p.src6);
			if (fw_check(&key, src, (long)ctx->data_end - (long)ctx->data, p.syn))
				return XDP_DROP;
		}
	}
	if (!vip) {
		// Not for a VIP: the kernel's business if the address is no
		// VIP's, else the Go worker's (answer, forward an ICMP error,
		// or drop and count).
		key.port = 0;
		key.proto = 0;
		struct vip_value *marker = vip_lookup(&key);
		if (!marker)
			return pass(cnt);
		if (p.frag && (marker->flags & VIP_FLAG_PASS_FRAGMENTS))
			return pass(cnt);
		if (reason)
			return drop(cnt, reason);
		if (p.icmp == ICMP_ECHO) {
			if (!(marker->flags & VIP_FLAG_ICMP_ECHO))
				return drop(cnt, LB_DROP_ECHO_DISABLED);
			// A token first, as the Go worker takes it.
			if (!icmp_allowed(cnt))
				return drop(cnt, LB_DROP_ECHO_RATE_LIMITED);
			if (p.noreply || echo_reply(ctx, &p))
				return drop(cnt, LB_DROP_UNSUPPORTED_ICMP);
			count(cnt, LB_ECHO_REPLY);
			return XDP_TX;
		}
		if (p.icmp != ICMP_ERROR)
			return drop(cnt, LB_DROP_NO_VIP);
		// An ICMP error about a VIP flow: the VIP of the quoted tuple.
		if (p.family == 4)
			__builtin_memcpy(key.addr, &p.dst, 4);
		else
			copy16(key.addr, p.dst6);
		key.proto = p.proto;
		key.port = p.dport;
		vip = vip_lookup(&key);
		if (!vip) {
			key.port = 0;
			vip = vip_lookup(&key);
		}
		if (!vip)
			return drop(cnt, LB_DROP_NO_VIP);
	}
	__u32 vip_id = vip->id;
	struct vip_conf *conf = bpf_map_lookup_elem(&vip_conf, &vip_id);
	if (!conf)
		return drop(cnt, LB_DROP_NO_VIP);

	// The flow cache first (lbflowcache.h): a frame the flow table would
	// give its flow's backend with nothing else to do takes it from this
	// CPU's cache.
	__u64 now = bpf_jiffies64(); // inlined into one load
	__u64 timeout = p.proto == IPPROTO_TCP ? st->tcp_timeout : st->udp_timeout;
	__u32 epoch = flow_epoch;
	struct fc4 *c4 = NULL;
	struct fc6 *c6 = NULL;
	struct fc_ref c = {};
	int chit = 0;
	if (p.family == 4) {
		if (cb4) {
			c4 = FC_PICK(fc4_differs, cb4, &p, &chit);
			FC_REF(c, c4);
		}
	} else {
		h = flow6_hash(&p);
		c6 = fc6_pick(cpu, h, &p, &chit);
		if (c6)
			FC_REF(c, c6);
	}
	struct backend *be = NULL;
	__u32 backend_id;
	if (chit && c.pv && p.icmp == ICMP_NONE && !p.syn && *c.epoch == epoch && !(*c.pv & FC_PENDING) &&
	    (*c.pv >> 16) == vip_id && now - *c.seen <= timeout - (1ULL << st->flow_sync)) {
		backend_id = *c.backend;
		be = backend_in_use(backend_id);
		if (be) {
			count(cnt, LB_FLOW_HIT);
			__u64 last = *c.seen;
			if (last != now) {
				*c.seen = now;
				if ((last ^ now) >> st->flow_sync &&
				    flow_sync_table(&p, h, backend_id, vip_id, now))
					*c.epoch = epoch - 1;
			}
		}
	}

	// The flow table, except for a TCP SYN: a new connection always takes
	// the current Maglev choice (a reused 5-tuple must not stick to the
	// backend of the connection before it). An entry is valid while it
	// names this VIP and a backend ID still in use, and was seen within
	// its protocol's idle timeout.
	if (!be) {
		union flow_keys fk;
		struct flow_value *fvp = flow_lookup(&p, &fk);
		// Looked up for a SYN too: an entry that exists is rewritten in
		// place, which costs far less than replacing it (an LRU node
		// freed and one allocated) when a client reuses a 5-tuple or
		// retransmits its SYN.
		if (fvp && !p.syn && fvp->vip == vip_id && now - fvp->seen <= timeout) {
			backend_id = fvp->backend;
			be = backend_in_use(backend_id);
			if (be) {
				count(cnt, LB_FLOW_HIT);
				if (fvp->seen != now)
					fvp->seen = now;
				if (fvp->pad)
					rtt_handshake(ctx, &p, fvp, backend_id);
			}
		}
		if (!be) {
			__u32 size = conf->table_size;
			__u32 idx = conf->table_off + (__u32)(((__u64)h * size) >> 32);
			__u32 *s = bpf_map_lookup_elem(&maglev, &idx);
			if (!size || !s || *s == EMPTY_SLOT)
				return drop(cnt, LB_DROP_NO_BACKEND);
			backend_id = *s;
			be = backend_in_use(backend_id);
			if (!be)
				return drop(cnt, LB_DROP_NO_BACKEND);
			// ICMP errors follow flows but never make one.
			if (p.icmp == ICMP_NONE) {
				if (fvp) {
					// A SYN moving a reused 5-tuple to another
					// backend voids every CPU's cache.
					if (p.syn && fvp->backend != backend_id)
						__sync_fetch_and_add(&flow_epoch, 1);
					fvp->backend = backend_id;
					fvp->hash = h;
					fvp->vip = vip_id;
					fvp->seen = now;
					fvp->pad = rtt_mark(&p);
				} else if (!p.syn || syn_admit(st, now)) {
					struct flow_value fv = { .seen = now, .backend = backend_id, .hash = h, .vip = vip_id, .pad = rtt_mark(&p) };
					flow_insert(&p, &fk, &fv, BPF_ANY);
				} else {
					count(cnt, LB_SYN_UNTRACKED);
				}
			}
		}
		// The cache entry copies what the table now says (a SYN leaves
		// its handshake pending there). A SYN of a flow the cache does
		// not hold makes no entry: a SYN flood must not push the
		// established flows out; the flow's next frame makes it.
		if (p.icmp == ICMP_NONE && c.pv && (chit || !p.syn)) {
			if (!chit) {
				if (c4) {
					c4->saddr = p.src;
					c4->daddr = p.dst;
					c4->ports = p.ports;
				} else if (c6) {
					copy16(c6->saddr, p.src6);
					copy16(c6->daddr, p.dst6);
					c6->ports = p.ports;
				}
			}
			*c.pv = p.proto | (p.syn ? FC_PENDING : 0) | vip_id << 16;
			*c.backend = backend_id;
			*c.epoch = flow_epoch;
			*c.seen = now;
		}
	}
	// Co-located mode: this host is the flow's backend. The flow is
	// tracked like any other (it stays here) and goes to the kernel's
	// stack untouched, counted on the backend and as passed.
	if (be->flags & BACKEND_LOCAL) {
		__u32 lidx = BACKEND_INDEX(backend_id);
		struct backend_stats *ls = bpf_map_lookup_elem(&backend_stats, &lidx);
		if (ls) {
			ls->packets += 1;
			ls->bytes += frame_len(ctx);
		}
		count(cnt, LB_PASSED);
		return XDP_PASS;
	}
	if (!(be->flags & BACKEND_RESOLVED))
		return drop(cnt, LB_DROP_NO_NEIGHBOR);

	// The whole frame's length (frame_len: past data_end too).
	__u32 len = frame_len(ctx);
	if (conf->forward == FWD_DSR) {
		// packet.RewriteDSR: the MACs only; padding and all stay.
		void *data = (void *)(long)ctx->data;
		struct ethhdr *eth = data;
		if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
			return drop(cnt, LB_DROP_TOO_BIG);
		copy_mac(eth->h_dest, be->mac);
		copy_mac(eth->h_source, st->mac);
	} else {
		int v6 = be->flags & BACKEND_V6;
		if (v6 ? is_zero16(st->addr6) : !st->addr)
			return drop(cnt, LB_DROP_NO_SOURCE);
		__u32 overhead, outer;
		if (conf->forward == FWD_GUE) {
			overhead = v6 ? GUE6_OVERHEAD : GUE4_OVERHEAD;
			outer = v6 ? UDP_HDR + GUE_HDR : GUE4_OVERHEAD;
		} else {
			overhead = v6 ? IPIP6_OVERHEAD : IPIP_OVERHEAD;
			outer = v6 ? 0 : IPIP_OVERHEAD;
		}
		if (p.iplen + overhead > st->mtu || p.iplen + outer > MAX_IP_LEN) {
			// Tell the client, so its path-MTU discovery shrinks the
			// packets (IPv4 only when DF forbids fragmenting); never
			// about an ICMP error.
			count(cnt, LB_DROP_TOO_BIG);
			if (p.icmp == ICMP_NONE && p.df && icmp_allowed(cnt) && !frag_needed(ctx, &p, st->mtu - overhead)) {
				count(cnt, LB_FRAG_NEEDED);
				return XDP_TX;
			}
			return XDP_DROP;
		}
		__u32 r = encap(ctx, &p, be, st, conf, overhead, h, len);
		if (r)
			return drop(cnt, r);
	}
	if (p.icmp == ICMP_ERROR)
		count(cnt, LB_ICMP_ERROR);
	__u32 bidx = BACKEND_INDEX(backend_id);
	struct backend_stats *bs = bpf_map_lookup_elem(&backend_stats, &bidx);
	if (bs) {
		bs->packets += 1;
		bs->bytes += len;
	}
	if (backend_out)
		*backend_out = backend_id;
	count(cnt, LB_FORWARDED);
	return XDP_TX;
}

SEC("xdp")
int xlb_lb(struct xdp_md *ctx)
{
	capture_check(ctx);
	return lb_process(ctx, NULL);
}

// xlb_lb_capture is xlb_lb while a capture runs (lbcapture.h).
SEC("xdp")
int xlb_lb_capture(struct xdp_md *ctx)
{
	struct cap_scratch *s = cap_rx(ctx);
	__u32 backend = CAP_NO_BACKEND;
	int act = lb_process(ctx, &backend);

	if (s)
		cap_done(ctx, s, act, backend);
	return act;
}

// xlb_lb_bench is the benchmarks' harness; LoadLB never loads it. It runs
// the same code, then undoes what it sent (moves the start of the frame back
// by what the new headers added and restores the Ethernet header; untagged
// frames without padding only), so that a repeated BPF_PROG_TEST_RUN, which
// keeps what the previous run left, runs every time on the same input.
SEC("xdp")
int xlb_lb_bench(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *end = (void *)(long)ctx->data_end;
	struct ethhdr saved;

	if (data + sizeof(saved) > end)
		return XDP_ABORTED;
	__builtin_memcpy(&saved, data, sizeof(saved));
	__u32 before = bpf_xdp_get_buff_len(ctx);
	capture_check(ctx); // what a frame pays while no capture runs
	int act = lb_process(ctx, NULL);
	if (act != XDP_TX)
		return act;
	__u32 added = bpf_xdp_get_buff_len(ctx) - before;
	if (added > GUE6_OVERHEAD || (added && bpf_xdp_adjust_head(ctx, added)))
		return XDP_ABORTED;
	data = (void *)(long)ctx->data;
	end = (void *)(long)ctx->data_end;
	if (data + sizeof(saved) > end)
		return XDP_ABORTED;
	__builtin_memcpy(data, &saved, sizeof(saved));
	return act;
}

// xlb_lb_clock writes the jiffies and the monotonic time (ns) into the
// first 16 bytes of the frame: LoadLB test-runs it twice to learn the
// kernel's HZ, which converts the idle timeouts into jiffies.
SEC("xdp")
int xlb_lb_clock(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	__u64 *w = data;

	if ((void *)(w + 2) > (void *)(long)ctx->data_end)
		return XDP_ABORTED;
	w[0] = bpf_jiffies64();
	w[1] = bpf_ktime_get_coarse_ns();
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "Dual MIT/GPL";
