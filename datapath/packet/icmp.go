package packet

import "encoding/binary"

// Sizes of the ICMP errors FragNeeded builds.
const (
	// FragNeededOverhead4 and FragNeededOverhead6 are the bytes FragNeeded
	// puts in front of the quoted packet: an IP header and an ICMP header.
	// With at least this much headroom it moves no byte of the quote.
	FragNeededOverhead4 = ipv4HeaderLen + icmpHeaderLen
	FragNeededOverhead6 = ipv6HeaderLen + icmpHeaderLen

	// icmp4ErrorMax is the longest ICMPv4 error, IP header included: RFC
	// 1812 section 4.3.2.3 quotes "as much of the original datagram as
	// possible without the length of the ICMP datagram exceeding 576
	// bytes", the datagram size every IPv4 host must accept.
	icmp4ErrorMax = 576
	// icmp6ErrorMax is the longest ICMPv6 error: RFC 4443 section 2.4 (c),
	// as much of the invoking packet as fits the IPv6 minimum MTU.
	icmp6ErrorMax = 1280
	// minMTU4 and minMTU6 are the smallest MTUs IPv4 (RFC 791) and IPv6
	// (RFC 8200) links have; hosts ignore a smaller one.
	minMTU4 = 68
	minMTU6 = 1280
)

// EchoReply turns the ICMP or ICMPv6 echo request f was parsed from
// (f.ICMP == ICMPEchoRequest) into its echo reply, in place, for the
// balancer to send back out the way it came: the MACs swapped, the IP
// addresses swapped (the reply comes from the VIP the client pinged),
// TTL or hop limit 64, type 0 or 129, identifier, sequence number and data
// unchanged. The IPv4 header checksum is recomputed; the ICMP checksum is
// updated for the type change alone (RFC 1624; the ICMPv6 pseudo-header
// sum does not change when the addresses swap), so a request with a bad
// checksum gets a reply with a bad checksum, as the client would expect.
//
// buf[off:off+n] is the received frame. The reply is buf[newOff:newOff+
// newLen], with newOff = off and newLen = L3Off + f.IPLen (any Ethernet
// padding dropped). It returns ok=false, and writes nothing, if f is not
// an echo request that fits buf[off:off+n], or if the request carries IPv4
// options or IPv6 extension headers: a source route or record route option
// and a routing header would have to be reversed, so such requests go
// unanswered instead.
func EchoReply(buf []byte, off, n int, f *Flow) (newOff, newLen int, ok bool) {
	if f.ICMP != ICMPEchoRequest || !window(buf, off, n, f) {
		return 0, 0, false
	}
	l3, l4 := int(f.L3Off), int(f.L4Off)
	newLen = l3 + int(f.IPLen)
	frame := buf[off : off+newLen]
	hdr := ipv4HeaderLen
	if f.Family == 6 {
		hdr = ipv6HeaderLen
	}
	if l4 != l3+hdr || l4+icmpHeaderLen > len(frame) {
		return 0, 0, false
	}
	ip := frame[l3:l4]
	icmp := frame[l4 : l4+icmpHeaderLen]
	// Check that f describes these bytes, so that a stale Flow cannot make
	// this rewrite some other packet.
	if f.Family == 4 {
		if ip[0] != 0x45 || ip[9] != protoICMP || icmp[0] != icmpEchoRequest {
			return 0, 0, false
		}
	} else if ip[0]>>4 != 6 || ip[6] != protoICMPv6 || icmp[0] != icmp6EchoRequest {
		return 0, 0, false
	}

	var mac [6]byte
	copy(mac[:], frame[0:6])
	copy(frame[0:6], frame[6:12])
	copy(frame[6:12], mac[:])
	reply := uint8(icmpEchoReply)
	if f.Family == 4 {
		s, d := binary.BigEndian.Uint32(ip[12:16]), binary.BigEndian.Uint32(ip[16:20])
		binary.BigEndian.PutUint32(ip[12:16], d)
		binary.BigEndian.PutUint32(ip[16:20], s)
		ip[8] = outerTTL
		ip[10], ip[11] = 0, 0
		binary.BigEndian.PutUint16(ip[10:12], Checksum(ip))
	} else {
		var a [16]byte
		copy(a[:], ip[8:24])
		copy(ip[8:24], ip[24:40])
		copy(ip[24:40], a[:])
		ip[7] = outerTTL
		reply = icmp6EchoReply
	}
	old := binary.BigEndian.Uint16(icmp[0:2])
	icmp[0] = reply
	binary.BigEndian.PutUint16(icmp[2:4], update(binary.BigEndian.Uint16(icmp[2:4]), old, binary.BigEndian.Uint16(icmp[0:2])))
	return off, newLen, true
}

// FragNeeded builds, in place of the packet f was parsed from, the ICMP
// error that tells its sender the packet is too big for the path: ICMPv4
// destination unreachable, fragmentation needed (type 3 code 4, RFC 792
// and RFC 1191) with next-hop MTU mtu, or ICMPv6 packet too big (type 2,
// RFC 4443) with MTU mtu. The caller sends it when an encapsulation
// refuses a packet as too big: mtu is then the egress MTU less the
// encapsulation overhead, the largest client packet that fits the tunnel.
// For IPv4 the caller should do so only for packets with DF set (f.DF);
// a packet without DF may be fragmented instead, and a host need not heed
// the error about it.
//
// The error goes back to the client (its destination is the packet's
// source) from the VIP (its source is the packet's destination), out the
// way the packet came (the MACs swapped, the VLAN tag kept). Coming from
// the VIP it passes the client's and its network's source filters like
// the VIP's own traffic, as Katran's do; the client's stack matches the
// quote, not the source address, to its connection. It quotes as much of
// the packet as allowed: IPv4 up to a 576-byte ICMP datagram (RFC 1812),
// IPv6 up to 1280 bytes (RFC 4443), Ethernet padding excluded; TTL or hop
// limit 64, IPv4 identification 0 with DF set, checksums computed over the
// whole message (and for ICMPv6 the pseudo-header).
//
// buf is the whole UMEM frame region and buf[off:off+n] the received
// frame. The quote is the start of the packet, already in place: when
// off is at least FragNeededOverhead4 or FragNeededOverhead6 (28 or 48
// bytes), the new headers go in the headroom and no byte moves, newOff =
// off - overhead; otherwise newOff = off and the quote moves forward by
// the overhead (copy, a memmove), which needs that much room after it in
// buf. newLen = L3Off + overhead + quoted bytes.
//
// It returns ok=false, and writes nothing, if f is an ICMP error (no error
// is ever sent about an error, RFC 1122 3.2.2), if f does not fit
// buf[off:off+n], if there is no room in front or behind, or if mtu is
// below the family's minimum (68 or 1280) or above 65535.
func FragNeeded(buf []byte, off, n int, f *Flow, mtu int) (newOff, newLen int, ok bool) {
	if f.ICMP == ICMPError || !window(buf, off, n, f) || mtu > maxIPLen {
		return 0, 0, false
	}
	l3 := int(f.L3Off)
	overhead, limit, minMTU := FragNeededOverhead4, icmp4ErrorMax, minMTU4
	if f.Family == 6 {
		overhead, limit, minMTU = FragNeededOverhead6, icmp6ErrorMax, minMTU6
	}
	if mtu < minMTU {
		return 0, 0, false
	}
	q := min(int(f.IPLen), limit-overhead)
	newLen = l3 + overhead + q
	switch {
	case off >= overhead:
		newOff = off - overhead
	case off+newLen <= len(buf):
		newOff = off
	default:
		return 0, 0, false
	}

	// Read what the new headers take from the old L2 header before any
	// write: the headers and the moved quote overlap it.
	var srcMAC, dstMAC [6]byte
	copy(srcMAC[:], buf[off:off+6]) // the balancer's MAC, as the client's next hop addressed it
	copy(dstMAC[:], buf[off+6:off+12])
	tag := vlanTag(buf, off, l3)
	if newOff == off {
		copy(buf[off+l3+overhead:off+l3+overhead+q], buf[off+l3:off+l3+q])
	}
	h := buf[newOff : newOff+l3+overhead]
	quote := buf[newOff+l3+overhead : newOff+newLen]
	if f.Family == 4 {
		putL2(h, l3, tag, srcMAC, dstMAC, etherTypeIPv4)
		var vip, client [4]byte
		binary.LittleEndian.PutUint32(vip[:], f.Dst)
		binary.LittleEndian.PutUint32(client[:], f.Src)
		putIPv4(h[l3:], 0, true, overhead+q, 0, protoICMP, vip, client)
		w0 := uint32(icmpDestUnreach)<<24 | uint32(icmpCodeFragNeeded)<<16 // checksum 0 while summing
		w1 := uint32(mtu)                                                  // 16 bits unused, 16 bits next-hop MTU
		csum := fold(sum(quote, uint64(w0)+uint64(w1)))
		icmp := h[l3+ipv4HeaderLen : l3+overhead]
		binary.BigEndian.PutUint32(icmp[0:4], w0|uint32(csum))
		binary.BigEndian.PutUint32(icmp[4:8], w1)
		return newOff, newLen, true
	}
	putL2(h, l3, tag, srcMAC, dstMAC, etherTypeIPv6)
	vip, client := f.Dst6, f.Src6
	putIPv6(h[l3:], 0, 0, icmpHeaderLen+q, protoICMPv6, outerTTL, &vip, &client)
	w0 := uint32(icmp6PacketTooBig) << 24
	w1 := uint32(mtu)
	csum := fold(sum(quote, pseudo6(&vip, &client, uint32(icmpHeaderLen+q), protoICMPv6)+uint64(w0)+uint64(w1)))
	icmp := h[l3+ipv6HeaderLen : l3+overhead]
	binary.BigEndian.PutUint32(icmp[0:4], w0|uint32(csum))
	binary.BigEndian.PutUint32(icmp[4:8], w1)
	return newOff, newLen, true
}
