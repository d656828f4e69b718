package packet

import (
	"encoding/binary"
	"fmt"
	"regexp"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// want builds the Flow a fixture from build should parse to.
func want(l3, ihl, ipLen int, proto uint8, tos uint8, df bool, dport uint16) Flow {
	ports := make([]byte, 4)
	binary.BigEndian.PutUint16(ports[0:2], 40000)
	binary.BigEndian.PutUint16(ports[2:4], dport)
	return Flow{
		L3Off: uint16(l3), L4Off: uint16(l3 + ihl), IPLen: uint16(ipLen),
		Proto: proto, TOS: tos, DF: df,
		Src: le32(clientIP), Dst: le32(vipIP), Ports: le32(ports), DstPort: dport,
	}
}

type parseCase struct {
	description string
	frame       []byte
	want        Reason
	flow        Flow // checked when want == OK
}

func parseCases(tb testing.TB) []parseCase {
	cases := []parseCase{
		{"tcp", build(tb, spec{payload: 32}), OK, want(14, 20, 72, 6, 0, false, 80)},
		{"tcp without payload", build(tb, spec{payload: 0}), OK, want(14, 20, 40, 6, 0, false, 80)},
		{"udp", build(tb, spec{proto: "udp", payload: 100}), OK, want(14, 20, 128, 17, 0, false, 9000)},
		{"udp padded to 60 bytes", build(tb, spec{proto: "udp"}), OK, want(14, 20, 28, 17, 0, false, 9000)},
		{"tcp in 802.1Q", build(tb, spec{vlan: true, payload: 32}), OK, want(18, 20, 72, 6, 0, false, 80)},
		{"udp in 802.1Q", build(tb, spec{vlan: true, proto: "udp", payload: 9}), OK, want(18, 20, 37, 17, 0, false, 9000)},
		{"tcp in 802.1ad", func() []byte {
			f := build(tb, spec{vlan: true, payload: 32})
			binary.BigEndian.PutUint16(f[12:14], 0x88a8)
			return f
		}(), OK, want(18, 20, 72, 6, 0, false, 80)},
		{"tos and df", build(tb, spec{tos: 0xb9, df: true, payload: 32}), OK, want(14, 20, 72, 6, 0xb9, true, 80)},
		{"evil bit is ignored", setIPv4(build(tb, spec{payload: 32}), 14, func(ip []byte) { ip[6] |= 0x80 }), OK, want(14, 20, 72, 6, 0, false, 80)},
		{"trailing bytes past total length", append(build(tb, spec{payload: 32}), 1, 2, 3, 4), OK, want(14, 20, 72, 6, 0, false, 80)},

		{"empty", nil, TruncatedEthernet, Flow{}},
		{"arp", build(tb, spec{proto: "arp"}), UnsupportedEtherType, Flow{}},
		{"arp in 802.1Q", build(tb, spec{proto: "arp", vlan: true}), UnsupportedEtherType, Flow{}},
		{"ipv6", build(tb, spec{proto: "ipv6"}), IPv6, Flow{}},
		{"ipv6 in 802.1Q", build(tb, spec{proto: "ipv6", vlan: true}), IPv6, Flow{}},
		{"qinq", build(tb, spec{qinq: true}), StackedVLAN, Flow{}},
		{"version 6 with ipv4 ethertype", setIPv4(build(tb, spec{}), 14, func(ip []byte) { ip[0] = 0x65 }), BadIPVersion, Flow{}},
		{"version 0", setIPv4(build(tb, spec{}), 14, func(ip []byte) { ip[0] = 0x05 }), BadIPVersion, Flow{}},
		{"ihl 0", setIPv4(build(tb, spec{}), 14, func(ip []byte) { ip[0] = 0x40 }), BadIHL, Flow{}},
		{"ihl 4", setIPv4(build(tb, spec{}), 14, func(ip []byte) { ip[0] = 0x44 }), BadIHL, Flow{}},
		{"ihl 15 beyond frame", setIPv4(build(tb, spec{payload: 0})[:60], 14, func(ip []byte) { ip[0] = 0x4f }), TruncatedIPv4, Flow{}},
		{"total length 19", setIPv4(build(tb, spec{}), 14, func(ip []byte) { ip[2], ip[3] = 0, 19 }), BadIPLength, Flow{}},
		{"total length below ihl*4", setIPv4(build(tb, spec{optWords: 2}), 14, func(ip []byte) { ip[2], ip[3] = 0, 24 }), BadIPLength, Flow{}},
		{"total length one past frame", setIPv4(build(tb, spec{payload: 32}), 14, func(ip []byte) { ip[3]++ }), BadIPLength, Flow{}},
		{"total length 65535", setIPv4(build(tb, spec{}), 14, func(ip []byte) { ip[2], ip[3] = 0xff, 0xff }), BadIPLength, Flow{}},
		{"first fragment", build(tb, spec{mf: true}), Fragment, Flow{}},
		{"middle fragment", build(tb, spec{mf: true, fragOff: 185}), Fragment, Flow{}},
		{"last fragment", build(tb, spec{fragOff: 185}), Fragment, Flow{}},
		{"last fragment with df", build(tb, spec{fragOff: 1, df: true}), Fragment, Flow{}},
		{"icmp", build(tb, spec{proto: "icmp"}), UnsupportedProtocol, Flow{}},
		{"ipip", setIPv4(build(tb, spec{}), 14, func(ip []byte) { ip[9] = 4 }), UnsupportedProtocol, Flow{}},
		{"tcp header cut by total length", setIPv4(build(tb, spec{}), 14, func(ip []byte) { ip[2], ip[3] = 0, 39 }), TruncatedL4, Flow{}},
		{"udp header cut by total length", setIPv4(build(tb, spec{proto: "udp"}), 14, func(ip []byte) { ip[2], ip[3] = 0, 27 }), TruncatedL4, Flow{}},
		{"udp with no l4 bytes, padding would fit", setIPv4(build(tb, spec{proto: "udp"}), 14, func(ip []byte) { ip[2], ip[3] = 0, 20 }), TruncatedL4, Flow{}},
	}
	for words := 1; words <= 10; words++ {
		ihl := 20 + 4*words
		cases = append(cases,
			parseCase{fmt.Sprintf("tcp ihl %d", 5+words), build(tb, spec{optWords: words, payload: 32}), OK, want(14, ihl, ihl+52, 6, 0, false, 80)},
			parseCase{fmt.Sprintf("udp in 802.1Q ihl %d", 5+words), build(tb, spec{optWords: words, vlan: true, proto: "udp"}), OK, want(18, ihl, ihl+8, 17, 0, false, 9000)},
		)
	}
	return cases
}

func TestParseIPv4(t *testing.T) {
	for _, c := range parseCases(t) {
		t.Run(c.description, func(t *testing.T) {
			var f Flow
			got := ParseIPv4(c.frame, &f)
			if got != c.want {
				t.Fatalf("ParseIPv4 = %v, want %v", got, c.want)
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

// checkAgainstGopacket decodes frame with gopacket and compares what it
// finds with f, as an independent check of the offsets.
func checkAgainstGopacket(t *testing.T, frame []byte, f *Flow) {
	t.Helper()
	p := gopacket.NewPacket(frame, layers.LayerTypeEthernet, gopacket.Default)
	ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip == nil {
		t.Fatalf("gopacket finds no IPv4 layer: %v", p)
	}
	if int(f.L4Off-f.L3Off) != len(ip.LayerContents()) || f.IPLen != ip.Length || f.TOS != ip.TOS ||
		f.DF != (ip.Flags&layers.IPv4DontFragment != 0) || f.Proto != uint8(ip.Protocol) ||
		f.Src != le32(ip.SrcIP.To4()) || f.Dst != le32(ip.DstIP.To4()) {
		t.Errorf("flow %+v disagrees with gopacket's %+v", f, ip)
	}
	l4 := ip.LayerPayload()
	if f.Ports != le32(l4) || f.DstPort != binary.BigEndian.Uint16(l4[2:4]) {
		t.Errorf("ports %08x/%d disagree with gopacket's l4 header %x", f.Ports, f.DstPort, l4[:4])
	}
	if string(frame[f.L4Off:int(f.L3Off)+int(f.IPLen)]) != string(l4) {
		t.Errorf("L4Off %d does not point at gopacket's IPv4 payload", f.L4Off)
	}
}

// TestParseIPv4Prefixes cuts valid frames at every length, from 0 to the
// full frame, and checks each prefix gets the reason of the header it cuts.
// The IP total length still claims the full packet, so a cut past the IP
// header is a bad total length, and a cut in the Ethernet padding is fine.
func TestParseIPv4Prefixes(t *testing.T) {
	for _, s := range []spec{{}, {payload: 32}, {proto: "udp"}, {proto: "udp", payload: 40}, {vlan: true}, {vlan: true, optWords: 3, proto: "udp", payload: 40}, {optWords: 10}} {
		full := build(t, s)
		l3 := 14
		if s.vlan {
			l3 = 18
		}
		ihl := 20 + 4*s.optWords
		ipTotal := int(binary.BigEndian.Uint16(full[l3+2 : l3+4]))
		for n := 0; n <= len(full); n++ {
			frame := full[:n:n]
			var wantR Reason
			switch {
			case n < 14:
				wantR = TruncatedEthernet
			case n < l3:
				wantR = TruncatedVLAN
			case n < l3+ihl:
				wantR = TruncatedIPv4
			case n < l3+ipTotal:
				wantR = BadIPLength
			default:
				wantR = OK
			}
			var f Flow
			if got := ParseIPv4(frame, &f); got != wantR {
				t.Errorf("%+v cut to %d of %d bytes: %v, want %v", s, n, len(full), got, wantR)
			}
		}
	}
}

// TestParseIPv4ShortPackets shrinks the IP packet itself, total length and
// frame together, through the L4 header: an IP packet too short for its
// TCP or UDP header is TruncatedL4, even when the frame is longer.
func TestParseIPv4ShortPackets(t *testing.T) {
	for _, s := range []spec{{}, {proto: "udp"}, {vlan: true, optWords: 4}, {vlan: true, proto: "udp", optWords: 1}} {
		full := build(t, s)
		l3 := 14
		if s.vlan {
			l3 = 18
		}
		ihl := 20 + 4*s.optWords
		need := 20
		if s.proto == "udp" {
			need = 8
		}
		for total := ihl; total <= ihl+need; total++ {
			for _, pad := range []int{0, 20} {
				frame := append([]byte(nil), full[:l3+total]...)
				frame = append(frame, make([]byte, pad)...)
				setIPv4(frame, l3, func(ip []byte) { binary.BigEndian.PutUint16(ip[2:4], uint16(total)) })
				wantR := TruncatedL4
				if total == ihl+need {
					wantR = OK
				}
				var f Flow
				if got := ParseIPv4(frame, &f); got != wantR {
					t.Errorf("%+v total length %d, %d bytes of padding: %v, want %v", s, total, pad, got, wantR)
				}
				if wantR == OK && (int(f.IPLen) != total || int(f.L4Off) != l3+ihl) {
					t.Errorf("%+v total length %d: flow %+v", s, total, f)
				}
			}
		}
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
	if OK.String() != "ok" || TruncatedEthernet.String() != "truncated_ethernet" {
		t.Errorf("names moved: %q %q", OK, TruncatedEthernet)
	}
	if s := NumReasons.String(); s != "invalid_reason" {
		t.Errorf("NumReasons.String() = %q", s)
	}
	if s := Reason(255).String(); s != "invalid_reason" {
		t.Errorf("Reason(255).String() = %q", s)
	}
}
