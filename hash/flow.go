package hash

import (
	"encoding/binary"
	"net/netip"
)

// FlowSeed is the jhash initval of the flow hash, xored with the IP protocol
// number. It is fixed (not random per process) so that every xlb instance
// behind the same ECMP group, and the native BPF datapath, hash a flow alike.
const FlowSeed uint32 = 0x584c4231 // "XLB1"

// Flow4 hashes an IPv4 5-tuple. It is the kernel's
//
//	jhash_3words(saddr, daddr, ports, FlowSeed ^ proto)
//
// where saddr and daddr are the address bytes as they sit in the packet,
// loaded as little-endian words, and ports is the first four bytes of the
// TCP or UDP header (source then destination port, network order) loaded the
// same way, or 0 for a protocol without ports. A BPF program on a
// little-endian machine gets these words with plain loads
// (*(__u32 *)&iph->saddr) and no byte swaps.
//
// The hash is not symmetric: Flow4(a, b, ...) and Flow4(b, a, ...) differ.
// A load balancer only hashes the client-to-VIP direction, so it needs none.
func Flow4(saddr, daddr, ports uint32, proto uint8) uint32 {
	return jhash3Words(saddr, daddr, ports, FlowSeed^uint32(proto))
}

// Flow6 hashes an IPv6 5-tuple: jhash2 over nine little-endian words, the
// four of saddr, the four of daddr, then ports, with initval
// FlowSeed ^ proto:
//
//	a = b = c = 0xdeadbeef + 36 + (FlowSeed ^ proto)
//	a += s0; b += s1; c += s2; mix
//	a += s3; b += d0; c += d1; mix
//	a += d2; b += d3; c += ports; final
//	return c
//
// ports is loaded as for Flow4. The pointers are only read.
func Flow6(saddr, daddr *[16]byte, ports uint32, proto uint8) uint32 {
	iv := jhashInitval + 9<<2 + (FlowSeed ^ uint32(proto))
	a, b, c := jhashMix(
		iv+binary.LittleEndian.Uint32(saddr[0:4]),
		iv+binary.LittleEndian.Uint32(saddr[4:8]),
		iv+binary.LittleEndian.Uint32(saddr[8:12]))
	a, b, c = jhashMix(
		a+binary.LittleEndian.Uint32(saddr[12:16]),
		b+binary.LittleEndian.Uint32(daddr[0:4]),
		c+binary.LittleEndian.Uint32(daddr[4:8]))
	return jhashFinal(
		a+binary.LittleEndian.Uint32(daddr[8:12]),
		b+binary.LittleEndian.Uint32(daddr[12:16]),
		c+ports)
}

// FlowOf hashes the flow from src to dst as Flow4 or Flow6 hash its
// packets, for code that holds addresses and ports rather than a packet (a
// socket's peer and local address, a lookup from the command line). Both
// must be of one family (IPv4-mapped addresses count as IPv4); ok is false
// otherwise.
func FlowOf(proto uint8, src, dst netip.AddrPort) (h uint32, ok bool) {
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if s.Is4() != d.Is4() {
		return 0, false
	}
	var ports [4]byte
	binary.BigEndian.PutUint16(ports[0:], src.Port())
	binary.BigEndian.PutUint16(ports[2:], dst.Port())
	pw := binary.LittleEndian.Uint32(ports[:])
	if d.Is4() {
		sa, da := s.As4(), d.As4()
		return Flow4(binary.LittleEndian.Uint32(sa[:]), binary.LittleEndian.Uint32(da[:]), pw, proto), true
	}
	sa, da := s.As16(), d.As16()
	return Flow6(&sa, &da, pw, proto), true
}
