package packet

import "encoding/binary"

// Header sizes and field values this package reads and writes.
const (
	ethHeaderLen  = 14
	vlanTagLen    = 4
	ipv4HeaderLen = 20 // without options
	tcpHeaderLen  = 20 // without options
	udpHeaderLen  = 8

	etherTypeIPv4   = 0x0800
	etherTypeIPv6   = 0x86dd
	etherType8021Q  = 0x8100
	etherType8021AD = 0x88a8

	protoIPIP = 4
	protoTCP  = 6
	protoUDP  = 17

	ipFlagDF      = 0x4000
	ipFlagMF      = 0x2000
	ipFragOffMask = 0x1fff
)

// Flow is what ParseIPv4 learns about a frame: where its headers are and
// the words the flow hash and the VIP lookup need. It is a plain value the
// worker keeps on its stack (or in a batch array) and reuses.
type Flow struct {
	L3Off uint16 // offset of the IPv4 header in the frame: 14, or 18 with a VLAN tag
	L4Off uint16 // offset of the TCP/UDP header: L3Off + IHL*4
	IPLen uint16 // IPv4 total length; frame bytes past L3Off+IPLen are Ethernet padding
	Proto uint8  // IP protocol: 6 (TCP) or 17 (UDP)
	TOS   uint8  // the inner TOS byte (DSCP and ECN), copied to the outer header
	DF    bool   // the inner don't-fragment flag, copied to the outer header

	// Src and Dst are the IPv4 addresses' raw bytes loaded as little-endian
	// words, and Ports the first four bytes of the TCP/UDP header (source
	// then destination port, network order) loaded the same way: exactly
	// the words hash.Flow4 takes.
	Src, Dst uint32
	Ports    uint32

	DstPort uint16 // destination port in host order, for the VIP lookup
}

// ParseIPv4 parses frame, an Ethernet frame as received, and fills f. It
// returns OK if frame is an unfragmented IPv4 TCP or UDP packet the
// balancer can forward, and otherwise the Reason it cannot; f's fields are
// meaningful only when it returns OK. See the package documentation for
// what is accepted. It never reads outside frame, never writes it, and
// does not allocate.
func ParseIPv4(frame []byte, f *Flow) Reason {
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
	if et != etherTypeIPv4 {
		if et == etherTypeIPv6 {
			return IPv6
		}
		return UnsupportedEtherType
	}

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
	proto := ip[9]
	need := tcpHeaderLen
	switch proto {
	case protoTCP:
	case protoUDP:
		need = udpHeaderLen
	default:
		return UnsupportedProtocol
	}
	// The L4 header must lie inside the IP packet, not in Ethernet padding.
	l4 := ip[ihl:total]
	if len(l4) < need {
		return TruncatedL4
	}
	_ = l4[3] // need >= 8: one check for the port loads below

	f.L3Off = uint16(l3)
	f.L4Off = uint16(l3 + ihl)
	f.IPLen = uint16(total)
	f.Proto = proto
	f.TOS = ip[1]
	f.DF = frag&ipFlagDF != 0
	f.Src = binary.LittleEndian.Uint32(ip[12:16])
	f.Dst = binary.LittleEndian.Uint32(ip[16:20])
	f.Ports = binary.LittleEndian.Uint32(l4[0:4])
	f.DstPort = binary.BigEndian.Uint16(l4[2:4])
	return OK
}
