// SPDX-License-Identifier: (GPL-2.0-only OR MIT)

// Definitions shared by xlb's XDP programs. The VIP map's key and value
// are one layout for steer.c and lb.c because the Go side writes both maps
// with one type (bpf.VIPKey, vipValue; a test checks the BTF layout).

#ifndef XLB_H
#define XLB_H

#include <linux/types.h>

#define IP_DF 0x4000
#define IP_MF 0x2000
#define IP_FRAG_OFFSET_MASK 0x1fff
#define IP_FRAG_MASK 0x3fff // MF flag and fragment offset

// vip_key is the key of the vips map. addr holds an IPv4 address in its
// first 4 bytes (rest zero) or an IPv6 address; port is in network order.
// Two special forms:
//   port 0, proto P: every port of (addr, P).
//   port 0, proto 0: the "address marker". The Go side inserts one for every
//                    VIP address; frames to that address whose ports cannot
//                    be read (non-first IPv4 fragments, IPv6 fragments,
//                    truncated L4 headers, too many IPv6 extension headers)
//                    or that are neither TCP nor UDP (ICMP and ICMPv6,
//                    errors included: a backend's reply leaves with the VIP
//                    as its source, so errors about it come back to the VIP)
//                    are redirected through it, so the worker classifies them.
struct vip_key {
	__u8 addr[16];
	__be16 port;
	__u8 proto;
	__u8 family;
};

// vip_value.id is diagnostic for steer and the VIP's index (its Maglev
// table) for lb.
struct vip_value {
	__u32 id;
	__u32 flags;
};

// vip_value.flags of an address marker.
#define VIP_FLAG_ADDR_MARKER 1
// Fragments to this address go to the kernel, not the workers (the VIP's
// fragments = "pass").
#define VIP_FLAG_PASS_FRAGMENTS 2
// The lb program answers echo requests to this address (the icmp_echo of
// the address's first VIP).
#define VIP_FLAG_ICMP_ECHO 4

struct vlan_hdr {
	__be16 tci;
	__be16 proto;
};

#endif
