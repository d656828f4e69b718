package packet

import (
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/internal/benchpair"
)

func BenchmarkParse(b *testing.B) {
	for _, bf := range []struct {
		name string
		s    spec
	}{
		{"tcp", spec{payload: 64}},
		{"vlan_options_udp", spec{vlan: true, optWords: 3, proto: "udp", payload: 64}},
		{"ipv6_tcp", spec{v6: true, payload: 64}},
		{"ipv6_vlan_ext_udp", spec{v6: true, vlan: true, ext: []int{extHopByHop, extDstOpts}, proto: "udp", payload: 64}},
		{"icmp_error", spec{proto: "icmperr"}},
		{"icmpv6_error", spec{v6: true, proto: "icmperr"}},
	} {
		b.Run(bf.name, func(b *testing.B) {
			frame := build(b, bf.s)
			b.ReportAllocs()
			for b.Loop() {
				sinkReason = Parse(frame, &sinkFlow)
			}
			if sinkReason != OK {
				b.Fatal(sinkReason)
			}
			benchpair.ReportMpps(b)
		})
	}
}

// fwdModes are the forwarding modes the per-packet benchmarks compare:
// the encapsulation (encapModes by name, or "dsr") and the inner family.
var fwdModes = []struct {
	name, mode string
	v6         bool
}{
	{"ipip", "ipip", false},
	{"ip6ip6", "ipip6", true},
	{"4in6", "ipip6", false},
	{"gue4", "gue4", false},
	{"gue6", "gue6", true},
	{"dsr", "dsr", false},
}

// fwdSizes are the client packets: a small one and a full-size one, where
// GUE over IPv6 pays for its checksum pass.
var fwdSizes = []struct {
	name    string
	payload int
}{{"64B", 64}, {"1400B", 1400}}

// xlbStep returns one per-packet rewrite the worker's way: parse, then
// rewrite in place.
func xlbStep(b *testing.B, mode string, frame []byte) func() {
	buf := place(frame, testHeadroom, 0)
	var m *encapMode
	for i := range encapModes {
		if encapModes[i].name == mode {
			m = &encapModes[i]
		}
	}
	return func() {
		// Restore the L2 header the previous call overwrote, as a fresh
		// received frame would have it.
		copy(buf[testHeadroom:testHeadroom+18], frame)
		var f Flow
		if r := Parse(buf[testHeadroom:testHeadroom+len(frame)], &f); r != OK {
			b.Fatal(r)
		}
		var off, n int
		var ok bool
		if m == nil {
			off, n, ok = RewriteDSR(buf, testHeadroom, len(frame), &f, lbMACArr, nextMAC)
		} else {
			off, n, ok = m.run(buf, testHeadroom, len(frame), &f, 9000)
		}
		if !ok {
			b.Fatal("refused")
		}
		sinkInt += off + n
	}
}

// gopacketStep returns the same rewrite done the usual gopacket way, as
// cheaply as gopacket allows: a preallocated DecodingLayerParser, then
// SerializeLayers into a reused buffer (which copies the inner packet and,
// for GUE over IPv6, sums it for the UDP checksum as xlb does).
func gopacketStep(b *testing.B, mode string, frame []byte) func() {
	step, _ := gopacketStepOut(b, mode, frame)
	return step
}

// baselineFrame runs the gopacket baseline once and returns its frame.
func baselineFrame(tb testing.TB, mode string, frame []byte) []byte {
	step, sb := gopacketStepOut(tb, mode, frame)
	step()
	return append([]byte(nil), sb.Bytes()...)
}

// gopacketStepOut is gopacketStep that also returns the buffer the step
// serializes into.
func gopacketStepOut(b testing.TB, mode string, frame []byte) (func(), gopacket.SerializeBuffer) {
	var (
		eth     layers.Ethernet
		dot1q   layers.Dot1Q
		ip4     layers.IPv4
		ip6     layers.IPv6
		tcp     layers.TCP
		udp     layers.UDP
		payload gopacket.Payload
	)
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &dot1q, &ip4, &ip6, &tcp, &udp, &payload)
	decoded := make([]gopacket.LayerType, 0, 8)
	outEth := layers.Ethernet{SrcMAC: net.HardwareAddr(lbMACArr[:]), DstMAC: net.HardwareAddr(nextMAC[:])}
	out4 := layers.IPv4{Version: 4, TTL: 64, Id: testID, SrcIP: net.IP(lbIP[:]), DstIP: net.IP(backendIP[:])}
	out6 := layers.IPv6{Version: 6, HopLimit: 64, FlowLabel: testFlowHash & 0xfffff, SrcIP: net.IP(lbIP6[:]), DstIP: net.IP(backendIP6[:])}
	outUDP := layers.UDP{SrcPort: layers.UDPPort(guePort(testFlowHash)), DstPort: testGUEPort}
	_ = outUDP.SetNetworkLayerForChecksum(&out6)
	gue := gopacket.Payload{0, 4, 0, 0}
	sb := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	ls := make([]gopacket.SerializableLayer, 0, 8)
	return func() {
		if err := parser.DecodeLayers(frame, &decoded); err != nil {
			b.Fatal(err)
		}
		var inner gopacket.Payload
		var innerProto layers.IPProtocol
		var tos uint8
		for _, lt := range decoded {
			switch lt {
			case layers.LayerTypeIPv4:
				if ip4.Flags&layers.IPv4MoreFragments != 0 || ip4.FragOffset != 0 {
					b.Fatal("fragment")
				}
				inner = frame[len(frame)-len(ip4.Contents)-len(ip4.Payload):]
				innerProto, tos = layers.IPProtocolIPv4, ip4.TOS
				out4.Flags = ip4.Flags & layers.IPv4DontFragment
			case layers.LayerTypeIPv6:
				inner = frame[len(frame)-len(ip6.Contents)-len(ip6.Payload):]
				innerProto, tos = layers.IPProtocolIPv6, ip6.TrafficClass
				out4.Flags = layers.IPv4DontFragment
			}
		}
		ls = append(ls[:0], &outEth)
		outer := layers.EthernetTypeIPv4
		if mode == "ipip6" || mode == "gue6" {
			outer = layers.EthernetTypeIPv6
		}
		if mode == "dsr" {
			outer = eth.EthernetType
			if len(decoded) > 1 && decoded[1] == layers.LayerTypeDot1Q {
				outer = dot1q.Type
			}
		}
		if len(decoded) > 1 && decoded[1] == layers.LayerTypeDot1Q {
			outEth.EthernetType = eth.EthernetType
			ls = append(ls, &layers.Dot1Q{Priority: dot1q.Priority, DropEligible: dot1q.DropEligible, VLANIdentifier: dot1q.VLANIdentifier, Type: outer})
		} else {
			outEth.EthernetType = outer
		}
		out4.TOS, out6.TrafficClass = tos, tos
		gue[1] = byte(innerProto)
		switch mode {
		case "ipip":
			out4.Protocol = innerProto
			ls = append(ls, &out4, inner)
		case "ipip6":
			out6.NextHeader = innerProto
			ls = append(ls, &out6, inner)
		case "gue4":
			out4.Protocol = layers.IPProtocolUDP
			_ = outUDP.SetNetworkLayerForChecksum(&out4)
			ls = append(ls, &out4, &outUDP, gue, inner)
		case "gue6":
			out6.NextHeader = layers.IPProtocolUDP
			_ = outUDP.SetNetworkLayerForChecksum(&out6)
			ls = append(ls, &out6, &outUDP, gue, inner)
		case "dsr":
			ls = append(ls, inner)
		}
		if err := gopacket.SerializeLayers(sb, opts, ls...); err != nil {
			b.Fatal(err)
		}
		sinkInt += len(sb.Bytes())
	}, sb
}

// BenchmarkForward compares the worker's per-packet rewrite in each
// forwarding mode with the same work done with gopacket (benchpair: each
// alone, and the ratio of the two interleaved, the figure to quote).
func BenchmarkForward(b *testing.B) {
	for _, fm := range fwdModes {
		for _, sz := range fwdSizes {
			frame := build(b, spec{v6: fm.v6, vlan: true, payload: sz.payload})
			name := fm.name + "/" + sz.name
			b.Run(name, func(b *testing.B) {
				benchpair.Run(b,
					func(b *testing.B) func() { return xlbStep(b, fm.mode, frame) },
					func(b *testing.B) func() { return gopacketStep(b, fm.mode, frame) })
			})
		}
	}
}

// BenchmarkICMP measures the balancer's own answers: an echo reply (the
// request restored each time) and a packet-too-big error for a full-size
// packet, built in the headroom.
func BenchmarkICMP(b *testing.B) {
	for _, v6 := range []bool{false, true} {
		fam := "ipv4"
		if v6 {
			fam = "ipv6"
		}
		b.Run("echo_reply/"+fam, func(b *testing.B) {
			frame := build(b, spec{v6: v6, proto: "icmp", payload: 56})
			buf := place(frame, testHeadroom, 0)
			b.ReportAllocs()
			for b.Loop() {
				copy(buf[testHeadroom:], frame)
				var f Flow
				Parse(buf[testHeadroom:], &f)
				off, n, ok := EchoReply(buf, testHeadroom, len(frame), &f)
				if !ok {
					b.Fatal("refused")
				}
				sinkInt += off + n
			}
			benchpair.ReportMpps(b)
		})
		b.Run("frag_needed/"+fam, func(b *testing.B) {
			frame := build(b, spec{v6: v6, df: true, payload: 1400})
			buf := place(frame, testHeadroom, 0)
			b.ReportAllocs()
			for b.Loop() {
				copy(buf[testHeadroom:testHeadroom+18], frame)
				var f Flow
				Parse(buf[testHeadroom:], &f)
				off, n, ok := FragNeeded(buf, testHeadroom, len(frame), &f, 1400)
				if !ok {
					b.Fatal("refused")
				}
				sinkInt += off + n
			}
			benchpair.ReportMpps(b)
		})
	}
}
