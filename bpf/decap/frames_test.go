package decap

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/internal/frametest"
)

// The frames the decap tests send: balancer-to-backend tunnels carrying a
// client's packet to a VIP. Addresses are from the 198.18.0.0/15 and
// 2001:db8::/32 test ranges.
var (
	macSrc    = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x01}
	macDst    = net.HardwareAddr{0x02, 0, 0, 0, 0, 0x02}
	client    = netip.MustParseAddr("198.18.1.1")
	client6   = netip.MustParseAddr("2001:db8:1::1")
	vip4      = netip.MustParseAddr("198.18.0.10")
	vip6      = netip.MustParseAddr("2001:db8::10")
	balancer  = netip.MustParseAddr("198.18.0.1")
	backend   = netip.MustParseAddr("198.18.0.50")
	balancer6 = netip.MustParseAddr("2001:db8::1")
	backend6  = netip.MustParseAddr("2001:db8::50")
)

// xdpPass is XDP_PASS (enum xdp_action).
const xdpPass = 2

var payload = gopacket.Payload("xlb test payload")

// l2 prepends an Ethernet header (and a VLAN tag if vlan) with ethertype
// to ls.
func l2(t testing.TB, vlan bool, ethertype layers.EthernetType, ls ...gopacket.SerializableLayer) []byte {
	if vlan {
		return frametest.Serialize(t, append([]gopacket.SerializableLayer{
			&layers.Ethernet{SrcMAC: macSrc, DstMAC: macDst, EthernetType: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{Priority: 3, VLANIdentifier: 100, Type: ethertype}}, ls...)...)
	}
	return frametest.Serialize(t, append([]gopacket.SerializableLayer{&layers.Ethernet{SrcMAC: macSrc, DstMAC: macDst, EthernetType: ethertype}}, ls...)...)
}

// inner is a packet from src to dst:port over proto (TCP SYN or UDP), from
// its IP header on: the client's packet as the backend must see it.
func inner(t testing.TB, src, dst netip.Addr, proto layers.IPProtocol, port uint16) []byte {
	var ip gopacket.NetworkLayer
	if src.Is4() {
		ip = frametest.IPv4(src, dst, proto)
	} else {
		ip = frametest.IPv6(src, dst, proto)
	}
	var l4 interface {
		gopacket.SerializableLayer
		SetNetworkLayerForChecksum(gopacket.NetworkLayer) error
	}
	if proto == layers.IPProtocolUDP {
		l4 = &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(port)}
	} else {
		l4 = &layers.TCP{SrcPort: 40000, DstPort: layers.TCPPort(port), SYN: true, Seq: 1, Window: 1024}
	}
	_ = l4.SetNetworkLayerForChecksum(ip)
	return frametest.Serialize(t, ip.(gopacket.SerializableLayer), l4, payload)
}

func innerTCP4(t testing.TB) []byte { return inner(t, client, vip4, layers.IPProtocolTCP, 80) }
func innerTCP6(t testing.TB) []byte { return inner(t, client6, vip6, layers.IPProtocolTCP, 443) }

// plain is an untagged frame carrying the IP packet p (not a tunnel).
func plain(t testing.TB, p []byte) []byte {
	et := layers.EthernetTypeIPv4
	if p[0]>>4 == 6 {
		et = layers.EthernetTypeIPv6
	}
	return l2(t, false, et, gopacket.Payload(p))
}

// encap prepends an outer IPv4 header (balancer -> backend) of ihl words
// carrying proto, and an Ethernet header with an optional VLAN tag.
func encap(t testing.TB, inner []byte, proto layers.IPProtocol, ihl int, vlan bool) []byte {
	outer := frametest.IPv4(balancer, backend, proto)
	for range 4 * (ihl - 5) {
		outer.Options = append(outer.Options, layers.IPv4Option{OptionType: 1, OptionLength: 1})
	}
	return l2(t, vlan, layers.EthernetTypeIPv4, outer, gopacket.Payload(inner))
}

// encap6 prepends an outer IPv6 header (balancer6 -> backend6) whose next
// header is next, then the extension headers exts if any (hop-by-hop: 8
// bytes of padding; fragment: offset 0, MF set), and an Ethernet header
// with an optional VLAN tag.
func encap6(t testing.TB, inner []byte, next layers.IPProtocol, vlan bool, exts ...layers.IPProtocol) []byte {
	first := next
	if len(exts) > 0 {
		first = exts[0]
	}
	var chain []byte
	for i, typ := range exts {
		n := next
		if i+1 < len(exts) {
			n = exts[i+1]
		}
		if typ == layers.IPProtocolIPv6Fragment {
			chain = append(chain, byte(n), 0, 0, 1, 0, 0, 0, 42)
		} else {
			chain = append(chain, byte(n), 0, 1, 4, 0, 0, 0, 0) // PadN over the rest
		}
	}
	outer := frametest.IPv6(balancer6, backend6, first)
	return l2(t, vlan, layers.EthernetTypeIPv6, outer, gopacket.Payload(append(chain, inner...)))
}

// gueHdr is a GUE variant 0 header carrying proto with hlen words of
// optional fields (zeros) and the control bit if ctrl.
func gueHdr(proto byte, hlen int, ctrl bool) []byte {
	h := make([]byte, 4+4*hlen)
	h[0], h[1] = byte(hlen), proto
	if ctrl {
		h[0] |= 0x20
	}
	return h
}

// gueFrame wraps inner, preceded by the GUE header hdr (nil for variant 1),
// in UDP to port and an outer IPv4 (outer4) or IPv6 header, balancer to
// backend.
func gueFrame(t testing.TB, outer4 bool, port uint16, hdr, inner []byte, vlan bool) []byte {
	udp := &layers.UDP{SrcPort: 51234, DstPort: layers.UDPPort(port)}
	body := gopacket.Payload(append(append([]byte(nil), hdr...), inner...))
	if outer4 {
		ip := frametest.IPv4(balancer, backend, layers.IPProtocolUDP)
		_ = udp.SetNetworkLayerForChecksum(ip)
		return l2(t, vlan, layers.EthernetTypeIPv4, ip, udp, body)
	}
	ip := frametest.IPv6(balancer6, backend6, layers.IPProtocolUDP)
	_ = udp.SetNetworkLayerForChecksum(ip)
	return l2(t, vlan, layers.EthernetTypeIPv6, ip, udp, body)
}

func arp(t testing.TB) []byte {
	return l2(t, false, layers.EthernetTypeARP, &layers.ARP{
		AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: layers.ARPRequest,
		SourceHwAddress: macSrc, SourceProtAddress: client.AsSlice(),
		DstHwAddress: make([]byte, 6), DstProtAddress: backend.AsSlice(),
	})
}

// readdress returns a copy of the untagged tunnel frame f with its outer
// source and destination replaced (the IPv4 header checksum recomputed; an
// outer UDP checksum over IPv4 zeroed, over IPv6 left stale: the program
// reads neither).
func readdress(f []byte, src, dst netip.Addr) []byte {
	g := append([]byte(nil), f...)
	ip := g[14:]
	if src.Is4() {
		copy(ip[12:16], src.AsSlice())
		copy(ip[16:20], dst.AsSlice())
		ihl := int(ip[0]&0x0f) * 4
		ip[10], ip[11] = 0, 0
		var sum uint32
		for i := 0; i < ihl; i += 2 {
			sum += uint32(ip[i])<<8 | uint32(ip[i+1])
		}
		for sum > 0xffff {
			sum = sum&0xffff + sum>>16
		}
		ip[10], ip[11] = ^byte(sum>>8), ^byte(sum)
		if ip[9] == byte(layers.IPProtocolUDP) {
			ip[ihl+6], ip[ihl+7] = 0, 0
		}
		return g
	}
	copy(ip[8:24], src.AsSlice())
	copy(ip[24:40], dst.AsSlice())
	return g
}
