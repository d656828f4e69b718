package packet

import (
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// Addresses used by every fixture: test ranges only (RFC 2544, RFC 3849).
var (
	clientIP  = net.IP{198, 18, 0, 1}
	vipIP     = net.IP{198, 18, 1, 10}
	lbIP      = [4]byte{198, 18, 2, 1}
	backendIP = [4]byte{198, 18, 3, 7}
	clientMAC = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	lbMAC     = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	lbMACArr  = [6]byte{0x02, 0, 0, 0, 0, 0x02}
	nextMAC   = [6]byte{0x02, 0, 0, 0, 0, 0x03}
)

// spec describes a frame to build with gopacket. Zero values give an
// untagged TCP SYN from clientIP:40000 to vipIP:80 with no payload.
type spec struct {
	vlan     bool   // one 802.1Q tag, VLAN 100, priority 5
	qinq     bool   // 802.1ad outer tag plus 802.1Q inner tag
	optWords int    // IPv4 option words (0..10): IHL = 5 + optWords
	proto    string // "tcp" (default), "udp", "icmp", "ipv6", "arp"
	tos      uint8
	df       bool
	mf       bool   // more-fragments flag
	fragOff  uint16 // fragment offset in 8-byte units
	payload  int    // L4 payload bytes
}

// build serializes s into a frame, with correct lengths and checksums.
func build(tb testing.TB, s spec) []byte {
	tb.Helper()
	eth := &layers.Ethernet{SrcMAC: clientMAC, DstMAC: lbMAC, EthernetType: layers.EthernetTypeIPv4}
	var ls []gopacket.SerializableLayer
	ls = append(ls, eth)
	inner := layers.EthernetTypeIPv4
	switch s.proto {
	case "ipv6":
		inner = layers.EthernetTypeIPv6
	case "arp":
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
	payload := gopacket.Payload(make([]byte, s.payload))
	for i := range payload {
		payload[i] = byte(i*7 + 3)
	}
	switch s.proto {
	case "arp":
		ls = append(ls, &layers.ARP{
			AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
			HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
			SourceHwAddress: clientMAC, SourceProtAddress: clientIP,
			DstHwAddress: make([]byte, 6), DstProtAddress: vipIP,
		})
		return serialize(tb, ls...)
	case "ipv6":
		ip6 := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP,
			SrcIP: net.ParseIP("2001:db8::1"), DstIP: net.ParseIP("2001:db8::10")}
		udp := &layers.UDP{SrcPort: 40000, DstPort: 9000}
		_ = udp.SetNetworkLayerForChecksum(ip6)
		return serialize(tb, append(ls, ip6, udp, payload)...)
	}
	ip := &layers.IPv4{Version: 4, TOS: s.tos, Id: 0x1234, TTL: 61, SrcIP: clientIP, DstIP: vipIP, FragOffset: s.fragOff}
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
	ls = append(ls, ip)
	switch s.proto {
	case "udp":
		ip.Protocol = layers.IPProtocolUDP
		udp := &layers.UDP{SrcPort: 40000, DstPort: 9000}
		_ = udp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, udp)
	case "icmp":
		ip.Protocol = layers.IPProtocolICMPv4
		ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 1, Seq: 1})
	default:
		ip.Protocol = layers.IPProtocolTCP
		tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 1000, SYN: true, Window: 64240}
		_ = tcp.SetNetworkLayerForChecksum(ip)
		ls = append(ls, tcp)
	}
	return serialize(tb, append(ls, payload)...)
}

func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
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
