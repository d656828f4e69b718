// SPDX-License-Identifier: (GPL-2.0-only OR MIT)

// The per-VIP firewall and SYN rate limit, shared by steer.c (AF_XDP mode)
// and lb.c (native mode). Both programs call fw_check once a frame has
// matched a VIP (addr, port, proto) and before any redirect or forward.
//
// Model (the Go side, package firewall and bpf.Firewall, compiles the rules):
// one LPM trie holds, per VIP, every source prefix that decides something
// for it: the VIP's allow and deny rules, the global deny rules copied into
// every VIP, and, for a VIP with an allow list or a SYN limit, a prefix of
// length 0 of the VIP's family (deny when it has an allow list, allow
// otherwise). The key is the VIP key followed by the source address (IPv4
// mapped into ::ffff:0:0/96), so the longest match is the most specific
// rule of that VIP: one lookup decides, and a denied frame costs that one
// lookup and an XDP_DROP. A miss (a VIP without rules) allows.
//
// Atomic updates: the trie in use is the only element of an array of maps.
// The Go side writes a change into the other trie, swaps it in (the kernel
// waits for every running program to finish when an element of an array of
// maps is replaced, so no frame still reads the old trie afterwards), then
// writes the same change into the old one. A frame sees the rules before or
// after a change, never a mix (no window where a VIP's allow list is half
// written).

#ifndef XLB_FIREWALL_H
#define XLB_FIREWALL_H

#include <linux/bpf.h>
#include <linux/types.h>
#include <bpf/bpf_helpers.h>

#include "xlb.h"

// FW_MAX_ENTRIES bounds each trie (prefixes of all VIPs). Not preallocated:
// only the entries in use take memory (about 100 bytes each).
#define FW_MAX_ENTRIES (1 << 18)
// FW_MAX_VIPS bounds the per-VIP counter slots (the vips map's size).
#define FW_MAX_VIPS 4096
// FW_MAX_RULES bounds the rule indexes (per-rule drop counters: 16 bytes
// per CPU each, 2 MiB per CPU in all).
#define FW_MAX_RULES (1 << 17)
// FW_SYN_BUCKETS bounds the SYN rate limit's buckets (sources seen): an LRU,
// so a flood of spoofed sources evicts the oldest, never fails.
#define FW_SYN_BUCKETS 65536

#define FW_ALLOW 1
#define FW_DENY 2

// fw_key: prefixlen counts the bits of vip and src that must match: all of
// vip (160) plus the source prefix's length (an IPv4 /n is 96 + n).
struct fw_key {
	__u32 prefixlen;
	struct vip_key vip;
	__u8 src[16];
};

// fw_value: rule is the index of the rule's drop counters (fw_rule_stats),
// vip the VIP's counter slot (fw_vip_stats), syn_interval the SYN limit's
// nanoseconds per new flow (0: no limit), action FW_ALLOW or FW_DENY.
struct fw_value {
	__u32 rule;
	__u32 vip;
	__u32 syn_interval;
	__u32 action;
};

struct fw_trie {
	__uint(type, BPF_MAP_TYPE_LPM_TRIE);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__type(key, struct fw_key);
	__type(value, struct fw_value);
	__uint(max_entries, FW_MAX_ENTRIES);
};

// fw_trie_a and fw_trie_b: the two copies of the rules; fw_rules[0] points
// at the one in use, and is empty while there are no rules at all: a frame
// then pays one inlined array load instead of a trie lookup (a call).
struct fw_trie fw_trie_a SEC(".maps");
struct fw_trie fw_trie_b SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY_OF_MAPS);
	__uint(max_entries, 1);
	__type(key, __u32);
	__array(values, struct fw_trie);
} fw_rules SEC(".maps");

struct fw_counter {
	__u64 packets;
	__u64 bytes;
};

// fw_rule_stats: drops per rule index.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct fw_counter);
	__uint(max_entries, FW_MAX_RULES);
} fw_rule_stats SEC(".maps");

// fw_vip_stats: per VIP slot, the firewall's drops and the SYN limit's.
struct fw_vip_counter {
	struct fw_counter denied;
	struct fw_counter syn_limited;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct fw_vip_counter);
	__uint(max_entries, FW_MAX_VIPS);
} fw_vip_stats SEC(".maps");

// fw_syn: the SYN limit's buckets, keyed by VIP and source /32 (IPv4) or
// /64 (IPv6). One bucket for all CPUs, updated with compare-and-swap: a
// per-CPU bucket would give a source the limit once per receive queue its
// connections hash to.
struct fw_syn_key {
	struct vip_key vip;
	__u8 src[16];
};

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct fw_syn_key);
	__type(value, __u64);
	__uint(max_entries, FW_SYN_BUCKETS);
} fw_syn SEC(".maps");

#define FW_NSEC 1000000000ULL

// fw_syn_ok is a GCRA token bucket in one word: *tat is the theoretical
// arrival time of the next SYN; a SYN is admitted while tat - now is within
// one second's worth of SYNs (a burst of the rate), and moves tat on by one
// interval.
static __always_inline int fw_syn_ok(const struct vip_key *vip, const __u8 *src, __u32 interval)
{
	struct fw_syn_key k = {};
	__u64 now = bpf_ktime_get_ns();
	__u64 tau = FW_NSEC - interval;

	k.vip = *vip;
	if (vip->family == 4)
		__builtin_memcpy(k.src, src, 16); // mapped: the whole /32
	else
		__builtin_memcpy(k.src, src, 8); // the /64
#pragma unroll
	for (int i = 0; i < 2; i++) {
		__u64 *v = bpf_map_lookup_elem(&fw_syn, &k);
		if (!v) {
			__u64 first = now + interval;
			if (!bpf_map_update_elem(&fw_syn, &k, &first, BPF_NOEXIST))
				return 1;
			continue; // another CPU made it first
		}
		__u64 old = *v;
		__u64 tat = old > now ? old : now;
		if (tat - now > tau)
			return 0;
		if (__sync_val_compare_and_swap(v, old, tat + interval) == old)
			return 1;
	}
	return 0; // contended twice: refuse rather than over-admit
}

// fw_check decides a frame that matched the VIP key vip: src is its source
// address (IPv4 mapped), len its length, syn a TCP SYN without ACK. It
// returns 1 if the frame must be dropped (counted), 0 to go on.
static __always_inline int fw_check(const struct vip_key *vip, const __u8 *src, __u64 len, int syn)
{
	__u32 zero = 0;
	void *trie = bpf_map_lookup_elem(&fw_rules, &zero);
	if (!trie)
		return 0;
	struct fw_key k = { .prefixlen = 8 * (sizeof(k) - sizeof(k.prefixlen)) };
	k.vip = *vip;
	__builtin_memcpy(k.src, src, 16);
	struct fw_value *v = bpf_map_lookup_elem(trie, &k);
	if (!v)
		return 0;
	__u32 slot = v->vip;
	if (v->action == FW_DENY) {
		__u32 rule = v->rule;
		struct fw_counter *rc = bpf_map_lookup_elem(&fw_rule_stats, &rule);
		if (rc) {
			rc->packets += 1;
			rc->bytes += len;
		}
		struct fw_vip_counter *vc = bpf_map_lookup_elem(&fw_vip_stats, &slot);
		if (vc) {
			vc->denied.packets += 1;
			vc->denied.bytes += len;
		}
		return 1;
	}
	if (syn && v->syn_interval && !fw_syn_ok(vip, src, v->syn_interval)) {
		struct fw_vip_counter *vc = bpf_map_lookup_elem(&fw_vip_stats, &slot);
		if (vc) {
			vc->syn_limited.packets += 1;
			vc->syn_limited.bytes += len;
		}
		return 1;
	}
	return 0;
}

// fw_src4 writes the IPv4 address a, mapped, into src.
static __always_inline void fw_src4(__u8 *src, __be32 a)
{
	__builtin_memset(src, 0, 10);
	src[10] = 0xff;
	src[11] = 0xff;
	__builtin_memcpy(src + 12, &a, 4);
}

#endif
