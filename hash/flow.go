package hash

import "encoding/binary"

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
