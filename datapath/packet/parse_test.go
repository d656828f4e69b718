package packet

import (
	"encoding/binary"
	"fmt"
	"regexp"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// expect is the Flow that Parse must return for frame, built from s. It
// knows the fixture's addresses, ports and header sizes from the spec; the
// IP length is read from the frame, and checkAgainstGopacket checks that
// against gopacket independently.
func expect(s spec, frame []byte) Flow {
	l3 := 14
	if s.vlan {
		l3 = 18
	}
	f := Flow{L3Off: uint16(l3), Family: 4, TOS: s.tos, HopLimit: 61, DF: s.df}
	l4 := l3 + 20 + 4*s.optWords
	if s.v6 {
		l4 = l3 + 40
		for i, e := range s.ext {
			l4 += extLen(i, e)
		}
		f.Family, f.DF, f.FlowLabel = 6, true, s.label
		f.IPLen = uint16(40 + int(binary.BigEndian.Uint16(frame[l3+4:])))
	} else {
		f.IPLen = binary.BigEndian.Uint16(frame[l3+2:])
	}
	f.L4Off = uint16(l4)
	sport, dport := uint16(40000), uint16(80)
	f.Proto = protoTCP
	switch s.proto {
	case "udp":
		f.Proto, dport = protoUDP, 9000
	case "icmp":
		f.ICMP, f.ICMPType, f.Proto = ICMPEchoRequest, icmpEchoRequest, protoICMP
		if s.v6 {
			f.ICMPType, f.Proto = icmp6EchoRequest, protoICMPv6
		}
	case "icmperr":
		f.ICMP, f.ICMPType, f.ICMPCode = ICMPError, s.errType, s.errCode
		if s.errType == 0 {
			f.ICMPType, f.ICMPCode = icmpDestUnreach, icmpCodeFragNeeded
			if s.v6 {
				f.ICMPType, f.ICMPCode = icmp6PacketTooBig, 0
			}
		}
		f.InnerOff = uint16(l4 + 8)
		if s.errUDP {
			f.Proto, dport = protoUDP, 9000
		}
	}
	if s.proto != "icmp" {
		var ports [4]byte
		binary.BigEndian.PutUint16(ports[0:2], sport)
		binary.BigEndian.PutUint16(ports[2:4], dport)
		f.Ports, f.DstPort = le32(ports[:]), dport
	}
	if s.v6 {
		f.Src6, f.Dst6 = [16]byte(clientIP6), [16]byte(vipIP6)
	} else {
		f.Src, f.Dst = le32(clientIP), le32(vipIP)
	}
	return f
}

type parseCase struct {
	description string
	frame       []byte
	want        Reason
	flow        Flow // checked when want == OK
}

// accept is a fixture Parse must accept, with the Flow expect gives.
func accept(tb testing.TB, description string, s spec) parseCase {
	frame := build(tb, s)
	return parseCase{description, frame, OK, expect(s, frame)}
}

// acceptEdited is accept for a frame changed after building, in a way
// that must not change the Flow.
func acceptEdited(tb testing.TB, description string, s spec, e func([]byte) []byte) parseCase {
	frame := build(tb, s)
	want := expect(s, frame)
	return parseCase{description, e(frame), OK, want}
}

// reject is a fixture Parse must refuse with want.
func reject(description string, frame []byte, want Reason) parseCase {
	return parseCase{description, frame, want, Flow{}}
}

func parseCases(tb testing.TB) []parseCase {
	b := func(s spec) []byte { return build(tb, s) }
	cases := []parseCase{
		accept(tb, "tcp", spec{payload: 32}),
		accept(tb, "tcp without payload", spec{payload: 0}),
		accept(tb, "udp", spec{proto: "udp", payload: 100}),
		accept(tb, "udp padded to 60 bytes", spec{proto: "udp"}),
		accept(tb, "tcp in 802.1Q", spec{vlan: true, payload: 32}),
		accept(tb, "udp in 802.1Q", spec{vlan: true, proto: "udp", payload: 9}),
		acceptEdited(tb, "tcp in 802.1ad", spec{vlan: true, payload: 32}, func(f []byte) []byte {
			binary.BigEndian.PutUint16(f[12:14], 0x88a8)
			return f
		}),
		accept(tb, "tos and df", spec{tos: 0xb9, df: true, payload: 32}),
		acceptEdited(tb, "evil bit is ignored", spec{payload: 32}, func(f []byte) []byte {
			return setIPv4(f, 14, func(ip []byte) { ip[6] |= 0x80 })
		}),
		acceptEdited(tb, "trailing bytes past total length", spec{payload: 32}, func(f []byte) []byte { return append(f, 1, 2, 3, 4) }),

		accept(tb, "ipv6 tcp", spec{v6: true, payload: 32}),
		accept(tb, "ipv6 tcp without payload", spec{v6: true}),
		accept(tb, "ipv6 udp", spec{v6: true, proto: "udp", payload: 100}),
		accept(tb, "ipv6 udp padded to 60 bytes", spec{v6: true, proto: "udp"}),
		accept(tb, "ipv6 in 802.1Q, traffic class and flow label", spec{v6: true, vlan: true, tos: 0xb9, label: 0xfedcb, payload: 9}),
		accept(tb, "ipv6 hop-by-hop", spec{v6: true, ext: []int{extHopByHop}, payload: 10}),
		accept(tb, "ipv6 routing", spec{v6: true, ext: []int{extRouting}, proto: "udp"}),
		accept(tb, "ipv6 destination options", spec{v6: true, ext: []int{extDstOpts}}),
		accept(tb, "ipv6 four extension headers", spec{v6: true, vlan: true, ext: []int{extHopByHop, extDstOpts, extRouting, extDstOpts}, proto: "udp", payload: 3}),
		acceptEdited(tb, "ipv6 trailing bytes past payload length", spec{v6: true, payload: 32}, func(f []byte) []byte { return append(f, 1, 2, 3, 4) }),

		accept(tb, "icmp echo request", spec{proto: "icmp", payload: 56}),
		accept(tb, "icmp echo request without data", spec{proto: "icmp", vlan: true}),
		accept(tb, "icmpv6 echo request", spec{v6: true, proto: "icmp", payload: 56}),
		accept(tb, "icmpv6 echo request after hop-by-hop", spec{v6: true, ext: []int{extHopByHop}, proto: "icmp"}),
		accept(tb, "icmp frag needed about tcp", spec{proto: "icmperr"}),
		accept(tb, "icmp frag needed about udp in 802.1Q", spec{proto: "icmperr", errUDP: true, vlan: true}),
		accept(tb, "icmp frag needed quoting ip header and 8 bytes", spec{proto: "icmperr", quote: 28}),
		accept(tb, "icmp frag needed quoting ip options", spec{proto: "icmperr", inner: &spec{optWords: 10}, quote: 68}),
		accept(tb, "icmp port unreachable", spec{proto: "icmperr", errType: icmpDestUnreach, errCode: 3, errUDP: true}),
		accept(tb, "icmp time exceeded", spec{proto: "icmperr", errType: icmpTimeExceeded}),
		accept(tb, "icmp parameter problem", spec{proto: "icmperr", errType: icmpParamProblem}),
		accept(tb, "icmp error about a first fragment", spec{proto: "icmperr", inner: &spec{mf: true}}),
		accept(tb, "icmpv6 packet too big about tcp", spec{v6: true, proto: "icmperr"}),
		accept(tb, "icmpv6 packet too big about udp in 802.1Q", spec{v6: true, proto: "icmperr", errUDP: true, vlan: true}),
		accept(tb, "icmpv6 packet too big quoting ipv6 header and 8 bytes", spec{v6: true, proto: "icmperr", quote: 48}),
		accept(tb, "icmpv6 destination unreachable", spec{v6: true, proto: "icmperr", errType: icmp6DestUnreach, errCode: 4, errUDP: true}),
		accept(tb, "icmpv6 time exceeded", spec{v6: true, proto: "icmperr", errType: icmp6TimeExceeded}),
		accept(tb, "icmpv6 parameter problem", spec{v6: true, proto: "icmperr", errType: icmp6ParamProblem, errCode: 1}),
		accept(tb, "icmpv6 error quoting extension headers", spec{v6: true, ext: []int{extDstOpts}, proto: "icmperr", inner: &spec{ext: []int{extHopByHop, extRouting}}}),

		reject("empty", nil, TruncatedEthernet),
		reject("arp", b(spec{proto: "arp"}), UnsupportedEtherType),
		reject("arp in 802.1Q", b(spec{proto: "arp", vlan: true}), UnsupportedEtherType),
		reject("qinq", b(spec{qinq: true}), StackedVLAN),
		reject("ipv6 in qinq", b(spec{v6: true, qinq: true}), StackedVLAN),
		reject("version 6 with ipv4 ethertype", setIPv4(b(spec{}), 14, func(ip []byte) { ip[0] = 0x65 }), BadIPVersion),
		reject("version 0", setIPv4(b(spec{}), 14, func(ip []byte) { ip[0] = 0x05 }), BadIPVersion),
		reject("version 4 with ipv6 ethertype", edit(b(spec{v6: true}), func(f []byte) { f[14] = 0x45 }), BadIPVersion),
		reject("ihl 0", setIPv4(b(spec{}), 14, func(ip []byte) { ip[0] = 0x40 }), BadIHL),
		reject("ihl 4", setIPv4(b(spec{}), 14, func(ip []byte) { ip[0] = 0x44 }), BadIHL),
		reject("ihl 15 beyond frame", setIPv4(b(spec{payload: 0})[:60], 14, func(ip []byte) { ip[0] = 0x4f }), TruncatedIPv4),
		reject("total length 19", setIPv4(b(spec{}), 14, func(ip []byte) { ip[2], ip[3] = 0, 19 }), BadIPLength),
		reject("total length below ihl*4", setIPv4(b(spec{optWords: 2}), 14, func(ip []byte) { ip[2], ip[3] = 0, 24 }), BadIPLength),
		reject("total length one past frame", setIPv4(b(spec{payload: 32}), 14, func(ip []byte) { ip[3]++ }), BadIPLength),
		reject("total length 65535", setIPv4(b(spec{}), 14, func(ip []byte) { ip[2], ip[3] = 0xff, 0xff }), BadIPLength),
		reject("first fragment", b(spec{mf: true}), Fragment),
		reject("middle fragment", b(spec{mf: true, fragOff: 185}), Fragment),
		reject("last fragment", b(spec{fragOff: 185}), Fragment),
		reject("last fragment with df", b(spec{fragOff: 1, df: true}), Fragment),
		reject("ipip", setIPv4(b(spec{}), 14, func(ip []byte) { ip[9] = 4 }), UnsupportedProtocol),
		reject("sctp", setIPv4(b(spec{}), 14, func(ip []byte) { ip[9] = 132 }), UnsupportedProtocol),
		reject("tcp header cut by total length", setIPv4(b(spec{}), 14, func(ip []byte) { ip[2], ip[3] = 0, 39 }), TruncatedL4),
		reject("udp header cut by total length", setIPv4(b(spec{proto: "udp"}), 14, func(ip []byte) { ip[2], ip[3] = 0, 27 }), TruncatedL4),
		reject("udp with no l4 bytes, padding would fit", setIPv4(b(spec{proto: "udp"}), 14, func(ip []byte) { ip[2], ip[3] = 0, 20 }), TruncatedL4),

		reject("ipv6 header cut", b(spec{v6: true})[:14+39], TruncatedIPv6),
		reject("ipv6 payload length one past frame", edit(b(spec{v6: true, payload: 32}), func(f []byte) { f[14+5]++ }), BadIPv6Length),
		reject("ipv6 payload length 65535", edit(b(spec{v6: true}), func(f []byte) { f[14+4], f[14+5] = 0xff, 0xff }), BadIPv6Length),
		reject("ipv6 payload length 0 (jumbogram)", edit(b(spec{v6: true}), func(f []byte) { f[14+4], f[14+5] = 0, 0 }), TruncatedL4),
		reject("ipv6 tcp header cut by payload length", edit(b(spec{v6: true}), func(f []byte) { f[14+5]-- }), TruncatedL4),
		reject("ipv6 udp header cut by payload length", edit(b(spec{v6: true, proto: "udp"}), func(f []byte) { f[14+5] = 7 }), TruncatedL4),
		reject("ipv6 fragment", b(spec{v6: true, ext: []int{extFragment}, mf: true}), Fragment),
		reject("ipv6 atomic fragment", b(spec{v6: true, ext: []int{extFragment}}), Fragment),
		reject("ipv6 fragment after hop-by-hop", b(spec{v6: true, ext: []int{extHopByHop, extFragment}, fragOff: 20}), Fragment),
		reject("ipv6 five extension headers", b(spec{v6: true, ext: []int{extHopByHop, extDstOpts, extRouting, extDstOpts, extDstOpts}}), TooManyExtHeaders),
		reject("ipv6 fragment as fifth extension header", b(spec{v6: true, ext: []int{extHopByHop, extDstOpts, extRouting, extDstOpts, extFragment}}), Fragment),
		reject("ipv6 extension header length past payload", edit(b(spec{v6: true, ext: []int{extDstOpts}}), func(f []byte) { f[14+41] = 20 }), TruncatedExtHeader),
		reject("ipv6 extension header cut by payload length", edit(b(spec{v6: true, ext: []int{extDstOpts}}), func(f []byte) { f[14+4], f[14+5] = 0, 7 }), TruncatedExtHeader),
		reject("ipv6 no next header", edit(b(spec{v6: true}), func(f []byte) { f[14+6] = 59 }), UnsupportedProtocol),
		reject("ipv6 esp", edit(b(spec{v6: true, ext: []int{extHopByHop}}), func(f []byte) { f[14+40] = 50 }), UnsupportedProtocol),
		reject("ipv6 carrying ipv4", edit(b(spec{v6: true}), func(f []byte) { f[14+6] = 4 }), UnsupportedProtocol),

		reject("icmp header cut by total length", setIPv4(b(spec{proto: "icmp"}), 14, func(ip []byte) { ip[2], ip[3] = 0, 27 }), TruncatedICMP),
		reject("icmp echo reply", setIPv4(b(spec{proto: "icmp"}), 14, func(ip []byte) { ip[20] = icmpEchoReply }), UnsupportedICMP),
		reject("icmp redirect", setIPv4(b(spec{proto: "icmp"}), 14, func(ip []byte) { ip[20] = 5 }), UnsupportedICMP),
		reject("icmp error quoting 19 bytes", b(spec{proto: "icmperr", quote: 19}), TruncatedICMP),
		reject("icmp error quoting ip header and 7 bytes", b(spec{proto: "icmperr", quote: 27}), TruncatedICMP),
		reject("icmp error quoting options and 7 bytes", b(spec{proto: "icmperr", inner: &spec{optWords: 2}, quote: 35}), TruncatedICMP),
		reject("icmp error quoting ipv6", edit(b(spec{proto: "icmperr"}), func(f []byte) { f[14+28] = 0x65 }), UnsupportedICMP),
		reject("icmp error quoting ihl 4", edit(b(spec{proto: "icmperr"}), func(f []byte) { f[14+28] = 0x44 }), UnsupportedICMP),
		reject("icmp error quoting a non-first fragment", b(spec{proto: "icmperr", inner: &spec{fragOff: 100}}), UnsupportedICMP),
		reject("icmp error quoting icmp", edit(b(spec{proto: "icmperr"}), func(f []byte) { f[14+28+9] = protoICMP }), UnsupportedICMP),
		reject("icmpv6 header cut", edit(b(spec{v6: true, proto: "icmp"}), func(f []byte) { f[14+5] = 7 }), TruncatedICMP),
		reject("icmpv6 echo reply", edit(b(spec{v6: true, proto: "icmp"}), func(f []byte) { f[14+40] = icmp6EchoReply }), UnsupportedICMP),
		reject("icmpv6 neighbor solicitation", edit(b(spec{v6: true, proto: "icmp"}), func(f []byte) { f[14+40] = 135 }), UnsupportedICMP),
		reject("icmpv6 error quoting 39 bytes", b(spec{v6: true, proto: "icmperr", quote: 39}), TruncatedICMP),
		reject("icmpv6 error quoting ipv6 header and 7 bytes", b(spec{v6: true, proto: "icmperr", quote: 47}), TruncatedICMP),
		reject("icmpv6 error quoting a cut extension header", b(spec{v6: true, proto: "icmperr", inner: &spec{ext: []int{extHopByHop, extRouting}}, quote: 40 + 8 + 23}), TruncatedICMP),
		reject("icmpv6 error quoting extension headers and 7 bytes", b(spec{v6: true, proto: "icmperr", inner: &spec{ext: []int{extHopByHop, extRouting}}, quote: 40 + 32 + 7}), TruncatedICMP),
		reject("icmpv6 error quoting a fragment", b(spec{v6: true, proto: "icmperr", inner: &spec{ext: []int{extFragment}, mf: true}}), UnsupportedICMP),
		reject("icmpv6 error quoting five extension headers", b(spec{v6: true, proto: "icmperr", inner: &spec{ext: []int{extHopByHop, extDstOpts, extRouting, extDstOpts, extDstOpts}}}), TooManyExtHeaders),
		reject("icmpv6 error quoting ipv4", edit(b(spec{v6: true, proto: "icmperr"}), func(f []byte) { f[14+48] = 0x45 }), UnsupportedICMP),
		reject("icmpv6 error quoting icmpv6", edit(b(spec{v6: true, proto: "icmperr"}), func(f []byte) { f[14+48+6] = protoICMPv6 }), UnsupportedICMP),
	}
	for words := 1; words <= 10; words++ {
		cases = append(cases,
			accept(tb, fmt.Sprintf("tcp ihl %d", 5+words), spec{optWords: words, payload: 32}),
			accept(tb, fmt.Sprintf("udp in 802.1Q ihl %d", 5+words), spec{optWords: words, vlan: true, proto: "udp"}),
		)
	}
	return cases
}

func TestParse(t *testing.T) {
	for _, c := range parseCases(t) {
		t.Run(c.description, func(t *testing.T) {
			var f Flow
			got := Parse(c.frame, &f)
			if got != c.want {
				t.Fatalf("Parse = %v, want %v", got, c.want)
			}
			if got != OK {
				return
			}
			if f != c.flow {
				t.Errorf("flow\n got %+v\nwant %+v", f, c.flow)
			}
			checkAgainstGopacket(t, c.frame, &f)
		})
	}
}

// TestParseReusedFlow checks a Flow reused across families and kinds holds
// nothing of the previous packet.
func TestParseReusedFlow(t *testing.T) {
	specs := []spec{{v6: true, proto: "icmperr", label: 7, tos: 3}, {proto: "udp"}, {v6: true, proto: "icmp"}, {proto: "icmperr"}, {v6: true}, {proto: "icmp"}, {}}
	var f Flow
	for _, s := range specs {
		frame := build(t, s)
		if r := Parse(frame, &f); r != OK {
			t.Fatalf("%+v: %v", s, r)
		}
		if want := expect(s, frame); f != want {
			t.Errorf("%+v after another packet:\n got %+v\nwant %+v", s, f, want)
		}
	}
}

func TestParseIPv4Transitional(t *testing.T) {
	for _, c := range []struct {
		s    spec
		want Reason
	}{
		{spec{}, OK}, {spec{proto: "udp", vlan: true}, OK}, {spec{v6: true}, UnsupportedProtocol},
		{spec{proto: "icmp"}, UnsupportedProtocol}, {spec{proto: "icmperr"}, UnsupportedProtocol}, {spec{mf: true}, Fragment},
	} {
		var f Flow
		if got := ParseIPv4(build(t, c.s), &f); got != c.want {
			t.Errorf("ParseIPv4(%+v) = %v, want %v", c.s, got, c.want)
		}
	}
}

// offsetIn returns where sub starts in frame, both views of one array.
func offsetIn(frame, sub []byte) int { return cap(frame) - cap(sub) }

// checkAgainstGopacket decodes frame with gopacket and compares what it
// finds with f, as an independent check of the offsets and fields.
func checkAgainstGopacket(t *testing.T, frame []byte, f *Flow) {
	t.Helper()
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.DecodeOptions{NoCopy: true, Lazy: false})
	var l4 []byte
	switch f.Family {
	case 4:
		ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip == nil {
			t.Fatalf("gopacket finds no IPv4 layer: %v", p)
		}
		if offsetIn(frame, ip.Contents) != int(f.L3Off) || int(f.L4Off-f.L3Off) != len(ip.Contents) ||
			f.IPLen != ip.Length || f.TOS != ip.TOS || f.HopLimit != ip.TTL ||
			f.DF != (ip.Flags&layers.IPv4DontFragment != 0) {
			t.Errorf("flow %+v disagrees with gopacket's %+v", f, ip)
		}
		l4 = ip.Payload
		if f.ICMP == ICMPNone && (f.Proto != uint8(ip.Protocol) || f.Src != le32(ip.SrcIP.To4()) || f.Dst != le32(ip.DstIP.To4())) {
			t.Errorf("flow %+v disagrees with gopacket's %+v", f, ip)
		}
		if f.ICMP != ICMPNone && (ip.Protocol != layers.IPProtocolICMPv4 || f.ICMPType != ip.Payload[0] || f.ICMPCode != ip.Payload[1]) {
			t.Errorf("flow %+v disagrees with gopacket's %+v", f, ip)
		}
		if f.ICMP == ICMPEchoRequest && (f.Src != le32(ip.SrcIP.To4()) || f.Dst != le32(ip.DstIP.To4())) {
			t.Errorf("flow %+v disagrees with gopacket's %+v", f, ip)
		}
	case 6:
		ip, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
		if ip == nil {
			t.Fatalf("gopacket finds no IPv6 layer: %v", p)
		}
		if offsetIn(frame, ip.Contents) != int(f.L3Off) || int(f.IPLen) != 40+int(ip.Length) ||
			f.TOS != ip.TrafficClass || f.FlowLabel != ip.FlowLabel || f.HopLimit != ip.HopLimit {
			t.Errorf("flow %+v disagrees with gopacket's %+v", f, ip)
		}
		// The upper layer is the last layer gopacket decodes that is not
		// an extension header.
		for _, l := range p.Layers() {
			switch l.LayerType() {
			case layers.LayerTypeTCP, layers.LayerTypeUDP, layers.LayerTypeICMPv6:
				if l4 == nil {
					l4 = frame[offsetIn(frame, l.LayerContents()) : int(f.L3Off)+int(f.IPLen)]
				}
			}
		}
		if l4 == nil {
			t.Fatalf("gopacket finds no upper layer: %v", p)
		}
		if f.ICMP != ICMPError && (f.Src6 != [16]byte(ip.SrcIP) || f.Dst6 != [16]byte(ip.DstIP)) {
			t.Errorf("flow %+v disagrees with gopacket's %+v", f, ip)
		}
	default:
		t.Fatalf("family %d", f.Family)
	}
	if offsetIn(frame, l4) != int(f.L4Off) || offsetIn(frame, l4)+len(l4) != int(f.L3Off)+int(f.IPLen) {
		t.Errorf("L4Off %d, IPLen %d do not frame gopacket's payload at %d, %d bytes", f.L4Off, f.IPLen, offsetIn(frame, l4), len(l4))
	}
	switch f.ICMP {
	case ICMPNone:
		if f.Ports != le32(l4) || f.DstPort != binary.BigEndian.Uint16(l4[2:4]) {
			t.Errorf("ports %08x/%d disagree with gopacket's l4 header %x", f.Ports, f.DstPort, l4[:4])
		}
	case ICMPEchoRequest:
		if f.Ports != 0 || f.DstPort != 0 {
			t.Errorf("echo request with ports %08x/%d", f.Ports, f.DstPort)
		}
	case ICMPError:
		checkQuote(t, frame, f)
	}
}

// checkQuote decodes the quoted packet of an ICMP error with gopacket and
// checks f holds its tuple turned around.
func checkQuote(t *testing.T, frame []byte, f *Flow) {
	t.Helper()
	if int(f.InnerOff) != int(f.L4Off)+8 {
		t.Errorf("InnerOff %d, L4Off %d", f.InnerOff, f.L4Off)
	}
	q := frame[f.InnerOff : int(f.L3Off)+int(f.IPLen)]
	first := layers.LayerTypeIPv4
	if f.Family == 6 {
		first = layers.LayerTypeIPv6
	}
	p := gopacket.NewPacket(q, first, gopacket.DecodeOptions{NoCopy: true})
	var src, dst []byte
	switch ip := p.Layer(first).(type) {
	case *layers.IPv4:
		src, dst = ip.SrcIP.To4(), ip.DstIP.To4()
		if f.Src != le32(dst) || f.Dst != le32(src) {
			t.Errorf("addresses %08x -> %08x, quote has %v -> %v", f.Src, f.Dst, ip.SrcIP, ip.DstIP)
		}
	case *layers.IPv6:
		src, dst = ip.SrcIP, ip.DstIP
		if f.Src6 != [16]byte(dst) || f.Dst6 != [16]byte(src) {
			t.Errorf("addresses %x -> %x, quote has %v -> %v", f.Src6, f.Dst6, ip.SrcIP, ip.DstIP)
		}
	default:
		t.Fatalf("gopacket cannot decode the quote: %v", p)
	}
	// The quoted upper-layer header starts after the last IP or IPv6
	// extension header gopacket decodes (a quote of 8 bytes is too short
	// for its TCP layer).
	var rest []byte
	for _, l := range p.Layers() {
		switch l.LayerType() {
		case layers.LayerTypeIPv4, layers.LayerTypeIPv6, layers.LayerTypeIPv6HopByHop,
			layers.LayerTypeIPv6Routing, layers.LayerTypeIPv6Destination:
			rest = l.LayerPayload()
		}
	}
	if len(rest) < 8 {
		t.Fatalf("gopacket finds %d bytes after the quoted headers: %v", len(rest), p)
	}
	sport, dport := binary.BigEndian.Uint16(rest[0:2]), binary.BigEndian.Uint16(rest[2:4])
	var ports [4]byte
	binary.BigEndian.PutUint16(ports[0:2], dport)
	binary.BigEndian.PutUint16(ports[2:4], sport)
	if f.Ports != le32(ports[:]) || f.DstPort != sport {
		t.Errorf("ports %08x/%d, quote has %d -> %d", f.Ports, f.DstPort, sport, dport)
	}
}

func TestReasonString(t *testing.T) {
	snake := regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)
	seen := map[string]Reason{}
	for r := Reason(0); r < NumReasons; r++ {
		s := r.String()
		if !snake.MatchString(s) {
			t.Errorf("Reason(%d).String() = %q, not snake_case", r, s)
		}
		if prev, dup := seen[s]; dup {
			t.Errorf("Reason(%d) and Reason(%d) are both %q", prev, r, s)
		}
		seen[s] = r
	}
	if OK.String() != "ok" || TruncatedEthernet.String() != "truncated_ethernet" || UnsupportedICMP.String() != "unsupported_icmp" {
		t.Errorf("names moved: %q %q %q", OK, TruncatedEthernet, UnsupportedICMP)
	}
	if s := NumReasons.String(); s != "invalid_reason" {
		t.Errorf("NumReasons.String() = %q", s)
	}
	if s := Reason(255).String(); s != "invalid_reason" {
		t.Errorf("Reason(255).String() = %q", s)
	}
}

// truncSpecs are the frames the truncation tests cut: every header kind,
// both families, with options, extension headers and quotes.
var truncSpecs = []spec{
	{}, {payload: 32}, {proto: "udp"}, {proto: "udp", payload: 40}, {vlan: true},
	{vlan: true, optWords: 3, proto: "udp", payload: 40}, {optWords: 10},
	{v6: true}, {v6: true, proto: "udp", payload: 9}, {v6: true, vlan: true, ext: []int{extHopByHop, extRouting, extDstOpts, extDstOpts}},
	{proto: "icmp", payload: 8}, {v6: true, proto: "icmp", ext: []int{extDstOpts}},
	{proto: "icmperr", inner: &spec{optWords: 2}}, {proto: "icmperr", errUDP: true, vlan: true},
	{v6: true, proto: "icmperr"}, {v6: true, proto: "icmperr", ext: []int{extHopByHop}, inner: &spec{ext: []int{extDstOpts, extRouting}}},
}

// TestParsePrefixes cuts valid frames at every length, from 0 to the full
// frame, and checks each prefix gets the reason of the header it cuts. The
// IP length field still claims the full packet, so a cut past the fixed IP
// header is a bad length, and a cut in the Ethernet padding is fine.
func TestParsePrefixes(t *testing.T) {
	for _, s := range truncSpecs {
		full := build(t, s)
		l3 := 14
		if s.vlan {
			l3 = 18
		}
		hdr, trunc, badLen := 20+4*s.optWords, TruncatedIPv4, BadIPLength
		ipTotal := int(binary.BigEndian.Uint16(full[l3+2 : l3+4]))
		if s.v6 {
			hdr, trunc, badLen = 40, TruncatedIPv6, BadIPv6Length
			ipTotal = 40 + int(binary.BigEndian.Uint16(full[l3+4:l3+6]))
		}
		for n := 0; n <= len(full); n++ {
			frame := full[:n:n]
			var wantR Reason
			switch {
			case n < 14:
				wantR = TruncatedEthernet
			case n < l3:
				wantR = TruncatedVLAN
			case n < l3+hdr:
				wantR = trunc
			case n < l3+ipTotal:
				wantR = badLen
			default:
				wantR = OK
			}
			var f Flow
			if got := Parse(frame, &f); got != wantR {
				t.Errorf("%+v cut to %d of %d bytes: %v, want %v", s, n, len(full), got, wantR)
			}
		}
	}
}

// setIPLen sets the IPv4 total length or IPv6 payload length of frame to
// say the IP packet is total bytes long.
func setIPLen(frame []byte, l3 int, v6 bool, total int) {
	if v6 {
		binary.BigEndian.PutUint16(frame[l3+4:], uint16(total-40))
		return
	}
	setIPv4(frame, l3, func(ip []byte) { binary.BigEndian.PutUint16(ip[2:4], uint16(total)) })
}

// TestParseShortPackets shrinks the IP packet itself, length field and
// frame together, through every header after the fixed IP header: IPv6
// extension headers, the TCP/UDP header, the ICMP header, and an ICMP
// error's quoted IP header, extension headers and 8 bytes. Each length
// gets the reason of the first header it cuts, whether or not Ethernet
// padding follows.
func TestParseShortPackets(t *testing.T) {
	for _, s := range truncSpecs {
		full := build(t, s)
		var want Flow
		if r := Parse(full, &want); r != OK {
			t.Fatalf("%+v: %v", s, r)
		}
		l3, l4 := int(want.L3Off), int(want.L4Off)-int(want.L3Off)
		hdr := 20 + 4*s.optWords
		// ends are the IP-relative offsets where each later header ends,
		// with the reason for a packet shorter than that.
		type end struct {
			at int
			r  Reason
		}
		var ends []end
		if s.v6 {
			hdr = 40
			at := 40
			for i, e := range s.ext {
				at += extLen(i, e)
				ends = append(ends, end{at, TruncatedExtHeader})
			}
		}
		switch s.proto {
		case "udp":
			ends = append(ends, end{l4 + 8, TruncatedL4})
		case "icmp":
			ends = append(ends, end{l4 + 8, TruncatedICMP})
		case "icmperr":
			q := 20 + 4*s.inner.optWordsOrZero()
			if s.v6 {
				q = 40
				for i, e := range s.inner.extOrNil() {
					q += extLen(i, e)
				}
			}
			ends = append(ends, end{l4 + 8 + q + 8, TruncatedICMP})
		default:
			ends = append(ends, end{l4 + 20, TruncatedL4})
		}
		for total := hdr; total <= ends[len(ends)-1].at; total++ {
			wantR := OK
			for _, e := range ends {
				if total < e.at {
					wantR = e.r
					break
				}
			}
			for _, pad := range []int{0, 20} {
				frame := append([]byte(nil), full[:l3+total]...)
				frame = append(frame, make([]byte, pad)...)
				setIPLen(frame, l3, s.v6, total)
				var f Flow
				if got := Parse(frame, &f); got != wantR {
					t.Errorf("%+v IP length %d, %d bytes of padding: %v, want %v", s, total, pad, got, wantR)
				}
				if wantR == OK && (int(f.IPLen) != total || f.L4Off != want.L4Off || f.Ports != want.Ports) {
					t.Errorf("%+v IP length %d: flow %+v", s, total, f)
				}
			}
		}
	}
}

func (s *spec) optWordsOrZero() int {
	if s == nil {
		return 0
	}
	return s.optWords
}

func (s *spec) extOrNil() []int {
	if s == nil {
		return nil
	}
	return s.ext
}
