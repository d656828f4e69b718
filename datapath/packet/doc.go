// Package packet is the per-packet code of the AF_XDP workers: it parses a
// received frame in place and rewrites it in place, for a backend
// (encapsulation into the headroom in front of the frame, or an L2 DSR
// MAC rewrite) or back to the client (ICMP echo replies and
// fragmentation-needed / packet-too-big errors).
//
// # Model
//
// A worker receives a frame as a window buf[off:off+n] of its UMEM, with
// buf[:off] free headroom reserved at XDP_UMEM_REG time. Parse reads
// buf[off:off+n] and fills a Flow: header offsets plus the address and
// port words the flow hash takes, loaded the same way (raw bytes as
// little-endian words for hash.Flow4, the address arrays for hash.Flow6),
// so no byte swap happens between the parser and the hash. A rewrite then
// turns the same window into, for example,
//
//	[L2 header][outer IPv4 header][inner IP packet]
//
// starting 20 bytes earlier, by writing the new L2 header and the outer
// headers into the headroom and the old L2 header's place. The inner
// packet is never moved or copied; the caller moves the TX descriptor's
// address back by off-newOff and sets its length to newLen. Every
// rewrite returns (newOff, newLen, ok) and, when ok is false, has written
// nothing, so the caller can count the frame and recycle it as it is.
//
// # Forwarding modes
//
//	function     outer headers                         overhead
//	EncapIPIP    IPv4, protocol 4 (IPv4) or 41 (IPv6)   20  IPIPOverhead
//	EncapIPIP6   IPv6, next header 4 or 41              40  IPIP6Overhead
//	EncapGUE4    IPv4 + UDP + GUE variant 0             32  GUE4Overhead
//	EncapGUE6    IPv6 + UDP + GUE variant 0             52  GUE6Overhead
//	RewriteDSR   none: only the MACs change              0
//
// Each encapsulation takes any inner family, so IPv4 and IPv6 VIPs can be
// served by backends of either family. They share one contract: f must
// come from Parse returning OK on buf[off:off+n]; the new frame is
// buf[newOff:newOff+newLen] with newOff = off-overhead and newLen = L3Off
// + overhead + f.IPLen (Ethernet padding is dropped); its L2 header goes
// from srcMAC to dstMAC and keeps the VLAN tag, if any, byte for byte, so
// the frame leaves on the VLAN it came in on; the outer header carries
// the inner TOS or traffic class (DSCP and ECN, as RFC 6040's normal mode
// does), TTL or hop limit 64 and, for IPv4, the inner DF flag (an IPv6
// inner packet counts as DF, since routers never fragment IPv6); an IPv6
// outer header's flow label, and GUE's UDP source port, carry the flow
// hash the caller passes, for ECMP and RSS entropy on the way to the
// backend. They refuse, writing nothing, when off is less than the
// overhead, when f does not fit buf[off:off+n], when an outer length
// field would pass 65535, and when the new frame would be longer than
// maxLen (the egress MTU plus the L2 header: the next hop would drop it,
// so the caller counts it or answers FragNeeded instead).
//
// # ICMP
//
// Parse accepts ICMP echo requests (f.ICMP == ICMPEchoRequest), which the
// balancer answers itself with EchoReply, and ICMP errors about a TCP or
// UDP packet (f.ICMP == ICMPError): destination unreachable, including
// fragmentation needed, time exceeded, parameter problem and ICMPv6 packet
// too big. An error is about a packet a backend sent from the VIP to a
// client; for it Parse returns the quoted packet's tuple swapped, which is
// the client's own tuple, so the caller finds the VIP and the backend
// exactly as for the client's packets and forwards the whole error there
// (see Flow). That is what keeps path MTU discovery working through the
// balancer. Other ICMP types (echo replies, redirects, neighbor discovery,
// ...) are UnsupportedICMP; the steering program should leave neighbor
// discovery for the VIP to the kernel.
//
// FragNeeded builds the error the balancer itself owes a client whose
// packet is too big for the tunnel, in place, quoting the packet.
//
// # Verdicts
//
// A frame that cannot be handled is not an error but a Reason, a small
// integer the worker uses to index a counter array; Reason.String gives the
// stable snake_case name the stats exporter prints. No input, however
// malformed, makes these functions panic; the fuzz targets check that.
//
// What is accepted, on purpose:
//   - Ethernet II with at most one 802.1Q or 802.1ad tag.
//   - IPv4 with options (IHL 6 to 15): options are skipped, and carried
//     unchanged inside the tunnel.
//   - IPv6 with up to MaxExtHeaders hop-by-hop, routing and destination
//     options headers, skipped unread and carried unchanged.
//   - TCP with at least its 20-byte fixed header and UDP with its 8-byte
//     header, both inside the IP length. The TCP data offset is not
//     checked: the balancer reads only the ports, and the backend's stack
//     validates the rest. Checksums are not verified either.
//   - ICMP and ICMPv6 as above; an error must quote the IP header (and
//     IPv6 extension headers) and at least 8 bytes of a TCP or UDP header
//     of the same family, not of a non-first fragment.
//
// What is dropped and counted: anything else, including every fragment
// (IPv4 MF or offset, any IPv6 Fragment header). A non-first fragment has
// no ports, so it cannot be hashed to the backend its flow went to; a
// first fragment has ports, but balancing it on the 5-tuple would send it
// to a different backend than the rest of its datagram, which would then
// fail to reassemble. Fragments need a reassembly or a 3-tuple policy that
// xlb does not have yet.
//
// Ethernet padding (bytes past the IP length in a short frame) is not
// part of the packet: Parse ignores it and the rewrites other than
// RewriteDSR drop it.
//
// # Rules of this package
//
// Everything here runs millions of times a second on a pinned worker: no
// allocations (tested with testing.AllocsPerRun), no interfaces, maps,
// closures or defers, and bounds checks hoisted out of the field accesses
// by slicing once per header. gopacket appears only in the tests and
// benchmarks, as the independent reference.
package packet
