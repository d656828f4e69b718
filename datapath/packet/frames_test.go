package packet

import (
	"encoding/binary"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/internal/frametest"
)

// Addresses used by every fixture: test ranges only (RFC 2544, RFC 3849).
var (
	clientIP  = net.IP{198, 18, 0, 1}
	vipIP     = net.IP{198, 18, 1, 10}
	routerIP  = net.IP{198, 18, 5, 1}
	lbIP      = [4]byte{198, 18, 2, 1}
	backendIP = [4]byte{198, 18, 3, 7}
	clientIP6 = net.ParseIP("2001:db8::1")
	vipIP6    = net.ParseIP("2001:db8:1::10")
	routerIP6 = net.ParseIP("2001:db8:5::1")
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	lbMAC     = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	lbMACArr  = [6]byte{0x02, 0, 0, 0, 0, 0x02}
	nextMAC   = [6]byte{0x02, 0, 0, 0, 0, 0x03}
)

// IPv6 extension header types a spec can chain.
const (
	extHopByHop = 0
	extRouting  = 43
	extDstOpts  = 60
	extFragment = 44
)

// spec describes a frame to build with gopacket. Zero values give an
// untagged IPv4 TCP SYN from clientIP:40000 to vipIP:80 with no payload.
type spec struct {
	v6       bool   // IPv6 (clientIP6, vipIP6) instead of IPv4
	vlan     bool   // one 802.1Q tag, VLAN 100, priority 5
	qinq     bool   // 802.1ad outer tag plus 802.1Q inner tag
	optWords int    // IPv4 option words (0..10): IHL = 5 + optWords
	ext      []int  // IPv6 extension headers in order (ext* constants), sized by extLen
	proto    string // "tcp" (default), "udp", "icmp" (echo request), "icmperr" (see below), "arp"
	tos      uint8  // IPv4 TOS or IPv6 traffic class
	label    uint32 // IPv6 flow label
	df       bool
	mf       bool   // more-fragments flag
	fragOff  uint16 // fragment offset in 8-byte units
	payload  int    // L4 payload bytes (echo data for "icmp")

	// For "icmperr": an ICMP error from routerIP(6) to the VIP about the
	// backend's reply vip:80 -> client:40000 (TCP, or UDP vip:9000 with
	// errUDP), the error type and code (default: fragmentation needed with
	// MTU 1400, or IPv6 packet too big), the quoted packet's own spec
	// (inner; its v6 and proto are set), and how many of its bytes are
	// quoted (quote, 0 for all of it).
	errType, errCode uint8
	errUDP           bool
	inner            *spec
	quote            int
	reverse          bool // internal: build the backend-to-client direction
}

// extLen is the size build gives the i-th extension header, of type e:
// options headers and routing headers alternate between two sizes.
func extLen(i, e int) int {
	switch e {
	case extFragment:
		return 8
	case extRouting:
		return 8 + 16*(i%2)
	}
	return 8 + 8*(i%2)
}

// build serializes s into a frame, with correct lengths and checksums.
func build(tb testing.TB, s spec) []byte {
	tb.Helper()
	eth := &layers.Ethernet{SrcMAC: clientMAC, DstMAC: lbMAC}
	ls := []gopacket.SerializableLayer{eth}
	inner := layers.EthernetTypeIPv4
	switch {
	case s.v6:
		inner = layers.EthernetTypeIPv6
	case s.proto == "arp":
		inner = layers.EthernetTypeARP
	}
	switch {
	case s.qinq:
		eth.EthernetType = layers.EthernetTypeQinQ
		ls = append(ls,
			&layers.Dot1Q{VLANIdentifier: 200, Type: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{VLANIdentifier: 100, Type: inner})
	case s.vlan:
		eth.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, &layers.Dot1Q{Priority: 5, VLANIdentifier: 100, Type: inner})
	default:
		eth.EthernetType = inner
	}
	if s.proto == "arp" {
		ls = append(ls, &layers.ARP{
			AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
			HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
			SourceHwAddress: clientMAC, SourceProtAddress: clientIP,
			DstHwAddress: make([]byte, 6), DstProtAddress: vipIP,
		})
		return frametest.Serialize(tb, ls...)
	}
	return frametest.Serialize(tb, append(ls, ipLayers(tb, s)...)...)
}

// ipLayers returns the IP header and everything after it for s.
func ipLayers(tb testing.TB, s spec) []gopacket.SerializableLayer {
	tb.Helper()
	src, dst := clientIP, vipIP
	if s.v6 {
		src, dst = clientIP6, vipIP6
	}
	sport, dport := uint16(40000), uint16(80)
	if s.proto == "udp" {
		dport = 9000
	}
	if s.reverse {
		src, dst, sport, dport = dst, src, dport, sport
	}
	if s.proto == "icmperr" {
		src = routerIP
		if s.v6 {
			src = routerIP6
		}
	}
	var ls []gopacket.SerializableLayer
	var netLayer gopacket.NetworkLayer
	var l4Proto layers.IPProtocol
	switch s.proto {
	case "udp":
		l4Proto = layers.IPProtocolUDP
	case "icmp", "icmperr":
		l4Proto = layers.IPProtocolICMPv4
		if s.v6 {
			l4Proto = layers.IPProtocolICMPv6
		}
	default:
		l4Proto = layers.IPProtocolTCP
	}
	if s.v6 {
		ip6 := &layers.IPv6{Version: 6, TrafficClass: s.tos, FlowLabel: s.label, HopLimit: 61, SrcIP: src, DstIP: dst}
		netLayer = ip6
		ls = append(ls, ip6)
		next := l4Proto
		// Chain the extension headers from the last one back.
		raw := make([][]byte, len(s.ext))
		for i := len(s.ext) - 1; i >= 0; i-- {
			h := make([]byte, extLen(i, s.ext[i]))
			switch s.ext[i] {
			case extFragment:
				binary.BigEndian.PutUint16(h[2:4], s.fragOff<<3)
				if s.mf {
					h[3] |= 1
				}
				binary.BigEndian.PutUint32(h[4:8], 0xabcd)
			case extRouting:
				// Type 0 with no segments left, the only type gopacket
				// decodes, and 0 or 1 address.
				h[1] = uint8(len(h)/8 - 1)
			default:
				h[1] = uint8(len(h)/8 - 1)
				h[2], h[3] = 1, uint8(len(h)-4) // one PadN option filling the header
			}
			h[0] = uint8(next)
			next = layers.IPProtocol(s.ext[i])
			raw[i] = h
		}
		ip6.NextHeader = next
		for _, h := range raw {
			ls = append(ls, gopacket.Payload(h))
		}
	} else {
		ip := &layers.IPv4{Version: 4, TOS: s.tos, Id: 0x1234, TTL: 61, SrcIP: src, DstIP: dst, FragOffset: s.fragOff, Protocol: l4Proto}
		if s.df {
			ip.Flags |= layers.IPv4DontFragment
		}
		if s.mf {
			ip.Flags |= layers.IPv4MoreFragments
		}
		if s.optWords > 0 {
			// One record-route-like option of optWords*4 bytes (type 7, length,
			// pointer, then zeroed slots): gopacket pads nothing, so IHL is exact.
			data := make([]byte, s.optWords*4-2)
			data[0] = 4
			ip.Options = []layers.IPv4Option{{OptionType: 7, OptionLength: uint8(s.optWords * 4), OptionData: data}}
		}
		netLayer = ip
		ls = append(ls, ip)
	}

	payload := gopacket.Payload(make([]byte, s.payload))
	for i := range payload {
		payload[i] = byte(i*7 + 3)
	}
	switch s.proto {
	case "udp":
		udp := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		_ = udp.SetNetworkLayerForChecksum(netLayer)
		return append(ls, udp, payload)
	case "icmp":
		if s.v6 {
			icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
			_ = icmp.SetNetworkLayerForChecksum(netLayer)
			return append(ls, icmp, &layers.ICMPv6Echo{Identifier: 0x4242, SeqNumber: 7}, payload)
		}
		return append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 0x4242, Seq: 7}, payload)
	case "icmperr":
		in := spec{payload: 100}
		if s.inner != nil {
			in = *s.inner
		}
		in.v6, in.reverse, in.proto = s.v6, true, "tcp"
		if s.errUDP {
			in.proto = "udp"
		}
		quote := frametest.Serialize(tb, ipLayers(tb, in)...)
		if s.quote > 0 && s.quote < len(quote) {
			quote = quote[:s.quote]
		}
		if s.v6 {
			typ := s.errType
			if typ == 0 {
				typ = layers.ICMPv6TypePacketTooBig
			}
			icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, s.errCode)}
			_ = icmp.SetNetworkLayerForChecksum(netLayer)
			return append(ls, icmp, gopacket.Payload(append([]byte{0, 0, 0x05, 0x78}, quote...)))
		}
		typ, code := s.errType, s.errCode
		if typ == 0 {
			typ, code = layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded
		}
		return append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Seq: 1400}, gopacket.Payload(quote))
	default:
		tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 1000, SYN: true, Window: 64240}
		_ = tcp.SetNetworkLayerForChecksum(netLayer)
		return append(ls, tcp, payload)
	}
}

// le32 loads four raw bytes as a little-endian word, as Flow.Src/Dst/Ports do.
func le32(b []byte) uint32 {
	return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
}

// setIPv4 edits the IPv4 header at l3 with edit, then fixes its checksum,
// so that a fixture is malformed in exactly one way.
func setIPv4(frame []byte, l3 int, edit func(ip []byte)) []byte {
	ip := frame[l3:]
	edit(ip)
	ihl := int(ip[0]&0x0f) * 4
	if ihl < 20 || ihl > len(ip) {
		ihl = 20
	}
	ip[10], ip[11] = 0, 0
	c := Checksum(ip[:ihl])
	ip[10], ip[11] = byte(c>>8), byte(c)
	return frame
}

// edit returns frame after edit changed it in place: for fixtures whose
// malformation has no checksum to keep.
func edit(frame []byte, e func(b []byte)) []byte {
	e(frame)
	return frame
}
