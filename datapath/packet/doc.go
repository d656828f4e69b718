// Package packet is the per-packet code of the AF_XDP workers: it parses a
// received frame in place and rewrites it in place, writing an IPIP header
// into the headroom in front of the frame.
//
// # Model
//
// A worker receives a frame as a window buf[off:off+n] of its UMEM, with
// buf[:off] free headroom reserved at XDP_UMEM_REG time. Parse reads
// buf[off:off+n] and fills a Flow: header offsets plus the address and port
// words that hash.Flow4 takes, loaded the same way (raw bytes as
// little-endian words), so no byte swap happens between the parser and the
// hash. EncapIPIP then turns the same window into
//
//	[L2 header][outer IPv4 header][inner IPv4 packet]
//
// starting 20 bytes earlier, by writing the new L2 header and the outer
// header into the headroom and the old L2 header's place. The inner packet
// is never moved or copied; the caller moves the TX descriptor's address
// back by off-newOff and sets its length to newLen.
//
// # Verdicts
//
// A frame that cannot be forwarded is not an error but a Reason, a small
// integer the worker uses to index a counter array; Reason.String gives the
// stable snake_case name the stats exporter prints. No input, however
// malformed, makes these functions panic; the fuzz targets check that.
//
// What is forwarded, on purpose:
//   - Ethernet II with at most one 802.1Q or 802.1ad tag. The tag is kept on
//     the encapsulated frame, so the frame leaves on the VLAN it came in on.
//   - IPv4 with options (IHL 6 to 15): options are skipped, and carried
//     unchanged inside the tunnel.
//   - TCP with at least its 20-byte fixed header and UDP with its 8-byte
//     header, both inside the IP total length. The TCP data offset is not
//     checked: the balancer reads only the ports, and the backend's stack
//     validates the rest.
//
// What is dropped and counted: anything else, including every IPv4 fragment.
// A non-first fragment has no ports, so it cannot be hashed to the backend
// its flow went to; a first fragment has ports, but balancing it on the
// 5-tuple would send it to a different backend than the rest of its
// datagram, which would then fail to reassemble. Fragments need a
// reassembly or a 3-tuple policy that xlb does not have yet.
//
// Ethernet padding (bytes past the IP total length in a short frame) is not
// part of the packet: Parse ignores it and EncapIPIP drops it, so the
// encapsulated frame is exactly L2 header + 20 + IP total length bytes.
//
// # Rules of this package
//
// Everything here runs millions of times a second on a pinned worker: no
// allocations (tested with testing.AllocsPerRun), no interfaces, maps,
// closures or defers, and bounds checks hoisted out of the field accesses
// by slicing once per header. gopacket appears only in the tests and
// benchmarks, as the independent reference.
package packet
