package packet

import (
	"encoding/binary"
	"math/bits"
)

// Header sizes and field values this package reads and writes.
const (
	ethHeaderLen  = 14
	vlanTagLen    = 4
	ipv4HeaderLen = 20 // without options
	ipv6HeaderLen = 40 // without extension headers
	tcpHeaderLen  = 20 // without options
	udpHeaderLen  = 8
	icmpHeaderLen = 8 // ICMP and ICMPv6: type, code, checksum, 4 bytes of type-specific data
	extHeaderMin  = 8 // every IPv6 extension header is a multiple of 8 bytes

	etherTypeIPv4   = 0x0800
	etherTypeIPv6   = 0x86dd
	etherType8021Q  = 0x8100
	etherType8021AD = 0x88a8

	protoHopByHop = 0
	protoICMP     = 1
	protoIPIP     = 4 // IPv4 payload (IP-in-IP)
	protoTCP      = 6
	protoUDP      = 17
	protoIPv6     = 41 // IPv6 payload
	protoRouting  = 43
	protoFragment = 44
	protoICMPv6   = 58
	protoDstOpts  = 60

	ipFlagDF      = 0x4000
	ipFlagMF      = 0x2000
	ipFragOffMask = 0x1fff

	icmpEchoReply      = 0
	icmpDestUnreach    = 3
	icmpEchoRequest    = 8
	icmpTimeExceeded   = 11
	icmpParamProblem   = 12
	icmpCodeFragNeeded = 4

	icmp6DestUnreach  = 1
	icmp6PacketTooBig = 2
	icmp6TimeExceeded = 3
	icmp6ParamProblem = 4
	icmp6EchoRequest  = 128
	icmp6EchoReply    = 129
	flowLabelMask     = 0xfffff
	maxIPLen          = 0xffff // Flow.IPLen and the IPv4 total length are 16 bits
)

// MaxExtHeaders is how many IPv6 extension headers (hop-by-hop options,
// routing, destination options) Parse walks before the upper-layer header;
// one more is TooManyExtHeaders. Real traffic carries zero or one; the bound
// keeps the per-packet cost of a hostile chain constant.
const MaxExtHeaders = 4

// ICMPKind says what kind of ICMP or ICMPv6 message a Flow describes.
type ICMPKind uint8

const (
	// ICMPNone: not ICMP, a TCP or UDP packet.
	ICMPNone ICMPKind = iota
	// ICMPEchoRequest: ICMP type 8 or ICMPv6 type 128, for the balancer to
	// answer itself (EchoReply).
	ICMPEchoRequest
	// ICMPError: destination unreachable (including fragmentation needed),
	// time exceeded or parameter problem; for ICMPv6 also packet too big.
	// The flow fields describe the quoted packet's flow, turned around to
	// the client-to-VIP direction, so the error goes to that flow's backend.
	ICMPError
)

// Flow is what Parse learns about a frame: where its headers are and the
// words the flow hash and the VIP lookup need. It is a plain value the
// worker keeps on its stack (or in a batch array) and reuses; Parse sets
// every field when it returns OK.
//
// For TCP and UDP, and for an ICMP echo request, the addresses, ports and
// protocol are the packet's own. For an ICMP error (ICMP == ICMPError)
// they are taken from the quoted packet and swapped. Such an error is
// about a packet the backend sent from VIP:vport to client:cport (directly,
// in DSR fashion) and that a router could not deliver, so it is addressed
// to the VIP and lands on the balancer; the quote reads VIP:vport ->
// client:cport. Swapped, Src/Dst/Ports/DstPort/Proto read client:cport ->
// VIP:vport, the very tuple of the client's own packets: the same VIP
// lookup and the same hash.Flow4/Flow6 value, hence the same backend. The
// caller then encapsulates the whole ICMP packet (L3Off, IPLen, TOS, DF
// are the outer packet's) and the backend's stack matches the quote to its
// socket, which is how path MTU discovery keeps working behind a balancer.
type Flow struct {
	L3Off    uint16 // offset of the IP header in the frame: 14, or 18 with a VLAN tag
	L4Off    uint16 // offset of the TCP/UDP/ICMP header: after the IPv4 options or IPv6 extension headers
	IPLen    uint16 // IP packet length (IPv4 total length, IPv6 40 + payload length); frame bytes past L3Off+IPLen are Ethernet padding
	InnerOff uint16 // for an ICMP error, the offset of the quoted IP header (L4Off + 8); 0 otherwise

	Family   uint8    // 4 or 6
	Proto    uint8    // 6 (TCP) or 17 (UDP); 1 or 58 for an echo request; for an ICMP error the quoted packet's protocol, 6 or 17
	TOS      uint8    // IPv4 TOS or IPv6 traffic class (DSCP and ECN), copied to an outer header
	HopLimit uint8    // IPv4 TTL or IPv6 hop limit, as received
	DF       bool     // IPv4 don't-fragment flag; always true for IPv6, which routers never fragment
	ICMP     ICMPKind // ICMPNone for TCP and UDP
	ICMPType uint8    // for ICMP, the message type and code as received
	ICMPCode uint8

	FlowLabel uint32 // IPv6 flow label (20 bits); 0 for IPv4

	// Src and Dst are the IPv4 addresses' raw bytes loaded as little-endian
	// words, and Ports the first four bytes of the TCP/UDP header (source
	// then destination port, network order) loaded the same way: exactly
	// the words hash.Flow4 takes. Src and Dst are 0 for IPv6. Ports is 0
	// for an echo request.
	Src, Dst uint32
	Ports    uint32

	// Src6 and Dst6 are the IPv6 addresses as they sit in the packet, what
	// hash.Flow6 takes with Ports and Proto. They are zero for IPv4.
	Src6, Dst6 [16]byte

	DstPort uint16 // destination port in host order, for the VIP lookup; 0 for an echo request
}

// Parse parses frame, an Ethernet frame as received, and fills f. It
// returns OK if frame is an unfragmented IPv4 or IPv6 packet carrying TCP,
// UDP, an ICMP echo request or an ICMP error about a TCP or UDP packet,
// and otherwise the Reason it cannot be handled; f's fields are meaningful
// only when it returns OK. See the package documentation for what is
// accepted. It never reads outside frame, never writes it, and does not
// allocate.
func Parse(frame []byte, f *Flow) Reason {
	if len(frame) < ethHeaderLen {
		return TruncatedEthernet
	}
	l3 := ethHeaderLen
	et := binary.BigEndian.Uint16(frame[12:14])
	if et == etherType8021Q || et == etherType8021AD {
		if len(frame) < ethHeaderLen+vlanTagLen {
			return TruncatedVLAN
		}
		l3 += vlanTagLen
		et = binary.BigEndian.Uint16(frame[16:18])
		if et == etherType8021Q || et == etherType8021AD {
			return StackedVLAN
		}
	}
	switch et {
	case etherTypeIPv4:
		return parse4(frame, l3, f)
	case etherTypeIPv6:
		return parse6(frame, l3, f)
	}
	return UnsupportedEtherType
}

// ParseIPv4 is Parse limited to what the IPv4-only forwarding path of the
// first release handles: it returns UnsupportedProtocol for IPv6 and ICMP
// packets that Parse accepts. It stays until the worker calls Parse.
func ParseIPv4(frame []byte, f *Flow) Reason {
	r := Parse(frame, f)
	if r == OK && (f.Family != 4 || f.ICMP != ICMPNone) {
		return UnsupportedProtocol
	}
	return r
}

func parse4(frame []byte, l3 int, f *Flow) Reason {
	// From here on ip is the rest of the frame; one length check per
	// header lets the compiler drop the checks on the constant indexes.
	ip := frame[l3:]
	if len(ip) < ipv4HeaderLen {
		return TruncatedIPv4
	}
	if ip[0]>>4 != 4 {
		return BadIPVersion
	}
	ihl := int(ip[0]&0x0f) << 2
	if ihl < ipv4HeaderLen {
		return BadIHL
	}
	if len(ip) < ihl {
		return TruncatedIPv4
	}
	total := int(binary.BigEndian.Uint16(ip[2:4]))
	if total < ihl || total > len(ip) {
		return BadIPLength
	}
	frag := binary.BigEndian.Uint16(ip[6:8])
	if frag&(ipFlagMF|ipFragOffMask) != 0 {
		return Fragment
	}
	// The L4 header must lie inside the IP packet, not in Ethernet padding.
	ip = ip[:total]
	_ = ip[ipv4HeaderLen-1]
	l4 := ip[ihl:]
	proto := ip[9]
	switch proto {
	case protoTCP, protoUDP:
		if len(l4) < udpHeaderLen || (proto == protoTCP && len(l4) < tcpHeaderLen) {
			return TruncatedL4
		}
		f.Proto = proto
		f.ICMP, f.ICMPType, f.ICMPCode, f.InnerOff = ICMPNone, 0, 0, 0
		f.Src = binary.LittleEndian.Uint32(ip[12:16])
		f.Dst = binary.LittleEndian.Uint32(ip[16:20])
		f.Ports = binary.LittleEndian.Uint32(l4[0:4])
		f.DstPort = binary.BigEndian.Uint16(l4[2:4])
	case protoICMP:
		if r := icmp4(l4, l3+ihl, f); r != OK {
			return r
		}
		if f.ICMP == ICMPEchoRequest {
			f.Proto = protoICMP
			f.Src = binary.LittleEndian.Uint32(ip[12:16])
			f.Dst = binary.LittleEndian.Uint32(ip[16:20])
		}
	default:
		return UnsupportedProtocol
	}
	f.L3Off = uint16(l3)
	f.L4Off = uint16(l3 + ihl)
	f.IPLen = uint16(total)
	f.Family = 4
	f.TOS = ip[1]
	f.HopLimit = ip[8]
	f.DF = frag&ipFlagDF != 0
	f.FlowLabel = 0
	f.Src6, f.Dst6 = [16]byte{}, [16]byte{}
	return OK
}

// icmp4 parses the ICMP message l4, which starts at frame offset l4Off,
// and sets f's ICMP fields; for an error it also sets the swapped flow
// tuple of the quoted packet (see Flow), for an echo request Ports and
// DstPort to 0.
func icmp4(l4 []byte, l4Off int, f *Flow) Reason {
	if len(l4) < icmpHeaderLen {
		return TruncatedICMP
	}
	typ, code := l4[0], l4[1]
	switch typ {
	case icmpEchoRequest:
		f.ICMP, f.ICMPType, f.ICMPCode, f.InnerOff = ICMPEchoRequest, typ, code, 0
		f.Ports, f.DstPort = 0, 0
		return OK
	case icmpDestUnreach, icmpTimeExceeded, icmpParamProblem:
	default:
		return UnsupportedICMP
	}
	// The quote: the IP header of the packet in error and at least its
	// first 8 bytes of payload (RFC 792), which hold the ports.
	q := l4[icmpHeaderLen:]
	if len(q) < ipv4HeaderLen {
		return TruncatedICMP
	}
	ihl := int(q[0]&0x0f) << 2
	if q[0]>>4 != 4 || ihl < ipv4HeaderLen {
		return UnsupportedICMP
	}
	if len(q) < ihl+8 {
		return TruncatedICMP
	}
	// A non-first fragment's payload starts with no ports.
	if binary.BigEndian.Uint16(q[6:8])&ipFragOffMask != 0 {
		return UnsupportedICMP
	}
	proto := q[9]
	if proto != protoTCP && proto != protoUDP {
		return UnsupportedICMP
	}
	inner := q[ihl : ihl+8]
	f.ICMP, f.ICMPType, f.ICMPCode = ICMPError, typ, code
	f.InnerOff = uint16(l4Off + icmpHeaderLen)
	f.Proto = proto
	f.Src = binary.LittleEndian.Uint32(q[16:20]) // the quote's destination: the client
	f.Dst = binary.LittleEndian.Uint32(q[12:16]) // the quote's source: the VIP
	// Swapping the two 16-bit halves of the little-endian word swaps the
	// ports as they sit in the packet.
	f.Ports = bits.RotateLeft32(binary.LittleEndian.Uint32(inner[0:4]), 16)
	f.DstPort = binary.BigEndian.Uint16(inner[0:2])
	return OK
}

func parse6(frame []byte, l3 int, f *Flow) Reason {
	ip := frame[l3:]
	if len(ip) < ipv6HeaderLen {
		return TruncatedIPv6
	}
	if ip[0]>>4 != 6 {
		return BadIPVersion
	}
	// A payload length of 0 with a jumbo option (RFC 2675) claims more
	// than a frame holds; it fails on the upper-layer header below.
	total := ipv6HeaderLen + int(binary.BigEndian.Uint16(ip[4:6]))
	if total > len(ip) || total > maxIPLen {
		return BadIPv6Length
	}
	ip = ip[:total]
	_ = ip[ipv6HeaderLen-1]
	proto, l4Off, r := skipExt6(ip, ip[6], ipv6HeaderLen)
	if r != OK {
		return r
	}
	l4 := ip[l4Off:]
	switch proto {
	case protoTCP, protoUDP:
		if len(l4) < udpHeaderLen || (proto == protoTCP && len(l4) < tcpHeaderLen) {
			return TruncatedL4
		}
		f.Proto = proto
		f.ICMP, f.ICMPType, f.ICMPCode, f.InnerOff = ICMPNone, 0, 0, 0
		f.Src6 = [16]byte(ip[8:24])
		f.Dst6 = [16]byte(ip[24:40])
		f.Ports = binary.LittleEndian.Uint32(l4[0:4])
		f.DstPort = binary.BigEndian.Uint16(l4[2:4])
	case protoICMPv6:
		if r := icmp6(l4, l3+l4Off, f); r != OK {
			return r
		}
		if f.ICMP == ICMPEchoRequest {
			f.Proto = protoICMPv6
			f.Src6 = [16]byte(ip[8:24])
			f.Dst6 = [16]byte(ip[24:40])
		}
	default:
		return UnsupportedProtocol
	}
	w0 := binary.BigEndian.Uint32(ip[0:4])
	f.L3Off = uint16(l3)
	f.L4Off = uint16(l3 + l4Off)
	f.IPLen = uint16(total)
	f.Family = 6
	f.TOS = uint8(w0 >> 20)
	f.FlowLabel = w0 & flowLabelMask
	f.HopLimit = ip[7]
	f.DF = true
	f.Src, f.Dst = 0, 0
	return OK
}

// skipExt6 walks the IPv6 extension headers of pkt (an IPv6 packet, or
// the quoted start of one) that begin at off with next header nh, and
// returns the upper-layer protocol and its offset. Hop-by-hop options,
// routing and destination options headers are skipped without looking at
// their contents; a Fragment header is Fragment.
func skipExt6(pkt []byte, nh uint8, off int) (proto uint8, l4Off int, r Reason) {
	for i := 0; ; i++ {
		switch nh {
		case protoHopByHop, protoRouting, protoDstOpts:
		case protoFragment:
			return 0, 0, Fragment
		default:
			return nh, off, OK
		}
		if i == MaxExtHeaders {
			return 0, 0, TooManyExtHeaders
		}
		if len(pkt)-off < extHeaderMin {
			return 0, 0, TruncatedExtHeader
		}
		h := pkt[off : off+extHeaderMin]
		n := (int(h[1]) + 1) * extHeaderMin
		if len(pkt)-off < n {
			return 0, 0, TruncatedExtHeader
		}
		nh = h[0]
		off += n
	}
}

// icmp6 is icmp4 for ICMPv6: the quote is an IPv6 header, its extension
// headers and at least 8 bytes of the upper layer.
func icmp6(l4 []byte, l4Off int, f *Flow) Reason {
	if len(l4) < icmpHeaderLen {
		return TruncatedICMP
	}
	typ, code := l4[0], l4[1]
	switch typ {
	case icmp6EchoRequest:
		f.ICMP, f.ICMPType, f.ICMPCode, f.InnerOff = ICMPEchoRequest, typ, code, 0
		f.Ports, f.DstPort = 0, 0
		return OK
	case icmp6DestUnreach, icmp6PacketTooBig, icmp6TimeExceeded, icmp6ParamProblem:
	default:
		return UnsupportedICMP
	}
	q := l4[icmpHeaderLen:]
	if len(q) < ipv6HeaderLen {
		return TruncatedICMP
	}
	if q[0]>>4 != 6 {
		return UnsupportedICMP
	}
	proto, off, r := skipExt6(q, q[6], ipv6HeaderLen)
	switch r {
	case OK:
	case TruncatedExtHeader:
		return TruncatedICMP
	case Fragment:
		return UnsupportedICMP
	default:
		return r
	}
	if proto != protoTCP && proto != protoUDP {
		return UnsupportedICMP
	}
	if len(q)-off < 8 {
		return TruncatedICMP
	}
	inner := q[off : off+8]
	f.ICMP, f.ICMPType, f.ICMPCode = ICMPError, typ, code
	f.InnerOff = uint16(l4Off + icmpHeaderLen)
	f.Proto = proto
	f.Src6 = [16]byte(q[24:40]) // the quote's destination: the client
	f.Dst6 = [16]byte(q[8:24])  // the quote's source: the VIP
	f.Ports = bits.RotateLeft32(binary.LittleEndian.Uint32(inner[0:4]), 16)
	f.DstPort = binary.BigEndian.Uint16(inner[0:2])
	return OK
}
