package splice

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/internal/frametest"
)

// Test addresses (198.18.0.0/15, 2001:db8::/32): the client connection is
// client <-> VIP, the backend connection LB <-> backend.
var (
	client4  = netip.MustParseAddrPort("198.18.1.1:40000")
	vip4     = netip.MustParseAddrPort("198.18.0.10:443")
	lb4      = netip.MustParseAddrPort("198.18.0.1:50000")
	backend4 = netip.MustParseAddrPort("198.18.2.2:443")
	client6  = netip.MustParseAddrPort("[2001:db8:1::1]:40000")
	vip6     = netip.MustParseAddrPort("[2001:db8::10]:443")
	lb6      = netip.MustParseAddrPort("[2001:db8::1]:50000")
	backend6 = netip.MustParseAddrPort("[2001:db8:2::2]:443")

	macClient  = [6]byte{2, 0, 0, 0, 0, 1}
	macLB      = [6]byte{2, 0, 0, 0, 0, 2}
	macBackend = [6]byte{2, 0, 0, 0, 0, 3}
)

// testPair is a pair whose backend sequence numbers wrap around 2^32
// soon after the splice; ifindex 1 (lo, the ingress interface of
// BPF_PROG_TEST_RUN) toward the backend, 2 toward the client.
func testPair(v6 bool) Pair {
	c, v, l, b := client4, vip4, lb4, backend4
	if v6 {
		c, v, l, b = client6, vip6, lb6, backend6
	}
	return Pair{
		Client: Side{Local: v, Remote: c, SndNxt: 1_000_000, RcvNxt: 5_000, SndWscale: 7, RcvWscale: 7,
			SACK: true, Timestamps: true, TSClock: 100_000},
		Backend: Side{Local: l, Remote: b, SndNxt: 0xffff_fff0, RcvNxt: 77, SndWscale: 7, RcvWscale: 7,
			SACK: true, Timestamps: true, TSClock: 900},
		ToClient:  Hop{Ifindex: 2, Src: macLB, Dst: macClient},
		ToBackend: Hop{Ifindex: 1, Src: macLB, Dst: macBackend},
	}
}

// seg is a TCP segment to build as a frame.
type seg struct {
	src, dst      netip.AddrPort
	seq, ack      uint32
	ackf, fin     bool
	rst           bool
	window        uint16
	ttl           uint8 // 0: 64
	opts          []layers.TCPOption
	raw           []byte // option bytes, used as they are (a multiple of 4 long)
	payload       []byte
	ipv4HeaderOpt bool // an IPv4 header with options (IHL 6)
	vlan          bool
}

func (s seg) frame(t testing.TB) []byte {
	t.Helper()
	et := layers.EthernetTypeIPv4
	if s.src.Addr().Is6() {
		et = layers.EthernetTypeIPv6
	}
	ls := []gopacket.SerializableLayer{}
	e := &layers.Ethernet{SrcMAC: net.HardwareAddr(macClient[:]), DstMAC: net.HardwareAddr(macLB[:]), EthernetType: et}
	if s.vlan {
		e.EthernetType = layers.EthernetTypeDot1Q
		ls = append(ls, e, &layers.Dot1Q{VLANIdentifier: 7, Type: et})
	} else {
		ls = append(ls, e)
	}
	ttl := s.ttl
	if ttl == 0 {
		ttl = 64
	}
	var nl gopacket.NetworkLayer
	if et == layers.EthernetTypeIPv4 {
		ip := &layers.IPv4{Version: 4, TTL: ttl, Protocol: layers.IPProtocolTCP, Flags: layers.IPv4DontFragment,
			SrcIP: s.src.Addr().AsSlice(), DstIP: s.dst.Addr().AsSlice()}
		if s.ipv4HeaderOpt {
			ip.Options = []layers.IPv4Option{{OptionType: 1, OptionLength: 1}, {OptionType: 1, OptionLength: 1},
				{OptionType: 1, OptionLength: 1}, {OptionType: 1, OptionLength: 1}}
		}
		nl = ip
	} else {
		nl = &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: layers.IPProtocolTCP,
			SrcIP: s.src.Addr().AsSlice(), DstIP: s.dst.Addr().AsSlice()}
	}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(s.src.Port()), DstPort: layers.TCPPort(s.dst.Port()),
		Seq: s.seq, Ack: s.ack, ACK: s.ackf, FIN: s.fin, RST: s.rst, PSH: len(s.payload) > 0,
		Window: s.window, Options: s.opts}
	_ = tcp.SetNetworkLayerForChecksum(nl)
	pl := append(append([]byte(nil), s.raw...), s.payload...)
	ls = append(ls, nl.(gopacket.SerializableLayer), tcp, gopacket.Payload(pl))
	f := frametest.Serialize(t, ls...)
	if len(s.raw) > 0 {
		// The raw options become header: a larger data offset, and the
		// checksum summed again by hand.
		_, _, l4, ok := headers(f)
		if !ok {
			t.Fatal("built a frame headers() rejects")
		}
		f[l4+12] = byte(5+len(s.raw)/4) << 4
		fixTCPChecksum(f)
	}
	return f
}

// fixTCPChecksum recomputes the TCP checksum of a frame headers() accepts.
func fixTCPChecksum(f []byte) {
	l3, family, l4, _ := headers(f)
	// Up to the IP length: gopacket pads a frame to 60 bytes.
	n := int(binary.BigEndian.Uint16(f[l3+2:])) - (l4 - l3)
	if family == 6 {
		n = int(binary.BigEndian.Uint16(f[l3+4:])) - (l4 - l3 - 40)
	}
	seg := f[l4 : l4+n]
	var s uint32
	add := func(b []byte) {
		for i := 0; i+1 < len(b); i += 2 {
			s += uint32(binary.BigEndian.Uint16(b[i:]))
		}
		if len(b)%2 == 1 {
			s += uint32(b[len(b)-1]) << 8
		}
	}
	if family == 4 {
		add(f[l3+12 : l3+20])
	} else {
		add(f[l3+8 : l3+40])
	}
	s += 6 + uint32(len(seg))
	binary.BigEndian.PutUint16(seg[16:], 0)
	add(seg)
	binary.BigEndian.PutUint16(seg[16:], ^uint16(fold16(fold16(s))))
}

// ts is a timestamps option, sack a SACK option of (left, right) edges.
func ts(val, ecr uint32) layers.TCPOption {
	d := make([]byte, 8)
	binary.BigEndian.PutUint32(d, val)
	binary.BigEndian.PutUint32(d[4:], ecr)
	return layers.TCPOption{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: d}
}

func sack(edges ...uint32) layers.TCPOption {
	d := make([]byte, 4*len(edges))
	for i, e := range edges {
		binary.BigEndian.PutUint32(d[4*i:], e)
	}
	return layers.TCPOption{OptionType: layers.TCPOptionKindSACK, OptionLength: uint8(2 + len(d)), OptionData: d}
}

var nop = layers.TCPOption{OptionType: layers.TCPOptionKindNop, OptionLength: 1}

// decoded is what the tests check of a rewritten frame.
type decoded struct {
	eth  *layers.Ethernet
	ip4  *layers.IPv4
	ip6  *layers.IPv6
	tcp  *layers.TCP
	sack []uint32 // the SACK option's edges; nil: none
	ts   []uint32 // TSval, TSecr; nil: none
}

// decode parses f with gopacket and fails the test unless the IPv4 header
// and TCP checksums are valid.
func decode(t testing.TB, f []byte) decoded {
	t.Helper()
	p := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
	var d decoded
	d.eth, _ = p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	d.ip4, _ = p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	d.ip6, _ = p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	d.tcp, _ = p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if d.tcp == nil || (d.ip4 == nil) == (d.ip6 == nil) {
		t.Fatalf("not a TCP frame: %v", p)
	}
	if d.ip4 != nil {
		_ = d.tcp.SetNetworkLayerForChecksum(d.ip4)
		if c := ipChecksum(d.ip4.Contents); c != 0 {
			t.Errorf("IPv4 header checksum invalid (sum %#x)", c)
		}
	} else {
		_ = d.tcp.SetNetworkLayerForChecksum(d.ip6)
	}
	if c, err := d.tcp.ComputeChecksum(); err != nil || c != 0 {
		t.Errorf("TCP checksum invalid (%#x, %v)", c, err)
	}
	for _, o := range d.tcp.Options {
		switch o.OptionType {
		case layers.TCPOptionKindSACK:
			for i := 0; i+4 <= len(o.OptionData); i += 4 {
				d.sack = append(d.sack, binary.BigEndian.Uint32(o.OptionData[i:]))
			}
		case layers.TCPOptionKindTimestamps:
			if len(o.OptionData) != 8 {
				continue
			}
			d.ts = []uint32{binary.BigEndian.Uint32(o.OptionData), binary.BigEndian.Uint32(o.OptionData[4:])}
		}
	}
	return d
}

func ipChecksum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	return ^uint16(fold16(fold16(s)))
}

func netipPort(ap netip.AddrPort, port uint16) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr(), port)
}
