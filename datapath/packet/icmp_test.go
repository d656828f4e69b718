package packet

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/internal/frametest"
)

// replyL2 returns the L2 layers of a frame the balancer sends back to
// the client: from lbMAC to clientMAC, tagged like s, of EtherType et.
func replyL2(s spec, et layers.EthernetType) []gopacket.SerializableLayer {
	eth := &layers.Ethernet{SrcMAC: lbMAC, DstMAC: clientMAC, EthernetType: et}
	if !s.vlan {
		return []gopacket.SerializableLayer{eth}
	}
	eth.EthernetType = layers.EthernetTypeDot1Q
	return []gopacket.SerializableLayer{eth, &layers.Dot1Q{Priority: 5, VLANIdentifier: 100, Type: et}}
}

// wantEchoReply is the reply gopacket builds for the echo request s.
func wantEchoReply(tb testing.TB, s spec) []byte {
	payload := gopacket.Payload(make([]byte, s.payload))
	for i := range payload {
		payload[i] = byte(i*7 + 3)
	}
	if s.v6 {
		ip := &layers.IPv6{Version: 6, TrafficClass: s.tos, FlowLabel: s.label, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: vipIP6, DstIP: clientIP6}
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoReply, 0)}
		_ = icmp.SetNetworkLayerForChecksum(ip)
		return frametest.Serialize(tb, append(replyL2(s, layers.EthernetTypeIPv6), ip, icmp, &layers.ICMPv6Echo{Identifier: 0x4242, SeqNumber: 7}, payload)...)
	}
	ip := &layers.IPv4{Version: 4, TOS: s.tos, Id: 0x1234, TTL: 64, Protocol: layers.IPProtocolICMPv4, SrcIP: vipIP, DstIP: clientIP}
	if s.df {
		ip.Flags = layers.IPv4DontFragment
	}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoReply, 0), Id: 0x4242, Seq: 7}
	return frametest.Serialize(tb, append(replyL2(s, layers.EthernetTypeIPv4), ip, icmp, payload)...)
}

// samePrefix reports whether out equals want, where want may carry the
// Ethernet padding gopacket adds to a short frame and out does not.
func samePrefix(out, want []byte) bool {
	if len(out) > len(want) || !bytes.Equal(out, want[:len(out)]) {
		return false
	}
	return len(want) == len(out) || (len(want) == 60 && bytes.Count(want[len(out):], []byte{0}) == 60-len(out))
}

func TestEchoReply(t *testing.T) {
	for _, c := range []struct {
		description string
		s           spec
	}{
		{"icmp", spec{proto: "icmp", payload: 56}},
		{"icmp with padding", spec{proto: "icmp"}},
		{"icmp odd length, tos and df", spec{proto: "icmp", payload: 57, tos: 0x10, df: true}},
		{"icmp in 802.1Q", spec{proto: "icmp", vlan: true, payload: 1000}},
		{"icmpv6", spec{v6: true, proto: "icmp", payload: 56}},
		{"icmpv6 odd length, traffic class and flow label", spec{v6: true, proto: "icmp", payload: 3, tos: 0x28, label: 0xabcde}},
		{"icmpv6 in 802.1Q", spec{v6: true, proto: "icmp", vlan: true, payload: 1400}},
	} {
		t.Run(c.description, func(t *testing.T) {
			frame := build(t, c.s)
			var f Flow
			if r := Parse(frame, &f); r != OK || f.ICMP != ICMPEchoRequest {
				t.Fatalf("Parse: %v, %+v", r, f)
			}
			buf := place(frame, testHeadroom, 8)
			orig := append([]byte(nil), buf...)
			newOff, newLen, ok := EchoReply(buf, testHeadroom, len(frame), &f)
			if !ok || newOff != testHeadroom || newLen != int(f.L3Off)+int(f.IPLen) {
				t.Fatalf("EchoReply = %d, %d, %v", newOff, newLen, ok)
			}
			out := buf[newOff : newOff+newLen]
			if want := wantEchoReply(t, c.s); !samePrefix(out, want) {
				t.Errorf("reply\n got %x\nwant %x", out, want)
			}
			if !bytes.Equal(buf[:newOff], orig[:newOff]) || !bytes.Equal(buf[newOff+newLen:], orig[newOff+newLen:]) {
				t.Error("wrote outside the reply")
			}
		})
	}
}

// TestEchoReplyBadChecksum: a request whose checksum is off by some
// amount gets a reply off by the same amount.
func TestEchoReplyBadChecksum(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		frame := build(t, spec{v6: v6, proto: "icmp", payload: 20})
		var f Flow
		Parse(frame, &f)
		frame[f.L4Off+2] ^= 0x5a
		reqSum := refChecksum(frame[f.L4Off : f.L3Off+f.IPLen])
		if _, _, ok := EchoReply(frame, 0, len(frame), &f); !ok {
			t.Fatal("refused")
		}
		// The raw sum over the message (no pseudo-header) is what the
		// incremental update preserves, right or wrong.
		if got := refChecksum(frame[f.L4Off : f.L3Off+f.IPLen]); got != reqSum || (!v6 && got == 0) {
			t.Errorf("ipv6=%v: request sums to %#04x, reply to %#04x", v6, reqSum, got)
		}
	}
}

func TestEchoReplyRefuses(t *testing.T) {
	echo := build(t, spec{proto: "icmp", payload: 30})
	var fe Flow
	Parse(echo, &fe)
	for _, c := range []struct {
		description string
		frame       []byte
		f           *Flow // nil: Parse the frame
		n           int   // 0: the frame's length
	}{
		{"tcp", build(t, spec{payload: 8}), nil, 0},
		{"icmp error", build(t, spec{proto: "icmperr"}), nil, 0},
		{"ipv4 options", build(t, spec{proto: "icmp", optWords: 3}), nil, 0},
		{"ipv6 extension header", build(t, spec{v6: true, proto: "icmp", ext: []int{extHopByHop}}), nil, 0},
		{"flow of another frame", build(t, spec{payload: 8}), &fe, 0},
		{"flow of another family", build(t, spec{v6: true, proto: "icmp", payload: 40}), &fe, 0},
		{"n too short", echo, &fe, len(echo) - 1},
		{"n past the buffer", echo, &fe, len(echo) + 1},
	} {
		t.Run(c.description, func(t *testing.T) {
			f := c.f
			if f == nil {
				f = new(Flow)
				if r := Parse(c.frame, f); r != OK {
					t.Fatalf("Parse: %v", r)
				}
			}
			n := c.n
			if n == 0 {
				n = len(c.frame)
			}
			buf := append([]byte(nil), c.frame...)
			if _, _, ok := EchoReply(buf, 0, n, f); ok || !bytes.Equal(buf, c.frame) {
				t.Errorf("ok = %v, or buf changed", ok)
			}
		})
	}
}

// wantFragNeeded is the ICMP error gopacket builds for the packet of
// frame (built from s, parsed as f), quoting q bytes.
func wantFragNeeded(tb testing.TB, s spec, frame []byte, f *Flow, mtu, q int) []byte {
	quote := frame[f.L3Off : int(f.L3Off)+q]
	if s.v6 {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: vipIP6, DstIP: clientIP6}
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypePacketTooBig, 0)}
		_ = icmp.SetNetworkLayerForChecksum(ip)
		return frametest.Serialize(tb, append(replyL2(s, layers.EthernetTypeIPv6), ip, icmp,
			gopacket.Payload(append(binary.BigEndian.AppendUint32(nil, uint32(mtu)), quote...)))...)
	}
	ip := &layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolICMPv4, SrcIP: vipIP, DstIP: clientIP}
	icmp := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded), Seq: uint16(mtu)}
	return frametest.Serialize(tb, append(replyL2(s, layers.EthernetTypeIPv4), ip, icmp, gopacket.Payload(quote))...)
}

// fragNeededSpecs are the too-big packets FragNeeded answers in tests.
var fragNeededSpecs = []struct {
	description string
	s           spec
	mtu         int
}{
	{"tcp full size", spec{df: true, payload: 1460}, 1480},
	{"tcp small, quoted whole", spec{df: true, payload: 10}, 576},
	{"tcp quoting 548 bytes exactly", spec{df: true, payload: 528}, 1400},
	{"tcp quoting 548 of 549 bytes", spec{df: true, payload: 529}, 1400},
	{"udp odd length in 802.1Q", spec{vlan: true, proto: "udp", df: true, payload: 1001}, 68},
	{"udp with padding", spec{proto: "udp", df: true}, 1000},
	{"ipv4 options", spec{optWords: 4, df: true, payload: 300}, 1300},
	{"icmp echo request", spec{proto: "icmp", df: true, payload: 1472}, 1480},
	{"ipv6 tcp full size", spec{v6: true, payload: 1440}, 1460},
	{"ipv6 tcp small, quoted whole", spec{v6: true, payload: 3}, 1280},
	{"ipv6 quoting 1232 bytes exactly", spec{v6: true, proto: "udp", payload: 1232 - 48}, 1300},
	{"ipv6 quoting 1232 of 1233 bytes", spec{v6: true, proto: "udp", payload: 1233 - 48}, 1300},
	{"ipv6 udp with padding in 802.1Q", spec{v6: true, vlan: true, proto: "udp"}, 9000},
	{"ipv6 extension headers", spec{v6: true, ext: []int{extHopByHop, extRouting}, payload: 2000}, 65535},
	{"icmpv6 echo request", spec{v6: true, proto: "icmp", payload: 1452}, 1480},
}

func TestFragNeeded(t *testing.T) {
	for _, c := range fragNeededSpecs {
		for _, room := range []struct {
			name           string
			headroom, tail int
		}{{"headroom", testHeadroom, 0}, {"exact headroom", 48, 0}, {"tail room", 0, 48}, {"some headroom and tail room", 20, 48}} {
			t.Run(c.description+"/"+room.name, func(t *testing.T) {
				frame := build(t, c.s)
				var f Flow
				if r := Parse(frame, &f); r != OK {
					t.Fatalf("Parse: %v", r)
				}
				overhead, limit := 28, 576
				if c.s.v6 {
					overhead, limit = 48, 1280
				}
				buf := place(frame, room.headroom, room.tail)
				orig := append([]byte(nil), buf...)
				newOff, newLen, ok := FragNeeded(buf, room.headroom, len(frame), &f, c.mtu)
				if !ok {
					t.Fatal("refused")
				}
				q := min(int(f.IPLen), limit-overhead)
				wantOff := room.headroom - overhead
				if room.headroom < overhead {
					wantOff = room.headroom
				}
				if newOff != wantOff || newLen != int(f.L3Off)+overhead+q {
					t.Fatalf("FragNeeded = %d, %d; want %d, %d", newOff, newLen, wantOff, int(f.L3Off)+overhead+q)
				}
				if newLen-int(f.L3Off) > limit {
					t.Errorf("ICMP error of %d bytes", newLen-int(f.L3Off))
				}
				out := buf[newOff : newOff+newLen]
				if want := wantFragNeeded(t, c.s, frame, &f, c.mtu, q); !bytes.Equal(out, want) {
					t.Errorf("error\n got %x\nwant %x", out, want)
				}
				if !bytes.Equal(buf[:newOff], orig[:newOff]) || !bytes.Equal(buf[newOff+newLen:], orig[newOff+newLen:]) {
					t.Error("wrote outside the new frame")
				}
				// The error, parsed, is about the flow turned around:
				// it is what the client's stack will match.
				var e Flow
				if r := Parse(out, &e); r != OK || e.ICMP != ICMPError || e.Src != f.Dst || e.Dst != f.Src ||
					e.Src6 != f.Dst6 || e.Dst6 != f.Src6 || (f.ICMP == ICMPNone && (e.Proto != f.Proto || e.DstPort != uint16(f.Ports)>>8|uint16(f.Ports)<<8)) {
					if !(f.ICMP == ICMPEchoRequest && r == UnsupportedICMP) {
						t.Errorf("Parse of the error: %v, %+v, for %+v", r, e, f)
					}
				}
			})
		}
	}
}

func TestFragNeededRefuses(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		frame := build(t, spec{v6: v6, payload: 1400})
		var f Flow
		if r := Parse(frame, &f); r != OK {
			t.Fatal(r)
		}
		minMTU := 68
		if v6 {
			minMTU = 1280
		}
		bad := func(g func(*Flow)) *Flow { c := f; g(&c); return &c }
		small := build(t, spec{v6: v6, payload: 10})
		smallIP := 40 + 10 + 20*btoi(v6)
		errFrame := build(t, spec{v6: v6, proto: "icmperr"})
		var fe Flow
		Parse(errFrame, &fe)
		for _, c := range []struct {
			description    string
			frame          []byte
			headroom, tail int
			n              int
			f              *Flow
			mtu            int
			ok             bool
		}{
			{"minimum mtu", frame, 64, 0, len(frame), &f, minMTU, true},
			{"mtu one below the minimum", frame, 64, 0, len(frame), &f, minMTU - 1, false},
			{"mtu 65535", frame, 64, 0, len(frame), &f, 65535, true},
			{"mtu 65536", frame, 64, 0, len(frame), &f, 65536, false},
			{"negative mtu", frame, 64, 0, len(frame), &f, -1, false},
			{"icmp error", errFrame, 64, 0, len(errFrame), &fe, 1400, false},
			{"no room", small, 0, 0, 0, nil, 1400, false},
			{"headroom one short", small, 27 + 20*btoi(v6), 0, 0, nil, 1400, false},
			{"headroom one short, tail room one short", small, 27 + 20*btoi(v6), 27 + 20*btoi(v6) - len(small) + smallIP + 14, 0, nil, 1400, false},
			{"headroom one short, just enough tail room", small, 27 + 20*btoi(v6), 28 + 20*btoi(v6) - len(small) + smallIP + 14, 0, nil, 1400, true},
			{"no headroom, the packet is room enough", frame, 0, 0, len(frame), &f, 1400, true},
			{"tail room is enough for a short quote", small, 0, 48, 0, nil, 1400, true},
			{"n past the buffer", frame, 64, 0, len(frame) + 1, &f, 1400, false},
			{"ip length beyond n", frame, 64, 0, len(frame) - 1, &f, 1400, false},
			{"family 0", frame, 64, 0, len(frame), bad(func(f *Flow) { f.Family = 0 }), 1400, false},
		} {
			t.Run(fmt.Sprintf("ipv6=%v/%s", v6, c.description), func(t *testing.T) {
				fl := c.f
				if fl == nil {
					fl = new(Flow)
					Parse(c.frame, fl)
				}
				n := c.n
				if n == 0 {
					n = len(c.frame)
				}
				buf := place(c.frame, c.headroom, c.tail)
				orig := append([]byte(nil), buf...)
				_, _, ok := FragNeeded(buf, c.headroom, n, fl, c.mtu)
				if ok != c.ok {
					t.Fatalf("ok = %v, want %v", ok, c.ok)
				}
				if !ok && !bytes.Equal(buf, orig) {
					t.Error("refused but wrote to buf")
				}
			})
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestICMPNoAllocs(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		echo := build(t, spec{v6: v6, proto: "icmp", payload: 56})
		big := build(t, spec{v6: v6, payload: 1400})
		eb, bb := place(echo, testHeadroom, 0), place(big, testHeadroom, 0)
		if a := testing.AllocsPerRun(1000, func() {
			var f Flow
			Parse(eb[testHeadroom:], &f)
			off, n, _ := EchoReply(eb, testHeadroom, len(echo), &f)
			sinkInt += off + n
		}); a != 0 {
			t.Errorf("ipv6=%v: Parse+EchoReply: %v allocs per run", v6, a)
		}
		if a := testing.AllocsPerRun(1000, func() {
			var f Flow
			Parse(bb[testHeadroom:], &f)
			off, n, _ := FragNeeded(bb, testHeadroom, len(big), &f, 1400)
			sinkInt += off + n
		}); a != 0 {
			t.Errorf("ipv6=%v: Parse+FragNeeded: %v allocs per run", v6, a)
		}
	}
}
