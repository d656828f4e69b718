package bpf

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/internal/frametest"
)

// Frame builders shared by the steer, lb and firewall tests. Addresses are from the
// 198.18.0.0/15 and 2001:db8::/32 test ranges.

var (
	macSrc  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	macDst  = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	client  = netip.MustParseAddr("198.18.1.1")
	client6 = netip.MustParseAddr("2001:db8:1::1")
)

func eth(t layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: macSrc, DstMAC: macDst, EthernetType: t}
}

var payload = gopacket.Payload("xlb test payload")

// l4 returns the TCP or UDP layer to port, with checksums over ip.
func l4(proto layers.IPProtocol, port uint16, ip gopacket.NetworkLayer) gopacket.SerializableLayer {
	if proto == layers.IPProtocolUDP {
		u := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(port)}
		_ = u.SetNetworkLayerForChecksum(ip)
		return u
	}
	tc := &layers.TCP{SrcPort: 40000, DstPort: layers.TCPPort(port), SYN: true, Seq: 1, Window: 1024}
	_ = tc.SetNetworkLayerForChecksum(ip)
	return tc
}

// frame4 is an untagged IPv4 TCP/UDP frame from client to dst:port.
func frame4(t testing.TB, dst netip.Addr, proto layers.IPProtocol, port uint16) []byte {
	ip := frametest.IPv4(client, dst, proto)
	return frametest.Serialize(t, eth(layers.EthernetTypeIPv4), ip, l4(proto, port, ip), payload)
}

// frame4Opts is frame4 with an IPv4 header of ihl 32-bit words (5..15),
// padded with NOP options.
func frame4Opts(t testing.TB, dst netip.Addr, port uint16, ihl int) []byte {
	ip := frametest.IPv4(client, dst, layers.IPProtocolTCP)
	for range 4 * (ihl - 5) {
		ip.Options = append(ip.Options, layers.IPv4Option{OptionType: 1, OptionLength: 1})
	}
	f := frametest.Serialize(t, eth(layers.EthernetTypeIPv4), ip, l4(layers.IPProtocolTCP, port, ip), payload)
	if got := int(f[14] & 0x0f); got != ihl {
		t.Fatalf("built IHL %d, want %d", got, ihl)
	}
	return f
}

// frame4VLAN is frame4 behind one VLAN tag of the given TPID.
func frame4VLAN(t testing.TB, tpid layers.EthernetType, dst netip.Addr, proto layers.IPProtocol, port uint16) []byte {
	ip := frametest.IPv4(client, dst, proto)
	return frametest.Serialize(t, eth(tpid), &layers.Dot1Q{VLANIdentifier: 100, Type: layers.EthernetTypeIPv4}, ip, l4(proto, port, ip), payload)
}

// frame6 is an IPv6 TCP/UDP frame from client6 to dst:port.
func frame6(t testing.TB, dst netip.Addr, proto layers.IPProtocol, port uint16) []byte {
	ip := frametest.IPv6(client6, dst, proto)
	return frametest.Serialize(t, eth(layers.EthernetTypeIPv6), ip, l4(proto, port, ip), payload)
}

// frame6HopByHop is an IPv6 TCP frame with a hop-by-hop extension header.
func frame6HopByHop(t testing.TB, dst netip.Addr, port uint16) []byte {
	ip := frametest.IPv6(client6, dst, layers.IPProtocolIPv6HopByHop)
	hbh := &layers.IPv6HopByHop{}
	hbh.NextHeader = layers.IPProtocolTCP
	hbh.Options = []*layers.IPv6HopByHopOption{{OptionType: 1, OptionLength: 4, OptionData: make([]byte, 4)}}
	return frametest.Serialize(t, eth(layers.EthernetTypeIPv6), ip, hbh, l4(layers.IPProtocolTCP, port, ip), payload)
}

// fragment4 is a non-first IPv4 fragment (offset 1480 bytes) to dst.
func fragment4(t testing.TB, dst netip.Addr, proto layers.IPProtocol) []byte {
	ip := frametest.IPv4(client, dst, proto)
	ip.FragOffset = 185
	return frametest.Serialize(t, eth(layers.EthernetTypeIPv4), ip, gopacket.Payload("continuation bytes, no L4 header"))
}

// firstFragment4 is the first fragment (MF set, offset 0) of a TCP packet.
func firstFragment4(t testing.TB, dst netip.Addr, port uint16) []byte {
	ip := frametest.IPv4(client, dst, layers.IPProtocolTCP)
	ip.Flags = layers.IPv4MoreFragments
	return frametest.Serialize(t, eth(layers.EthernetTypeIPv4), ip, l4(layers.IPProtocolTCP, port, ip), payload)
}

func icmp4(t testing.TB, dst netip.Addr) []byte {
	ip := frametest.IPv4(client, dst, layers.IPProtocolICMPv4)
	return frametest.Serialize(t, eth(layers.EthernetTypeIPv4), ip,
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 1, Seq: 1}, payload)
}

func icmp6(t testing.TB, dst netip.Addr) []byte {
	ip := frametest.IPv6(client6, dst, layers.IPProtocolICMPv6)
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
	_ = ic.SetNetworkLayerForChecksum(ip)
	return frametest.Serialize(t, eth(layers.EthernetTypeIPv6), ip, ic, &layers.ICMPv6Echo{Identifier: 1, SeqNumber: 1}, payload)
}

func arp(t testing.TB) []byte {
	return frametest.Serialize(t, eth(layers.EthernetTypeARP), &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
		SourceHwAddress: macSrc, SourceProtAddress: client.AsSlice(),
		DstHwAddress: make([]byte, 6), DstProtAddress: []byte{198, 18, 0, 10},
	})
}

// XDP verdicts (enum xdp_action).
const (
	xdpPass     = 2
	xdpRedirect = 4
)

// extHdr is one IPv6 extension header of type typ (hop-by-hop, routing,
// destination options or fragment) followed by next, as raw bytes. units is
// the length field: the header is 8*(units+1) bytes, filled with a PadN
// option (a routing header of type 253, experimental, for routing; offset 0
// with MF set for fragment, which ignores units).
func extHdr(typ, next layers.IPProtocol, units int) []byte {
	if typ == layers.IPProtocolIPv6Fragment {
		return []byte{byte(next), 0, 0, 1, 0, 0, 0, 42}
	}
	h := make([]byte, 8*(units+1))
	h[0], h[1] = byte(next), byte(units)
	if typ == layers.IPProtocolIPv6Routing {
		h[2] = 253
		return h
	}
	h[2], h[3] = 1, byte(len(h)-4) // PadN over the rest
	return h
}

// frame6Ext is an IPv6 frame from client6 to dst whose fixed header is
// followed by the extension headers exts (in order), then a TCP header to
// port, or an ICMPv6 echo request if proto is ICMPv6.
func frame6Ext(t testing.TB, dst netip.Addr, exts []layers.IPProtocol, proto layers.IPProtocol, port uint16) []byte {
	first := proto
	if len(exts) > 0 {
		first = exts[0]
	}
	ip := frametest.IPv6(client6, dst, first)
	var chain []byte
	for i, typ := range exts {
		next := proto
		if i+1 < len(exts) {
			next = exts[i+1]
		}
		chain = append(chain, extHdr(typ, next, i%3)...)
	}
	var l4l gopacket.SerializableLayer
	if proto == layers.IPProtocolICMPv6 {
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
		_ = ic.SetNetworkLayerForChecksum(ip)
		l4l = ic
	} else {
		l4l = l4(proto, port, ip)
	}
	return frametest.Serialize(t, eth(layers.EthernetTypeIPv6), ip, gopacket.Payload(chain), l4l, payload)
}

// quoted4 is what an ICMP error quotes: the IPv4 header and first 8 bytes
// of a packet a backend sent from vip:80 to the client.
func quoted4(t testing.TB, vip netip.Addr) []byte {
	ip := frametest.IPv4(vip, client, layers.IPProtocolTCP)
	ip.Flags = layers.IPv4DontFragment
	return frametest.Serialize(t, ip, l4(layers.IPProtocolTCP, 40000, ip), payload)[:28]
}

// icmp4Error is an ICMP error of type/code from a router to dst quoting a
// packet the backends sent with source vip. For "fragmentation needed" the
// next-hop MTU (1400) is in the second half of the rest-of-header word.
func icmp4Error(t testing.TB, dst, vip netip.Addr, typ, code uint8) []byte {
	ip := frametest.IPv4(netip.MustParseAddr("198.18.5.1"), dst, layers.IPProtocolICMPv4)
	return frametest.Serialize(t, eth(layers.EthernetTypeIPv4), ip,
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Seq: 1400}, gopacket.Payload(quoted4(t, vip)))
}

// icmp6Error is an ICMPv6 error of type/code from a router to dst quoting a
// packet the backends sent with source vip; the 4 bytes after the ICMPv6
// header carry the MTU (1280) for "packet too big".
func icmp6Error(t testing.TB, dst, vip netip.Addr, typ, code uint8) []byte {
	inner := frametest.IPv6(vip, client6, layers.IPProtocolTCP)
	quoted := frametest.Serialize(t, inner, l4(layers.IPProtocolTCP, 40000, inner), payload)
	ip := frametest.IPv6(netip.MustParseAddr("2001:db8:5::1"), dst, layers.IPProtocolICMPv6)
	ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
	_ = ic.SetNetworkLayerForChecksum(ip)
	return frametest.Serialize(t, eth(layers.EthernetTypeIPv6), ip, ic, gopacket.Payload(append([]byte{0, 0, 5, 0}, quoted...)))
}
