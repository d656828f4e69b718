package packet

import "encoding/binary"

// The bytes each encapsulation adds in front of the IP packet. The UMEM
// headroom must be at least the largest one the worker uses.
const (
	IPIPOverhead  = ipv4HeaderLen                               // EncapIPIP: outer IPv4
	IPIP6Overhead = ipv6HeaderLen                               // EncapIPIP6: outer IPv6
	GUE4Overhead  = ipv4HeaderLen + udpHeaderLen + gueHeaderLen // EncapGUE4: outer IPv4, UDP, GUE
	GUE6Overhead  = ipv6HeaderLen + udpHeaderLen + gueHeaderLen // EncapGUE6: outer IPv6, UDP, GUE
)

// outerTTL is the outer header's TTL or hop limit. The tunnel is one
// logical hop to the backend; 64 is the usual default and leaves room for
// a routed path.
const outerTTL = 64

// gueHeaderLen is the GUE header of variant 0 with no optional fields
// (draft-ietf-intarea-gue section 3.1): version 0, C=0 (data), Hlen=0,
// Proto/ctype the inner IP protocol, flags 0.
const gueHeaderLen = 4

// GUEPortBase is the lowest UDP source port the GUE encapsulations use:
// the source port carries 14 bits of the flow hash in the dynamic range
// 49152..65535 (RFC 6335), so that ECMP and RSS on the way to the backend
// spread flows while every packet of a flow keeps its path.
const GUEPortBase = 0xc000

// window reports whether f, as Parse returned it, describes an IP packet
// inside the frame buf[off:off+n]: the checks every rewrite makes before
// it writes anything.
func window(buf []byte, off, n int, f *Flow) bool {
	l3, ipLen := int(f.L3Off), int(f.IPLen)
	minLen := ipv4HeaderLen
	switch f.Family {
	case 4:
	case 6:
		minLen = ipv6HeaderLen
	default:
		return false
	}
	return off >= 0 && n >= 0 && off <= len(buf)-n &&
		(l3 == ethHeaderLen || l3 == ethHeaderLen+vlanTagLen) &&
		ipLen >= minLen && ipLen <= n-l3
}

// innerProto is the protocol number an outer header gives f's packet.
func innerProto(f *Flow) uint8 {
	if f.Family == 6 {
		return protoIPv6
	}
	return protoIPIP
}

// putL2 writes an Ethernet header of l3 bytes (14, or 18 with the VLAN tag
// tag) at eth, from srcMAC to dstMAC with EtherType et.
func putL2(eth []byte, l3 int, tag uint32, srcMAC, dstMAC [6]byte, et uint16) {
	_ = eth[ethHeaderLen-1]
	copy(eth[0:6], dstMAC[:])
	copy(eth[6:12], srcMAC[:])
	if l3 != ethHeaderLen {
		binary.BigEndian.PutUint32(eth[12:16], tag)
	}
	binary.BigEndian.PutUint16(eth[l3-2:l3], et)
}

// vlanTag returns the 802.1Q/802.1ad tag (TPID and TCI) of the frame at
// buf[off:], or 0 untagged. Read it before writing a new L2 header over
// the old one.
func vlanTag(buf []byte, off, l3 int) uint32 {
	if l3 == ethHeaderLen {
		return 0
	}
	return binary.BigEndian.Uint32(buf[off+12 : off+16])
}

// putIPv4 writes an IPv4 header without options at ip and returns it. The
// header is built as five big-endian words in registers and summed there:
// reading back the bytes just stored would stall on store-to-load
// forwarding, which doubled the cost of EncapIPIP when it did.
func putIPv4(ip []byte, tos uint8, df bool, total int, id uint16, proto uint8, src, dst [4]byte) {
	var frag uint32
	if df {
		frag = ipFlagDF
	}
	w0 := uint32(4<<4|ipv4HeaderLen>>2)<<24 | uint32(tos)<<16 | uint32(total)
	w1 := uint32(id)<<16 | frag
	w2 := uint32(outerTTL)<<24 | uint32(proto)<<16 // checksum 0 while summing
	w3 := binary.BigEndian.Uint32(src[:])
	w4 := binary.BigEndian.Uint32(dst[:])
	sum := fold(uint64(w0) + uint64(w1) + uint64(w2) + uint64(w3) + uint64(w4))
	_ = ip[ipv4HeaderLen-1]
	binary.BigEndian.PutUint32(ip[0:4], w0)
	binary.BigEndian.PutUint32(ip[4:8], w1)
	binary.BigEndian.PutUint32(ip[8:12], w2|uint32(sum))
	binary.BigEndian.PutUint32(ip[12:16], w3)
	binary.BigEndian.PutUint32(ip[16:20], w4)
}

// putIPv6 writes an IPv6 header without extension headers at ip.
func putIPv6(ip []byte, tc uint8, label uint32, payloadLen int, next, hopLimit uint8, src, dst *[16]byte) {
	_ = ip[ipv6HeaderLen-1]
	binary.BigEndian.PutUint32(ip[0:4], 6<<28|uint32(tc)<<20|label&flowLabelMask)
	binary.BigEndian.PutUint32(ip[4:8], uint32(payloadLen)<<16|uint32(next)<<8|uint32(hopLimit))
	copy(ip[8:24], src[:])
	copy(ip[24:40], dst[:])
}

// guePort is the GUE source port for a flow hash: GUEPortBase plus 14
// bits of the hash, its two halves folded so that every bit counts.
func guePort(flowHash uint32) uint16 {
	return GUEPortBase | uint16(flowHash^flowHash>>16)&(1<<14-1)
}

// prepend checks a rewrite that puts overhead bytes of new headers in
// front of f's IP packet and returns the new frame's position: newOff is
// off-overhead, newLen the L2 header, the new headers and the IP packet
// (Ethernet padding dropped). ok is false if the rewrite is impossible:
// too little headroom, f does not fit buf[off:off+n], an IP length field
// of the result would pass 65535 bytes (outer counts the new bytes that
// one covers), or the new frame is longer than maxLen.
func prepend(buf []byte, off, n int, f *Flow, overhead, outer, maxLen int) (newOff, newLen int, ok bool) {
	if off < overhead || !window(buf, off, n, f) || int(f.IPLen)+outer > maxIPLen {
		return 0, 0, false
	}
	newLen = int(f.L3Off) + overhead + int(f.IPLen)
	if newLen > maxLen {
		return 0, 0, false
	}
	return off - overhead, newLen, true
}

// EncapIPIP encapsulates, in place, the frame f was parsed from into
// IPv4 (IP-in-IP, protocol 4, or 6in4, protocol 41) from src to dst, with
// identification id. The overhead is IPIPOverhead, 20 bytes. See the
// package documentation, Forwarding modes, for the contract all the
// encapsulations share.
func EncapIPIP(buf []byte, off, n int, f *Flow, src, dst [4]byte, srcMAC, dstMAC [6]byte, id uint16, maxLen int) (newOff, newLen int, ok bool) {
	newOff, newLen, ok = prepend(buf, off, n, f, IPIPOverhead, IPIPOverhead, maxLen)
	if !ok {
		return 0, 0, false
	}
	l3 := int(f.L3Off)
	// The new headers fill buf[newOff:off+l3]; the old L2 header,
	// buf[off:off+l3], is inside that range and only its VLAN tag is still
	// needed: read it first.
	tag := vlanTag(buf, off, l3)
	h := buf[newOff : off+l3]
	putL2(h, l3, tag, srcMAC, dstMAC, etherTypeIPv4)
	putIPv4(h[l3:], f.TOS, f.DF, int(f.IPLen)+IPIPOverhead, id, innerProto(f), src, dst)
	return newOff, newLen, true
}

// EncapIPIP6 encapsulates, in place, into IPv6 (IPv6-in-IPv6, next header 41, or
// 4in6, next header 4; RFC 2473) from src to dst. The overhead is
// IPIP6Overhead, 40 bytes. The outer flow label is the low 20 bits of
// flowHash, the inner flow's hash, so that ECMP and RSS on the way to the
// backend, which hash IPv6 on the 3-tuple with the flow label (RFC 6438),
// spread flows across paths and receive queues.
func EncapIPIP6(buf []byte, off, n int, f *Flow, src, dst [16]byte, srcMAC, dstMAC [6]byte, flowHash uint32, maxLen int) (newOff, newLen int, ok bool) {
	newOff, newLen, ok = prepend(buf, off, n, f, IPIP6Overhead, 0, maxLen)
	if !ok {
		return 0, 0, false
	}
	l3 := int(f.L3Off)
	tag := vlanTag(buf, off, l3)
	h := buf[newOff : off+l3]
	putL2(h, l3, tag, srcMAC, dstMAC, etherTypeIPv6)
	putIPv6(h[l3:], f.TOS, flowHash, int(f.IPLen), innerProto(f), outerTTL, &src, &dst)
	return newOff, newLen, true
}

// EncapGUE4 encapsulates, in place, into GUE over UDP over IPv4, from src to dst
// with identification id: a UDP header from port GUEPortBase + 14 bits of
// flowHash to dstPort (the backend's fou/GUE port), then a 4-byte GUE
// header of variant 0 whose proto field is 4 or 41. The overhead is
// GUE4Overhead, 32 bytes. The UDP checksum is 0, which UDP over IPv4
// allows and Linux's fou accepts: the inner packet carries its own
// checksums, and summing it would cost a pass over the packet.
//
// Variant 0 is what Linux's `ip fou add port P gue` decapsulates. Katran
// sends variant 1 instead (the inner IP header right after UDP, no GUE
// header); Linux accepts both.
func EncapGUE4(buf []byte, off, n int, f *Flow, src, dst [4]byte, srcMAC, dstMAC [6]byte, id uint16, flowHash uint32, dstPort uint16, maxLen int) (newOff, newLen int, ok bool) {
	newOff, newLen, ok = prepend(buf, off, n, f, GUE4Overhead, GUE4Overhead, maxLen)
	if !ok {
		return 0, 0, false
	}
	l3 := int(f.L3Off)
	ipLen := int(f.IPLen)
	tag := vlanTag(buf, off, l3)
	h := buf[newOff : off+l3]
	putL2(h, l3, tag, srcMAC, dstMAC, etherTypeIPv4)
	putIPv4(h[l3:], f.TOS, f.DF, ipLen+GUE4Overhead, id, protoUDP, src, dst)
	u := h[l3+ipv4HeaderLen : l3+GUE4Overhead]
	binary.BigEndian.PutUint32(u[0:4], uint32(guePort(flowHash))<<16|uint32(dstPort))
	binary.BigEndian.PutUint32(u[4:8], uint32(udpHeaderLen+gueHeaderLen+ipLen)<<16) // checksum 0
	binary.BigEndian.PutUint32(u[8:12], uint32(innerProto(f))<<16)
	return newOff, newLen, true
}

// EncapGUE6 is EncapGUE4 over IPv6, from src to dst, with the flow label
// EncapIPIP6 sets. The overhead is GUE6Overhead, 52 bytes.
//
// Its UDP checksum is computed, over the pseudo-header, the UDP and GUE
// headers and the whole inner packet: one extra pass over the packet
// (about 100 ns for a 1400-byte packet here, 32 bytes per add-with-carry
// chain; BenchmarkForward/gue6 against ip6ip6 shows it). A zero checksum
// over IPv6 is allowed only for tunnels whose both ends opt in (RFC 6935,
// RFC 6936), and a receiver or middlebox that has not drops the packet
// silently; a real checksum works everywhere.
func EncapGUE6(buf []byte, off, n int, f *Flow, src, dst [16]byte, srcMAC, dstMAC [6]byte, flowHash uint32, dstPort uint16, maxLen int) (newOff, newLen int, ok bool) {
	newOff, newLen, ok = prepend(buf, off, n, f, GUE6Overhead, udpHeaderLen+gueHeaderLen, maxLen)
	if !ok {
		return 0, 0, false
	}
	l3 := int(f.L3Off)
	ipLen := int(f.IPLen)
	udpLen := udpHeaderLen + gueHeaderLen + ipLen
	tag := vlanTag(buf, off, l3)
	h := buf[newOff : off+l3]
	putL2(h, l3, tag, srcMAC, dstMAC, etherTypeIPv6)
	putIPv6(h[l3:], f.TOS, flowHash, udpLen, protoUDP, outerTTL, &src, &dst)
	ports := uint32(guePort(flowHash))<<16 | uint32(dstPort)
	gue := uint32(innerProto(f)) << 16
	s := pseudo6(&src, &dst, uint32(udpLen), protoUDP) + uint64(ports) + uint64(udpLen) + uint64(gue)
	csum := fold(sum(buf[off+l3:off+l3+ipLen], s))
	if csum == 0 {
		csum = 0xffff // 0 means no checksum; ones' complement has two zeros
	}
	u := h[l3+ipv6HeaderLen : l3+GUE6Overhead]
	binary.BigEndian.PutUint32(u[0:4], ports)
	binary.BigEndian.PutUint32(u[4:8], uint32(udpLen)<<16|uint32(csum))
	binary.BigEndian.PutUint32(u[8:12], gue)
	return newOff, newLen, true
}

// RewriteDSR forwards the frame f was parsed from by L2 direct server
// return: only the Ethernet destination and source MACs change, to dstMAC
// and srcMAC; the VLAN tag, the IP packet and any Ethernet padding stay as
// they are, so newOff = off and newLen = n. The backend must own the VIP
// (on a loopback or dummy interface, with ARP/ND for it suppressed) and be
// on the same L2 segment; it answers the client directly. It returns
// ok=false, and writes nothing, if f does not fit buf[off:off+n].
func RewriteDSR(buf []byte, off, n int, f *Flow, srcMAC, dstMAC [6]byte) (newOff, newLen int, ok bool) {
	if !window(buf, off, n, f) {
		return 0, 0, false
	}
	eth := buf[off : off+ethHeaderLen]
	copy(eth[0:6], dstMAC[:])
	copy(eth[6:12], srcMAC[:])
	return off, n, true
}
