package datapath

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/internal/frametest"
)

var lbAddr6 = netip.MustParseAddr("2001:db8::1")

// modesPlan has one VIP per forwarding method and backend family.
func modesPlan(t *testing.T) *Plan {
	t.Helper()
	return newPlanSet().plan(t,
		tvip{addr: "2001:db8:100::1", port: 80, backends: []tbe{{addr: "2001:db8::11", weight: 1, mac: 0x11}, {addr: "2001:db8::12", weight: 1, mac: 0x12}}},
		tvip{addr: "198.18.100.1", port: 80, backends: []tbe{{addr: "2001:db8::21", weight: 1, mac: 0x21}}},
		tvip{addr: "198.18.100.2", port: 80, fwd: ForwardGUE, gue: 7777, backends: []tbe{{addr: "198.18.0.31", weight: 1, mac: 0x31}}},
		tvip{addr: "198.18.100.3", port: 80, fwd: ForwardDSR, noEcho: true, backends: []tbe{{addr: "198.18.0.41", weight: 1, mac: 0x41}}},
	)
}

// packetTo builds a client frame (TCP ACK, or an ICMP echo request) to dst.
func packetTo(t *testing.T, src, dst netip.Addr, payload int, echo bool) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: clientMAC[:], DstMAC: lbMAC[:], EthernetType: layers.EthernetTypeIPv4}
	var ls []gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	if dst.Is4() {
		ip := &layers.IPv4{Version: 4, TTL: 64, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		if echo {
			ip.Protocol = layers.IPProtocolICMPv4
			ls = []gopacket.SerializableLayer{eth, ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(8, 0), Id: 1, Seq: 1}}
		} else {
			ls = []gopacket.SerializableLayer{eth, ip}
		}
		nl = ip
	} else {
		eth.EthernetType = layers.EthernetTypeIPv6
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
		if echo {
			ip.NextHeader = layers.IPProtocolICMPv6
			icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(128, 0)}
			_ = icmp.SetNetworkLayerForChecksum(ip)
			ls = []gopacket.SerializableLayer{eth, ip, icmp, &layers.ICMPv6Echo{Identifier: 1, SeqNumber: 1}}
		} else {
			ls = []gopacket.SerializableLayer{eth, ip}
		}
		nl = ip
	}
	if !echo {
		tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, ACK: true, Window: 100}
		_ = tcp.SetNetworkLayerForChecksum(nl)
		ls = append(ls, tcp)
	}
	ls = append(ls, gopacket.Payload(make([]byte, payload)))
	b := frametest.Serialize(t, ls...)
	if dst.Is4() {
		return b[:14+int(nl.(*layers.IPv4).Length)]
	}
	return b[:14+40+int(nl.(*layers.IPv6).Length)]
}

// TestForwardModes: each VIP's forwarding method and backend family pick
// the right header, addressed to the backend, from the right source.
func TestForwardModes(t *testing.T) {
	p := modesPlan(t)
	client4, client6 := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("2001:db8::2")
	tests := []struct {
		name      string
		src, dst  netip.Addr
		outer     gopacket.LayerType
		wantDst   []string
		wantInner gopacket.LayerType
	}{
		{"IPv6 VIP over IP6IP6", client6, netip.MustParseAddr("2001:db8:100::1"), layers.LayerTypeIPv6, []string{"2001:db8::11", "2001:db8::12"}, layers.LayerTypeIPv6},
		{"IPv4 VIP over IPv6 backends (4in6)", client4, netip.MustParseAddr("198.18.100.1"), layers.LayerTypeIPv6, []string{"2001:db8::21"}, layers.LayerTypeIPv4},
		{"IPv4 VIP over GUE", client4, netip.MustParseAddr("198.18.100.2"), layers.LayerTypeIPv4, []string{"198.18.0.31"}, layers.LayerTypeUDP},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newForwarder(t, 1500)
			in := packetTo(t, tt.src, tt.dst, 100, false)
			buf := umemFrame(in)
			off, n, ok := f.Forward(p, buf, headroom, len(in))
			if !ok {
				t.Fatalf("not forwarded: %v", dropsOf(f))
			}
			pk := gopacket.NewPacket(buf[off:off+n], layers.LayerTypeEthernet, gopacket.Default)
			nl := pk.NetworkLayer()
			if nl == nil || nl.LayerType() != tt.outer {
				t.Fatalf("outer layer %v, want %v: %v", nl, tt.outer, pk)
			}
			src, dst := nl.NetworkFlow().Endpoints()
			wantSrc := lbAddr.String()
			if tt.outer == layers.LayerTypeIPv6 {
				wantSrc = lbAddr6.String()
			}
			if src.String() != wantSrc {
				t.Errorf("outer source %s, want %s", src, wantSrc)
			}
			found := false
			for _, d := range tt.wantDst {
				found = found || dst.String() == d
			}
			if !found {
				t.Errorf("outer destination %s, want one of %v", dst, tt.wantDst)
			}
			if tt.wantInner == layers.LayerTypeUDP {
				udp, _ := pk.Layer(layers.LayerTypeUDP).(*layers.UDP)
				if udp == nil || udp.DstPort != 7777 || udp.SrcPort < 49152 {
					t.Fatalf("GUE UDP header %+v", udp)
				}
			} else if !bytes.Equal(buf[off+n-len(in)+14:off+n], in[14:]) {
				t.Error("inner packet changed")
			}
		})
	}
}

func TestForwardDSR(t *testing.T) {
	p := modesPlan(t)
	f := newForwarder(t, 1500)
	in := packetTo(t, netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.18.100.3"), 100, false)
	buf := umemFrame(in)
	off, n, ok := f.Forward(p, buf, headroom, len(in))
	if !ok || n != len(in) {
		t.Fatalf("not forwarded as is: %v", dropsOf(f))
	}
	want := bytes.Clone(in)
	copy(want[0:6], []byte{2, 0, 0, 0, 0, 0x41})
	copy(want[6:12], lbMAC[:])
	if !bytes.Equal(buf[off:off+n], want) {
		t.Error("DSR changed more than the MACs")
	}
}

// TestForwardICMP: echo requests are answered per the VIP's icmp_echo, and a
// packet too big for the encapsulation gets a frag-needed (IPv4, DF) or
// packet-too-big (IPv6) back to the client with the MTU that fits.
func TestForwardICMP(t *testing.T) {
	p := modesPlan(t)
	client4, client6 := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("2001:db8::2")
	f := newForwarder(t, 1500)
	for _, dst := range []string{"198.18.100.1", "2001:db8:100::1"} {
		src := client4
		if netip.MustParseAddr(dst).Is6() {
			src = client6
		}
		in := packetTo(t, src, netip.MustParseAddr(dst), 8, true)
		buf := umemFrame(in)
		off, n, ok := f.Forward(p, buf, headroom, len(in))
		if !ok {
			t.Fatalf("echo to %s not answered: %v", dst, dropsOf(f))
		}
		pk := gopacket.NewPacket(buf[off:off+n], layers.LayerTypeEthernet, gopacket.Default)
		if _, d := pk.NetworkLayer().NetworkFlow().Endpoints(); d.String() != src.String() {
			t.Errorf("echo reply to %s, want %s", d, src)
		}
	}
	in := packetTo(t, client4, netip.MustParseAddr("198.18.100.3"), 8, true)
	if _, _, ok := f.Forward(p, umemFrame(in), headroom, len(in)); ok || f.drops[DropEchoDisabled].Load() != 1 {
		t.Errorf("echo to a VIP with icmp_echo = false: answered %t, drops %v", ok, dropsOf(f))
	}
	if got := f.events[EventEchoReply].Load(); got != 2 {
		t.Errorf("echo_reply events = %d, want 2", got)
	}

	for _, tt := range []struct {
		dst     string
		src     netip.Addr
		payload int
		mtu     int
	}{
		{"198.18.100.2", client4, 1500 - 40, 1500 - 32}, // GUE over IPv4: 32 bytes
		{"2001:db8:100::1", client6, 1500 - 60, 1500 - 40},
	} {
		in := packetTo(t, tt.src, netip.MustParseAddr(tt.dst), tt.payload, false)
		buf := umemFrame(in)
		off, n, ok := f.Forward(p, buf, headroom, len(in))
		if !ok {
			t.Fatalf("%s: too big and no ICMP back: %v", tt.dst, dropsOf(f))
		}
		pk := gopacket.NewPacket(buf[off:off+n], layers.LayerTypeEthernet, gopacket.Default)
		var mtu int
		if icmp, ok := pk.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4); ok {
			if icmp.TypeCode != layers.CreateICMPv4TypeCode(3, 4) {
				t.Fatalf("ICMP %v", icmp.TypeCode)
			}
			mtu = int(icmp.Seq) // the next-hop MTU sits where echo has its sequence
		} else if icmp, ok := pk.Layer(layers.LayerTypeICMPv6).(*layers.ICMPv6); ok {
			if icmp.TypeCode.Type() != 2 {
				t.Fatalf("ICMPv6 %v", icmp.TypeCode)
			}
			m := buf[off+14+40+4 : off+14+40+8] // the MTU follows type, code and checksum
			mtu = int(m[0])<<24 | int(m[1])<<16 | int(m[2])<<8 | int(m[3])
		} else {
			t.Fatalf("%s: reply is not ICMP: %v", tt.dst, pk)
		}
		if mtu != tt.mtu {
			t.Errorf("%s: advertised MTU %d, want %d", tt.dst, mtu, tt.mtu)
		}
		if _, d := pk.NetworkLayer().NetworkFlow().Endpoints(); d.String() != tt.src.String() {
			t.Errorf("%s: frag-needed to %s, want the client %s", tt.dst, d, tt.src)
		}
	}
	if f.events[EventFragNeeded].Load() != 2 || f.drops[DropTooBig].Load() != 2 {
		t.Errorf("events %d too_big %d", f.events[EventFragNeeded].Load(), f.drops[DropTooBig].Load())
	}
}

// TestICMPErrorFollowsTheFlow: an ICMP error about a VIP flow goes to the
// backend that serves the flow.
func TestICMPErrorFollowsTheFlow(t *testing.T) {
	p := modesPlan(t)
	f := newForwarder(t, 1500)
	client := netip.MustParseAddr("2001:db8::2")
	vip := netip.MustParseAddr("2001:db8:100::1")
	for sport := uint16(1000); sport < 1040; sport++ {
		// The flow: client -> VIP, sent to some backend.
		in := packetTo(t, client, vip, 10, false)
		in[14+40], in[14+40+1] = byte(sport>>8), byte(sport)
		buf := umemFrame(in)
		off, _, ok := f.Forward(p, buf, headroom, len(in))
		if !ok {
			t.Fatal(dropsOf(f))
		}
		backend := net.IP(buf[off+14+24 : off+14+40]).String()

		// A router on the way back says the backend's reply (VIP ->
		// client) was too big; the error is addressed to the VIP.
		reply := &layers.IPv6{Version: 6, HopLimit: 60, NextHeader: layers.IPProtocolTCP, SrcIP: vip.AsSlice(), DstIP: client.AsSlice(), Length: 1400}
		quoted := gopacket.NewSerializeBuffer()
		_ = gopacket.SerializeLayers(quoted, gopacket.SerializeOptions{}, reply, &layers.TCP{SrcPort: 80, DstPort: layers.TCPPort(sport), ACK: true, DataOffset: 5})
		router := netip.MustParseAddr("2001:db8::fe")
		ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolICMPv6, SrcIP: router.AsSlice(), DstIP: vip.AsSlice()}
		icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(2, 0)}
		_ = icmp.SetNetworkLayerForChecksum(ip)
		eb := gopacket.NewSerializeBuffer()
		err := gopacket.SerializeLayers(eb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
			&layers.Ethernet{SrcMAC: clientMAC[:], DstMAC: lbMAC[:], EthernetType: layers.EthernetTypeIPv6}, ip, icmp, gopacket.Payload(append([]byte{0, 0, 5, 0}, quoted.Bytes()[:48]...))) // MTU 1280, then the quote
		if err != nil {
			t.Fatal(err)
		}
		ebuf := umemFrame(eb.Bytes())
		off, _, ok = f.Forward(p, ebuf, headroom, len(eb.Bytes()))
		if !ok {
			t.Fatalf("ICMP error not forwarded: %v", dropsOf(f))
		}
		if got := net.IP(ebuf[off+14+24 : off+14+40]).String(); got != backend {
			t.Fatalf("flow %d is served by %s, its ICMP error went to %s", sport, backend, got)
		}
	}
	if f.events[EventICMPError].Load() != 40 {
		t.Errorf("icmp_error_forwarded = %d, want 40", f.events[EventICMPError].Load())
	}
}

func TestForwardIPv6AllocatesNothing(t *testing.T) {
	p := modesPlan(t)
	f := newForwarder(t, 1500)
	in := packetTo(t, netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("2001:db8:100::1"), 64, false)
	buf := umemFrame(in)
	allocs := testing.AllocsPerRun(1000, func() {
		copy(buf[headroom:], in)
		sinkInt, _, _ = f.Forward(p, buf, headroom, len(in))
	})
	if allocs != 0 {
		t.Fatalf("Forward (IPv6) allocates %v times per packet", allocs)
	}
}
