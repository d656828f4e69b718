package packet

import "encoding/binary"

// IPIPOverhead is the number of bytes EncapIPIP adds: one IPv4 header
// without options. The UMEM headroom must be at least this.
const IPIPOverhead = ipv4HeaderLen

// outerTTL is the outer header's TTL. The tunnel is one logical hop to the
// backend; 64 is the usual default and leaves room for a routed path.
const outerTTL = 64

// EncapIPIP encapsulates, in place, the frame f was parsed from into an
// IPIP (IPv4-in-IPv4, protocol 4) packet addressed from src to dst, in a
// new Ethernet frame from srcMAC to dstMAC.
//
// buf is the whole UMEM frame region: the received frame is buf[off:off+n]
// and buf[:off] is free headroom. f must come from ParseIPv4 returning OK
// on buf[off:off+n]. The new frame is buf[newOff:newOff+newLen], with
// newOff = off-20 and newLen = L3Off + 20 + f.IPLen (n+20 unless the
// received frame carried Ethernet padding, which is dropped). Its L2 header
// keeps the VLAN tag, if any, and carries EtherType IPv4; the outer IPv4
// header has no options, the inner TOS (DSCP and ECN, as RFC 6040's normal
// mode does) and DF flag, identification id, TTL 64 and a valid checksum.
// The inner packet is neither moved nor changed.
//
// It returns ok=false, and writes nothing, if off < 20, if the result would
// be longer than maxLen (the egress MTU plus the L2 header: the next hop
// would drop it, so the caller counts it instead), or if f does not fit
// buf[off:off+n]. With a parsed f and the worker's fixed headroom, false
// means too big.
func EncapIPIP(buf []byte, off, n int, f *Flow, src, dst [4]byte, srcMAC, dstMAC [6]byte, id uint16, maxLen int) (newOff, newLen int, ok bool) {
	l3 := int(f.L3Off)
	ipLen := int(f.IPLen)
	if off < IPIPOverhead || n < 0 || off > len(buf)-n ||
		(l3 != ethHeaderLen && l3 != ethHeaderLen+vlanTagLen) ||
		ipLen < ipv4HeaderLen || ipLen > n-l3 {
		return 0, 0, false
	}
	newOff = off - IPIPOverhead
	newLen = l3 + IPIPOverhead + ipLen
	if newLen > maxLen {
		return 0, 0, false
	}

	// The new L2 header and outer IPv4 header fill buf[newOff:off+l3]; the
	// old L2 header, buf[off:off+l3], is inside that range and only its
	// VLAN tag (bytes 12..15) is still needed: read it first.
	h := buf[newOff : off+l3]
	eth := h[:l3]
	if l3 != ethHeaderLen {
		tag := binary.BigEndian.Uint32(buf[off+12 : off+16])
		binary.BigEndian.PutUint32(eth[12:16], tag)
	}
	copy(eth[0:6], dstMAC[:])
	copy(eth[6:12], srcMAC[:])
	binary.BigEndian.PutUint16(eth[l3-2:l3], etherTypeIPv4)

	// The outer header is built as five big-endian words in registers and
	// summed there: reading back the bytes just stored would stall on
	// store-to-load forwarding, which doubled the cost of this function.
	var frag uint32
	if f.DF {
		frag = ipFlagDF
	}
	w0 := uint32(4<<4|ipv4HeaderLen>>2)<<24 | uint32(f.TOS)<<16 | uint32(ipLen+IPIPOverhead)
	w1 := uint32(id)<<16 | frag
	w2 := uint32(outerTTL)<<24 | uint32(protoIPIP)<<16 // checksum 0 while summing
	w3 := binary.BigEndian.Uint32(src[:])
	w4 := binary.BigEndian.Uint32(dst[:])
	sum := fold(uint64(w0) + uint64(w1) + uint64(w2) + uint64(w3) + uint64(w4))
	ip := h[l3:]
	_ = ip[ipv4HeaderLen-1]
	binary.BigEndian.PutUint32(ip[0:4], w0)
	binary.BigEndian.PutUint32(ip[4:8], w1)
	binary.BigEndian.PutUint32(ip[8:12], w2|uint32(sum))
	binary.BigEndian.PutUint32(ip[12:16], w3)
	binary.BigEndian.PutUint32(ip[16:20], w4)
	return newOff, newLen, true
}
