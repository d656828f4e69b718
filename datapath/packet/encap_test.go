package packet

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

const testHeadroom = 256 // as the UMEM is registered by ring/

// Parameters every encapsulation test passes.
const (
	testID       = 0xbeef
	testFlowHash = 0x9e3779b9
	testGUEPort  = 6080
)

var (
	lbIP6      = [16]byte(net.ParseIP("2001:db8:2::1"))
	backendIP6 = [16]byte(net.ParseIP("2001:db8:3::7"))
)

// place copies frame into a fresh UMEM-like buffer after headroom bytes,
// with tail spare bytes after it, all filled with a marker so stray writes
// show up.
func place(frame []byte, headroom, tail int) []byte {
	buf := bytes.Repeat([]byte{0xee}, headroom+len(frame)+tail)
	copy(buf[headroom:], frame)
	return buf
}

// encapMode is one forwarding mode as the worker calls it, with the
// parameters above, and how to check its outer headers.
type encapMode struct {
	name     string
	overhead int
	// check verifies the outer headers of out (decoded by gopacket as p)
	// for the inner packet parsed as f.
	check func(t *testing.T, out []byte, p gopacket.Packet, f *Flow)
}

// run calls the mode's function. It is a switch, not a func field, so
// that f does not escape and the zero-allocation test measures the
// functions, not the test's indirection.
func (m *encapMode) run(buf []byte, off, n int, f *Flow, maxLen int) (int, int, bool) {
	switch m.name {
	case "ipip":
		return EncapIPIP(buf, off, n, f, lbIP, backendIP, lbMACArr, nextMAC, testID, maxLen)
	case "ipip6":
		return EncapIPIP6(buf, off, n, f, lbIP6, backendIP6, lbMACArr, nextMAC, testFlowHash, maxLen)
	case "gue4":
		return EncapGUE4(buf, off, n, f, lbIP, backendIP, lbMACArr, nextMAC, testID, testFlowHash, testGUEPort, maxLen)
	case "gue6":
		return EncapGUE6(buf, off, n, f, lbIP6, backendIP6, lbMACArr, nextMAC, testFlowHash, testGUEPort, maxLen)
	}
	panic("unknown mode " + m.name)
}

var encapModes = []encapMode{
	{"ipip", IPIPOverhead, checkOuter4},
	{"ipip6", IPIP6Overhead, checkOuter6},
	{"gue4", GUE4Overhead, checkOuter4},
	{"gue6", GUE6Overhead, checkOuter6},
}

// encapSpecs are the inner packets every mode is tested with.
var encapSpecs = []struct {
	description string
	s           spec
}{
	{"tcp", spec{payload: 32}},
	{"tcp syn", spec{}},
	{"udp with ethernet padding", spec{proto: "udp"}},
	{"udp", spec{proto: "udp", payload: 1000}},
	{"odd length", spec{proto: "udp", payload: 1001}},
	{"tos and df", spec{tos: 0x2e<<2 | 2, df: true, payload: 10}},
	{"802.1Q", spec{vlan: true, payload: 32}},
	{"802.1Q udp with padding and df", spec{vlan: true, proto: "udp", df: true}},
	{"options", spec{optWords: 10, payload: 32}},
	{"802.1Q and options", spec{vlan: true, optWords: 3, proto: "udp", payload: 5}},
	{"icmp error", spec{proto: "icmperr"}},
	{"ipv6 tcp", spec{v6: true, payload: 32}},
	{"ipv6 udp with padding", spec{v6: true, proto: "udp"}},
	{"ipv6 odd length, traffic class", spec{v6: true, proto: "udp", payload: 999, tos: 0xb9, label: 0x12345}},
	{"ipv6 802.1Q and extension headers", spec{v6: true, vlan: true, ext: []int{extHopByHop, extDstOpts}, payload: 64}},
	{"icmpv6 error", spec{v6: true, proto: "icmperr"}},
}

func TestEncap(t *testing.T) {
	for _, m := range encapModes {
		for _, c := range encapSpecs {
			t.Run(m.name+"/"+c.description, func(t *testing.T) {
				frame := build(t, c.s)
				var f Flow
				if r := Parse(frame, &f); r != OK {
					t.Fatalf("Parse: %v", r)
				}
				buf := place(frame, testHeadroom, 16)
				orig := append([]byte(nil), buf...)
				newOff, newLen, ok := m.run(buf, testHeadroom, len(frame), &f, 9000)
				if !ok {
					t.Fatal("not ok")
				}
				l3 := int(f.L3Off)
				if newOff != testHeadroom-m.overhead || newLen != l3+m.overhead+int(f.IPLen) {
					t.Fatalf("= %d, %d; want %d, %d", newOff, newLen, testHeadroom-m.overhead, l3+m.overhead+int(f.IPLen))
				}
				if f.IPLen == uint16(len(frame)-l3) && newLen != len(frame)+m.overhead {
					t.Errorf("unpadded frame: newLen %d, want n+%d = %d", newLen, m.overhead, len(frame)+m.overhead)
				}
				// Nothing outside the new frame and the old frame's padding changed.
				if !bytes.Equal(buf[:newOff], orig[:newOff]) || !bytes.Equal(buf[newOff+newLen:], orig[newOff+newLen:]) {
					t.Error("wrote outside the new frame")
				}
				checkEncap(t, m, buf[newOff:newOff+newLen], frame, &f)
			})
		}
	}
}

// checkEncap decodes out with gopacket and checks it is frame (parsed as
// f) encapsulated by mode m from lbMAC to nextMAC.
func checkEncap(t *testing.T, m encapMode, out, frame []byte, f *Flow) {
	t.Helper()
	l3 := int(f.L3Off)
	p := gopacket.NewPacket(out, layers.LayerTypeEthernet, gopacket.DecodeOptions{NoCopy: true})
	eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
	if !bytes.Equal(eth.DstMAC, nextMAC[:]) || !bytes.Equal(eth.SrcMAC, lbMACArr[:]) {
		t.Errorf("MACs %v -> %v", eth.SrcMAC, eth.DstMAC)
	}
	wantET := layers.EthernetTypeIPv4
	if m.name == "ipip6" || m.name == "gue6" {
		wantET = layers.EthernetTypeIPv6
	}
	// A VLAN tag is kept byte for byte: TPID, priority, DEI and VLAN id.
	if l3 == 18 {
		if !bytes.Equal(out[12:16], frame[12:16]) {
			t.Errorf("VLAN tag %x, want %x", out[12:16], frame[12:16])
		}
		dq, _ := p.Layer(layers.LayerTypeDot1Q).(*layers.Dot1Q)
		if dq == nil || dq.VLANIdentifier != 100 || dq.Priority != 5 || dq.Type != wantET {
			t.Errorf("802.1Q layer %+v", dq)
		}
	} else if eth.EthernetType != wantET {
		t.Errorf("EtherType %v, want %v", eth.EthernetType, wantET)
	}
	if !bytes.Equal(out[l3+m.overhead:], frame[l3:l3+int(f.IPLen)]) {
		t.Error("inner packet is not the original IP packet byte for byte")
	}
	m.check(t, out, p, f)
	if m.name == "gue4" || m.name == "gue6" {
		checkGUE(t, out[l3:], p, f)
		return
	}
	// gopacket decodes the inner packet after the outer header.
	inner := layers.LayerTypeIPv4
	if f.Family == 6 {
		inner = layers.LayerTypeIPv6
	}
	ls := p.Layers()
	found := false
	for _, l := range ls[1:] {
		if l.LayerType() == inner && offsetIn(out, l.LayerContents()) == l3+m.overhead {
			found = true
		}
	}
	if !found {
		t.Errorf("gopacket finds no inner %v at %d: %v", inner, l3+m.overhead, p)
	}
}

// checkOuter4 checks an outer IPv4 header, the first IP layer of p.
func checkOuter4(t *testing.T, out []byte, p gopacket.Packet, f *Flow) {
	t.Helper()
	outer, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if outer == nil || offsetIn(out, outer.Contents) != int(f.L3Off) {
		t.Fatalf("no outer IPv4 header: %v", p)
	}
	proto, length := layers.IPProtocolUDP, int(f.IPLen)+GUE4Overhead
	if _, isUDP := p.Layer(layers.LayerTypeUDP).(*layers.UDP); !isUDP || offsetIn(out, p.Layer(layers.LayerTypeUDP).LayerContents()) != int(f.L3Off)+20 {
		proto, length = layers.IPProtocolIPv4, int(f.IPLen)+IPIPOverhead
		if f.Family == 6 {
			proto = layers.IPProtocolIPv6
		}
	}
	if outer.Version != 4 || outer.IHL != 5 || outer.TOS != f.TOS || int(outer.Length) != length ||
		outer.Id != testID || outer.FragOffset != 0 || outer.TTL != 64 || outer.Protocol != proto ||
		!outer.SrcIP.Equal(lbIP[:]) || !outer.DstIP.Equal(backendIP[:]) {
		t.Errorf("outer header %+v", outer)
	}
	wantFlags := layers.IPv4Flag(0)
	if f.DF {
		wantFlags = layers.IPv4DontFragment
	}
	if outer.Flags != wantFlags {
		t.Errorf("outer flags %v, want %v", outer.Flags, wantFlags)
	}
	// The checksum as gopacket computes it for the same header.
	sb := gopacket.NewSerializeBuffer()
	if err := outer.SerializeTo(sb, gopacket.SerializeOptions{ComputeChecksums: true}); err != nil {
		t.Fatal(err)
	}
	if want := binary.BigEndian.Uint16(sb.Bytes()[10:12]); outer.Checksum != want {
		t.Errorf("outer checksum %#04x, gopacket computes %#04x", outer.Checksum, want)
	}
}

// checkOuter6 checks an outer IPv6 header, the first IP layer of p.
func checkOuter6(t *testing.T, out []byte, p gopacket.Packet, f *Flow) {
	t.Helper()
	outer, _ := p.Layer(layers.LayerTypeIPv6).(*layers.IPv6)
	if outer == nil || offsetIn(out, outer.Contents) != int(f.L3Off) {
		t.Fatalf("no outer IPv6 header: %v", p)
	}
	next, length := layers.IPProtocolIPv4, int(f.IPLen)
	if f.Family == 6 {
		next = layers.IPProtocolIPv6
	}
	if out[int(f.L3Off)+6] == protoUDP {
		next, length = layers.IPProtocolUDP, int(f.IPLen)+udpHeaderLen+gueHeaderLen
	}
	if outer.Version != 6 || outer.TrafficClass != f.TOS || outer.FlowLabel != testFlowHash&0xfffff ||
		int(outer.Length) != length || outer.NextHeader != next || outer.HopLimit != 64 ||
		!outer.SrcIP.Equal(lbIP6[:]) || !outer.DstIP.Equal(backendIP6[:]) {
		t.Errorf("outer header %+v", outer)
	}
}

// checkGUE checks the UDP and GUE headers after the outer IP header at
// ip, and the UDP checksum against gopacket's.
func checkGUE(t *testing.T, ip []byte, p gopacket.Packet, f *Flow) {
	t.Helper()
	udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if udp == nil {
		t.Fatalf("no UDP layer: %v", p)
	}
	if udp.SrcPort < GUEPortBase || uint16(udp.SrcPort) != guePort(testFlowHash) || udp.DstPort != testGUEPort ||
		int(udp.Length) != 8+4+int(f.IPLen) {
		t.Errorf("UDP header %+v", udp)
	}
	gue := udp.Payload[:4]
	if gue[0] != 0 || gue[1] != innerProto(f) || gue[2] != 0 || gue[3] != 0 {
		t.Errorf("GUE header %x", gue)
	}
	want := uint16(0)
	if ip[0]>>4 == 6 {
		// gopacket's checksum over the same pseudo-header and payload.
		ref := &layers.UDP{SrcPort: udp.SrcPort, DstPort: udp.DstPort}
		_ = ref.SetNetworkLayerForChecksum(&layers.IPv6{SrcIP: ip[8:24], DstIP: ip[24:40], NextHeader: layers.IPProtocolUDP})
		sb := gopacket.NewSerializeBuffer()
		if err := gopacket.SerializeLayers(sb, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ref, gopacket.Payload(udp.Payload)); err != nil {
			t.Fatal(err)
		}
		want = binary.BigEndian.Uint16(sb.Bytes()[6:8])
		if want == 0 {
			want = 0xffff
		}
	}
	if udp.Checksum != want {
		t.Errorf("UDP checksum %#04x, want %#04x", udp.Checksum, want)
	}
}

func TestGUEPort(t *testing.T) {
	seen := map[uint16]bool{}
	for h := uint32(0); h < 1<<16; h++ {
		x := h * 0x9e3779b1
		p := guePort(x)
		if p < GUEPortBase {
			t.Fatalf("guePort(%#x) = %d", x, p)
		}
		seen[p] = true
	}
	if len(seen) < 15800 { // 16084 expected for uniform draws
		t.Errorf("65536 hashes give %d of 16384 source ports", len(seen))
	}
}

func TestEncapRefuses(t *testing.T) {
	for _, m := range encapModes {
		for _, v6 := range []bool{false, true} {
			frame := build(t, spec{v6: v6, vlan: true, proto: "udp", payload: 1500 - 28})
			if v6 {
				frame = build(t, spec{v6: v6, vlan: true, proto: "udp", payload: 1500 - 48})
			}
			var f Flow
			if r := Parse(frame, &f); r != OK {
				t.Fatalf("Parse: %v", r)
			}
			n := len(frame) // 1518: a full-size packet on a 1500-byte MTU, tagged
			ov := m.overhead
			bad := func(g func(*Flow)) *Flow { c := f; g(&c); return &c }
			minIP := uint16(20)
			if v6 {
				minIP = 40
			}
			for _, c := range []struct {
				description string
				headroom    int
				n           int
				f           *Flow
				maxLen      int
				ok          bool
			}{
				{"just enough headroom", ov, n, &f, 9000, true},
				{"headroom one short", ov - 1, n, &f, 9000, false},
				{"headroom 0", 0, n, &f, 9000, false},
				{"too big for mtu 1500", 256, n, &f, 1500 + 18, false},
				{"one byte too big", 256, n, &f, n + ov - 1, false},
				{"exactly fits", 256, n, &f, n + ov, true},
				{"n beyond buffer", 256, n + 1, &f, 9000, false},
				{"negative n", 256, -1, &f, 9000, false},
				{"ip length beyond n", 256, n - 1, &f, 9000, false},
				{"l3 offset 0", 256, n, bad(func(f *Flow) { f.L3Off = 0 }), 9000, false},
				{"l3 offset 16", 256, n, bad(func(f *Flow) { f.L3Off = 16 }), 9000, false},
				{"ip length below the header", 256, n, bad(func(f *Flow) { f.IPLen = minIP - 1 }), 9000, false},
				{"ip length 65535", 256, n, bad(func(f *Flow) { f.IPLen = 65535 }), 1 << 20, false},
				{"family 0", 256, n, bad(func(f *Flow) { f.Family = 0 }), 9000, false},
			} {
				t.Run(fmt.Sprintf("%s/ipv6=%v/%s", m.name, v6, c.description), func(t *testing.T) {
					buf := place(frame, c.headroom, 0)
					orig := append([]byte(nil), buf...)
					newOff, newLen, ok := m.run(buf, c.headroom, c.n, c.f, c.maxLen)
					if ok != c.ok {
						t.Fatalf("ok = %v, want %v", ok, c.ok)
					}
					if ok {
						checkEncap(t, m, buf[newOff:newOff+newLen], frame, c.f)
						return
					}
					if newOff != 0 || newLen != 0 {
						t.Errorf("refused but returned %d, %d", newOff, newLen)
					}
					if !bytes.Equal(buf, orig) {
						t.Error("refused but wrote to buf")
					}
				})
			}
		}
	}
}

// TestEncapMaxIPLen checks the outer length fields never wrap: an inner
// packet as long as a length field allows is refused once the outer
// header would pass 65535, whatever maxLen allows.
func TestEncapMaxIPLen(t *testing.T) {
	for _, m := range encapModes {
		for _, v6 := range []bool{false, true} {
			// A UDP packet of exactly ipLen bytes in a frame as long.
			for _, ipLen := range []int{65535 - 52, 65535 - 40, 65535 - 32, 65535 - 20, 65535 - 12, 65535} {
				s := spec{v6: v6, proto: "udp", payload: ipLen - 28}
				if v6 {
					s.payload = ipLen - 48
				}
				frame := build(t, s)
				var f Flow
				if r := Parse(frame, &f); r != OK {
					if v6 && ipLen > 65535-0 {
						continue
					}
					t.Fatalf("%d bytes: Parse: %v", ipLen, r)
				}
				buf := place(frame, 64, 0)
				_, _, ok := m.run(buf, 64, len(frame), &f, 1<<20)
				// The length fields: IPv4 total length covers the outer
				// header; IPv6 payload length and UDP length do not.
				covered := m.overhead
				switch m.name {
				case "ipip6":
					covered = 0
				case "gue6":
					covered = 12
				}
				if want := ipLen+covered <= 65535; ok != want {
					t.Errorf("%s, ipv6=%v, inner %d bytes: ok = %v, want %v", m.name, v6, ipLen, ok, want)
				}
			}
		}
	}
}

func TestRewriteDSR(t *testing.T) {
	for _, c := range encapSpecs {
		t.Run(c.description, func(t *testing.T) {
			frame := build(t, c.s)
			var f Flow
			if r := Parse(frame, &f); r != OK {
				t.Fatalf("Parse: %v", r)
			}
			buf := place(frame, testHeadroom, 16)
			newOff, newLen, ok := RewriteDSR(buf, testHeadroom, len(frame), &f, lbMACArr, nextMAC)
			if !ok || newOff != testHeadroom || newLen != len(frame) {
				t.Fatalf("RewriteDSR = %d, %d, %v", newOff, newLen, ok)
			}
			want := place(frame, testHeadroom, 16)
			copy(want[testHeadroom:], nextMAC[:])
			copy(want[testHeadroom+6:], lbMACArr[:])
			if !bytes.Equal(buf, want) {
				t.Errorf("buffer\n got %x\nwant %x", buf, want)
			}
			p := gopacket.NewPacket(buf[newOff:newOff+newLen], layers.LayerTypeEthernet, gopacket.Default)
			if eth := p.Layer(layers.LayerTypeEthernet).(*layers.Ethernet); !bytes.Equal(eth.DstMAC, nextMAC[:]) || !bytes.Equal(eth.SrcMAC, lbMACArr[:]) {
				t.Errorf("gopacket reads MACs %v -> %v", eth.SrcMAC, eth.DstMAC)
			}
		})
	}
	frame := build(t, spec{payload: 10})
	var f Flow
	if r := Parse(frame, &f); r != OK {
		t.Fatal(r)
	}
	for _, c := range []struct {
		description string
		off, n      int
		f           Flow
	}{
		{"n beyond buffer", 0, len(frame) + 1, f},
		{"negative offset", -1, len(frame), f},
		{"ip length beyond n", 0, len(frame) - 1, f},
		{"family 0", 0, len(frame), Flow{L3Off: 14, IPLen: f.IPLen}},
	} {
		buf := append([]byte(nil), frame...)
		if c.n < len(frame) {
			buf = buf[:c.n] // the frame cut short, so that buf[off:off+n] is all there is
		}
		if _, _, ok := RewriteDSR(buf, c.off, c.n, &c.f, lbMACArr, nextMAC); ok || !bytes.Equal(buf, frame[:len(buf)]) {
			t.Errorf("%s: ok = %v, or buf changed", c.description, ok)
		}
	}
}

// Sinks keep the compiler from dropping the measured work.
var (
	sinkFlow   Flow
	sinkReason Reason
	sinkInt    int
	sinkStr    string
)

func TestNoAllocs(t *testing.T) {
	for _, s := range []spec{{vlan: true, optWords: 2, payload: 32}, {v6: true, vlan: true, ext: []int{extHopByHop}, payload: 32}, {proto: "icmperr"}, {v6: true, proto: "icmperr"}} {
		frame := build(t, s)
		buf := place(frame, testHeadroom, 0)
		if a := testing.AllocsPerRun(1000, func() {
			sinkReason = Parse(frame, &sinkFlow)
		}); a != 0 {
			t.Errorf("Parse: %v allocs per run", a)
		}
		for _, m := range encapModes {
			if a := testing.AllocsPerRun(1000, func() {
				copy(buf[testHeadroom:], frame)
				var f Flow
				Parse(buf[testHeadroom:], &f)
				off, n, _ := m.run(buf, testHeadroom, len(frame), &f, 1518)
				sinkInt += off + n
			}); a != 0 {
				t.Errorf("Parse+%s: %v allocs per run", m.name, a)
			}
		}
		if a := testing.AllocsPerRun(1000, func() {
			var f Flow
			Parse(buf[testHeadroom:], &f)
			off, n, _ := RewriteDSR(buf, testHeadroom, len(frame), &f, lbMACArr, nextMAC)
			sinkInt += off + n
		}); a != 0 {
			t.Errorf("Parse+RewriteDSR: %v allocs per run", a)
		}
	}
	if a := testing.AllocsPerRun(1000, func() {
		sinkStr = (sinkReason + Fragment).String()
	}); a != 0 {
		t.Errorf("Reason.String: %v allocs per run", a)
	}
}

// TestBenchmarkBaseline checks that BenchmarkForward's gopacket baseline
// builds the very frame xlb builds, so that the comparison is of the same
// work. Only GUE over IPv4 differs: gopacket always computes the UDP
// checksum, xlb sends 0.
func TestBenchmarkBaseline(t *testing.T) {
	for _, fm := range fwdModes {
		frame := build(t, spec{v6: fm.v6, vlan: true, payload: 101})
		buf := place(frame, testHeadroom, 0)
		var f Flow
		Parse(buf[testHeadroom:], &f)
		var off, n int
		var ok bool
		if fm.mode == "dsr" {
			off, n, ok = RewriteDSR(buf, testHeadroom, len(frame), &f, lbMACArr, nextMAC)
		} else {
			for i := range encapModes {
				if encapModes[i].name == fm.mode {
					off, n, ok = encapModes[i].run(buf, testHeadroom, len(frame), &f, 9000)
				}
			}
		}
		if !ok {
			t.Fatalf("%s: refused", fm.name)
		}
		got := buf[off : off+n]
		want := baselineFrame(t, fm.mode, frame)
		if fm.mode == "gue4" {
			want[18+20+6], want[18+20+7] = 0, 0
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s:\n xlb      %x\n gopacket %x", fm.name, got, want)
		}
	}
}
