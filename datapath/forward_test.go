package datapath

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/datapath/packet"
	"github.com/xlbproject/xlb/flowtable"
	"github.com/xlbproject/xlb/hash"

	"github.com/xlbproject/xlb/internal/benchpair"
	"github.com/xlbproject/xlb/internal/frametest"
)

var (
	lbAddr    = netip.MustParseAddr("198.18.0.1")
	lbMAC     = [6]byte{0x02, 0, 0, 0, 0, 0x01}
	clientMAC = [6]byte{0x02, 0, 0, 0, 0, 0x02}
	vipAddr   = netip.MustParseAddr("198.18.100.1")
)

// headroom is where AF_XDP copy mode puts received data in a frame.
const headroom = 256

// testVIPs: a TCP VIP with three backends (one without a known next hop),
// an every-port UDP VIP and a fully drained one.
var testVIPs = []tvip{
	{addr: "198.18.100.1", port: 80, backends: []tbe{
		{addr: "198.18.0.11", weight: 1, mac: 0x11},
		{addr: "198.18.0.12", weight: 2, mac: 0x12},
		{addr: "198.18.0.13", weight: 1}, // resolved through testPlan's next hops
	}},
	{addr: "198.18.100.2", port: 0, proto: 17, backends: []tbe{{addr: "198.18.0.21", weight: 1, mac: 0x21}}},
	{addr: "198.18.100.3", port: 53, proto: 17, backends: []tbe{{addr: "198.18.0.31", weight: 0, mac: 0x31}}},
}

// testPlan builds the plan of testVIPs, with backend 198.18.0.13's next hop
// known when resolve13.
func testPlan(tb testing.TB, resolve13 bool) (*Plan, PlanSpec) {
	tb.Helper()
	s := newPlanSet().spec(tb, testVIPs...)
	if resolve13 {
		s.VIPs[0].Backends[2].MAC, s.VIPs[0].Backends[2].Resolved = [6]byte{0x02, 0, 0, 0, 0, 0x13}, true
	}
	p, err := NewPlan(s)
	if err != nil {
		tb.Fatal(err)
	}
	return p, s
}

type frameSpec struct {
	dst     netip.Addr
	sport   uint16
	dport   uint16
	udp     bool
	payload int
	tos     uint8
	df      bool
}

// frame builds a client frame with gopacket, without Ethernet padding.
func frame(tb testing.TB, s frameSpec) []byte {
	tb.Helper()
	eth := &layers.Ethernet{SrcMAC: clientMAC[:], DstMAC: lbMAC[:], EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, TOS: s.tos, SrcIP: net.IPv4(198, 18, 0, 2), DstIP: s.dst.AsSlice()}
	if s.df {
		ip.Flags = layers.IPv4DontFragment
	}
	var l4 gopacket.SerializableLayer
	if s.udp {
		ip.Protocol = layers.IPProtocolUDP
		u := &layers.UDP{SrcPort: layers.UDPPort(s.sport), DstPort: layers.UDPPort(s.dport)}
		_ = u.SetNetworkLayerForChecksum(ip)
		l4 = u
	} else {
		ip.Protocol = layers.IPProtocolTCP
		t := &layers.TCP{SrcPort: layers.TCPPort(s.sport), DstPort: layers.TCPPort(s.dport), ACK: true, Seq: 7, Window: 512}
		_ = t.SetNetworkLayerForChecksum(ip)
		l4 = t
	}
	return frametest.Serialize(tb, eth, ip, l4, gopacket.Payload(make([]byte, s.payload)))[:14+int(ip.Length)]
}

// umemFrame places f at headroom inside a 2048-byte frame, as the kernel does.
func umemFrame(f []byte) []byte {
	buf := make([]byte, 2048)
	copy(buf[headroom:], f)
	return buf
}

func TestForwardEncapsulatesToTheMaglevBackend(t *testing.T) {
	p, spec := testPlan(t, true)
	fwd := newForwarder(t, 1500)
	backends := spec.VIPs[0].Backends
	seen := map[netip.Addr]int{}
	for sport := uint16(1000); sport < 1300; sport++ {
		in := frame(t, frameSpec{dst: vipAddr, sport: sport, dport: 80, payload: 100, tos: 0x28, df: true})
		buf := umemFrame(in)
		off, n, ok := fwd.Forward(p, buf, headroom, len(in))
		if !ok {
			t.Fatalf("sport %d: not forwarded: %v", sport, dropsOf(fwd))
		}
		out := gopacket.NewPacket(buf[off:off+n], layers.LayerTypeEthernet, gopacket.Default)
		eth := out.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
		outer := out.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if outer.Protocol != layers.IPProtocolIPv4 || !outer.SrcIP.Equal(lbAddr.AsSlice()) || outer.TTL != 64 || outer.TOS != 0x28 || outer.Flags&layers.IPv4DontFragment == 0 {
			t.Fatalf("outer header %+v", outer)
		}
		if !bytes.Equal(buf[off+34:off+n], in[14:]) {
			t.Fatal("inner packet changed")
		}
		// The backend is the one Maglev gives the flow hash.
		var fl packet.Flow
		if r := packet.ParseIPv4(in, &fl); r != packet.OK {
			t.Fatal(r)
		}
		want := backends[p.vips[0].table.Lookup(hash.Flow4(fl.Src, fl.Dst, fl.Ports, fl.Proto))]
		got, _ := netip.AddrFromSlice(outer.DstIP)
		if got != want.Addr {
			t.Fatalf("sport %d went to %s, Maglev says %s", sport, got, want.Addr)
		}
		wantMAC := want.MAC
		if !bytes.Equal(eth.DstMAC, wantMAC[:]) || !bytes.Equal(eth.SrcMAC, lbMAC[:]) {
			t.Fatalf("MACs %s -> %s, want %s -> %s", eth.SrcMAC, eth.DstMAC, net.HardwareAddr(lbMAC[:]), net.HardwareAddr(wantMAC[:]))
		}
		seen[got]++
		// Same flow, same backend: a second packet goes the same way.
		buf2 := umemFrame(frame(t, frameSpec{dst: vipAddr, sport: sport, dport: 80, payload: 10}))
		off2, _, _ := fwd.Forward(p, buf2, headroom, len(in)-90)
		if !bytes.Equal(buf2[off2+30:off2+34], outer.DstIP.To4()) {
			t.Fatalf("sport %d: second packet went elsewhere", sport)
		}
	}
	if len(seen) != 3 {
		t.Errorf("300 flows reached %d backends: %v", len(seen), seen)
	}
	var total uint64
	for _, b := range p.vips[0].backends {
		pk, _ := b.counters.Totals()
		total += pk
	}
	if total != 600 {
		t.Errorf("backend counters sum to %d, want 600", total)
	}
}

func TestForwardDrops(t *testing.T) {
	p, _ := testPlan(t, false)
	// The one-backend UDP VIP has a static MAC: no no_neighbor by accident.
	udpVIP := netip.MustParseAddr("198.18.100.2")
	big := frameSpec{dst: udpVIP, sport: 1, dport: 80, udp: true, payload: 1472}
	tests := []struct {
		name     string
		in       []byte
		mtu      int
		headroom int
		want     Drop
	}{
		{"port not a VIP", frame(t, frameSpec{dst: vipAddr, sport: 1, dport: 81}), 1500, headroom, DropNoVIP},
		{"protocol not a VIP", frame(t, frameSpec{dst: vipAddr, sport: 1, dport: 80, udp: true}), 1500, headroom, DropNoVIP},
		{"every backend drained", frame(t, frameSpec{dst: netip.MustParseAddr("198.18.100.3"), sport: 1, dport: 53, udp: true}), 1500, headroom, DropNoBackend},
		{"too big for the MTU", frame(t, big), 1500, headroom, DropTooBig},
		{"no headroom", frame(t, frameSpec{dst: udpVIP, sport: 1, dport: 80, udp: true}), 1500, 10, DropNoHeadroom},
		{"cut short", frame(t, frameSpec{dst: vipAddr, sport: 1, dport: 80})[:40], 1500, headroom, Drop(packet.BadIPLength)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fwd := newForwarder(t, tt.mtu)
			buf := make([]byte, 2048)
			copy(buf[tt.headroom:], tt.in)
			before := bytes.Clone(buf)
			if _, _, ok := fwd.Forward(p, buf, tt.headroom, len(tt.in)); ok {
				t.Fatal("forwarded")
			}
			if got := fwd.drops[tt.want].Load(); got != 1 {
				t.Errorf("drop %s = %d, want 1; all: %v", tt.want, got, dropsOf(fwd))
			}
			if tt.want != DropTooBig && !bytes.Equal(buf, before) {
				t.Error("a dropped frame was modified")
			}
		})
	}
}

func TestForwardUnresolvedNextHop(t *testing.T) {
	p, spec := testPlan(t, false)
	fwd := newForwarder(t, 1500)
	// Find a flow that Maglev gives to the backend without a MAC.
	for sport := uint16(1); sport < 2000; sport++ {
		in := frame(t, frameSpec{dst: vipAddr, sport: sport, dport: 80})
		var fl packet.Flow
		packet.ParseIPv4(in, &fl)
		if spec.VIPs[0].Backends[p.vips[0].table.Lookup(hash.Flow4(fl.Src, fl.Dst, fl.Ports, fl.Proto))].Resolved {
			continue
		}
		if _, _, ok := fwd.Forward(p, umemFrame(in), headroom, len(in)); ok {
			t.Fatal("forwarded without a next hop")
		}
		if fwd.drops[DropNoNeighbor].Load() != 1 {
			t.Fatalf("drops: %v", dropsOf(fwd))
		}
		return
	}
	t.Fatal("no flow maps to the unresolved backend")
}

func TestForwardWildcardPort(t *testing.T) {
	p, _ := testPlan(t, false)
	fwd := newForwarder(t, 1500)
	for _, port := range []uint16{1, 53, 4789, 65535} {
		in := frame(t, frameSpec{dst: netip.MustParseAddr("198.18.100.2"), sport: 9, dport: port, udp: true})
		buf := umemFrame(in)
		off, _, ok := fwd.Forward(p, buf, headroom, len(in))
		if !ok {
			t.Fatalf("port %d: %v", port, dropsOf(fwd))
		}
		if dst := netip.AddrFrom4([4]byte(buf[off+30 : off+34])); dst != netip.MustParseAddr("198.18.0.21") {
			t.Fatalf("port %d went to %s", port, dst)
		}
	}
}

func TestVIPIndex(t *testing.T) {
	_, spec := testPlan(t, false)
	idx, err := newVIPIndex(spec.VIPs)
	if err != nil {
		t.Fatal(err)
	}
	key := func(a string, port uint16, proto uint8) vipKey {
		return keyOf(VIPSpec{Addr: netip.MustParseAddr(a), Port: port, Proto: proto})
	}
	tests := []struct {
		dst   string
		port  uint16
		proto uint8
		want  int32
	}{
		{"198.18.100.1", 80, 6, 0},
		{"198.18.100.1", 80, 17, -1},
		{"198.18.100.1", 443, 6, -1},
		{"198.18.100.2", 12345, 17, 1},
		{"198.18.100.2", 0, 17, 1},
		{"198.18.100.3", 53, 17, 2},
		{"198.18.100.4", 80, 6, -1},
		{"2001:db8::1", 80, 6, -1},
	}
	for _, tt := range tests {
		if got := idx.lookup(key(tt.dst, tt.port, tt.proto)); got != tt.want {
			t.Errorf("lookup(%s:%d/%d) = %d, want %d", tt.dst, tt.port, tt.proto, got, tt.want)
		}
	}
	// A full index still answers misses (the probe loop is bounded).
	many := make([]VIPSpec, 40)
	for i := range many {
		many[i] = VIPSpec{Addr: netip.AddrFrom4([4]byte{198, 18, 200, byte(i)}), Port: 80, Proto: 6}
	}
	idx, err = newVIPIndex(many)
	if err != nil {
		t.Fatal(err)
	}
	for i := range many {
		if got := idx.lookup(key(many[i].Addr.String(), 80, 6)); got != int32(i) {
			t.Fatalf("vip %d found as %d", i, got)
		}
	}
	if got := idx.lookup(key("198.18.201.1", 80, 6)); got != -1 {
		t.Fatalf("miss found %d", got)
	}
	if _, err := newVIPIndex(append(many, many[3])); err == nil {
		t.Fatal("duplicate VIP accepted")
	}
}

func TestForwardAllocatesNothing(t *testing.T) {
	p, _ := testPlan(t, false)
	fwd := newForwarder(t, 1500)
	in := frame(t, frameSpec{dst: netip.MustParseAddr("198.18.100.2"), sport: 9, dport: 7, udp: true, payload: 64})
	buf := umemFrame(in)
	allocs := testing.AllocsPerRun(1000, func() {
		copy(buf[headroom:], in)
		sinkInt, _, _ = fwd.Forward(p, buf, headroom, len(in))
	})
	if allocs != 0 {
		t.Fatalf("Forward allocates %v times per packet", allocs)
	}
}

// newForwarder is a worker's per-packet state with a small flow table.
func newForwarder(tb testing.TB, mtu int) *Forwarder {
	tb.Helper()
	f, err := NewForwarder(0, lbMAC, mtu, flowtable.Config{Entries: 1 << 12})
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

func dropsOf(f *Forwarder) map[string]uint64 {
	m := map[string]uint64{}
	for d := Drop(1); d < NumDrops; d++ {
		if n := f.drops[d].Load(); n != 0 {
			m[d.String()] = n
		}
	}
	return m
}

var sinkInt int

// The per-packet benchmark: the worker's whole per-packet step (parse, VIP
// lookup, flow hash, Maglev, IPIP encapsulation in place) against the same
// work done the usual Go way with gopacket (DecodingLayerParser, then
// SerializeLayers into a new frame), in the same run.

func benchInput(b *testing.B) (*Plan, []byte) {
	p, _ := testPlan(b, false)
	return p, frame(b, frameSpec{dst: netip.MustParseAddr("198.18.100.2"), sport: 9, dport: 7, udp: true, payload: 64})
}

func BenchmarkPerPacket(b *testing.B) {
	p, in := benchInput(b)
	benchpair.Run(b,
		func(b *testing.B) func() { return xlbStep(b, p, in) },
		func(b *testing.B) func() { return gopacketStep(b, p, in) })
}

// xlbStep is one received frame through the worker's per-packet code.
func xlbStep(b *testing.B, p *Plan, in []byte) func() {
	fwd := newForwarder(b, 1500)
	buf := umemFrame(in)
	return func() {
		// A received frame has its own L2 header where the last
		// encapsulation wrote the outer one.
		copy(buf[headroom:headroom+14], in)
		off, n, ok := fwd.Forward(p, buf, headroom, len(in))
		if !ok {
			b.Fatal("not forwarded")
		}
		sinkInt += off + n
	}
}

// gopacketStep is the same decision and rewrite written with gopacket.
func gopacketStep(b *testing.B, p *Plan, in []byte) func() {
	var (
		eth     layers.Ethernet
		ip      layers.IPv4
		udp     layers.UDP
		tcp     layers.TCP
		payload gopacket.Payload
		decoded []gopacket.LayerType
	)
	parser := gopacket.NewDecodingLayerParser(layers.LayerTypeEthernet, &eth, &ip, &udp, &tcp, &payload)
	parser.IgnoreUnsupported = true
	out := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	src := lbAddr.AsSlice()
	return func() {
		if err := parser.DecodeLayers(in, &decoded); err != nil {
			b.Fatal(err)
		}
		var sport, dport uint16
		switch ip.Protocol {
		case layers.IPProtocolUDP:
			sport, dport = uint16(udp.SrcPort), uint16(udp.DstPort)
		case layers.IPProtocolTCP:
			sport, dport = uint16(tcp.SrcPort), uint16(tcp.DstPort)
		}
		dst, _ := netip.AddrFromSlice(ip.DstIP)
		a := dst.As4()
		vi := p.index.lookup(keyOf(VIPSpec{Addr: dst, Port: dport, Proto: uint8(ip.Protocol)}))
		if vi < 0 {
			b.Fatal("no vip")
		}
		s4, d4 := [4]byte(ip.SrcIP.To4()), a
		h := hash.Flow4(le32(s4), le32(d4), uint32(sport>>8|sport<<8)|uint32(dport>>8|dport<<8)<<16, uint8(ip.Protocol))
		be := p.vips[vi].backends[p.vips[vi].table.Lookup(h)]
		outerEth := layers.Ethernet{SrcMAC: lbMAC[:], DstMAC: be.mac[:], EthernetType: layers.EthernetTypeIPv4}
		outer := layers.IPv4{Version: 4, TTL: 64, TOS: ip.TOS, Flags: ip.Flags & layers.IPv4DontFragment, Protocol: layers.IPProtocolIPv4, SrcIP: src, DstIP: be.addr[:]}
		if err := gopacket.SerializeLayers(out, opts, &outerEth, &outer, gopacket.Payload(in[14:])); err != nil {
			b.Fatal(err)
		}
		sinkInt += len(out.Bytes())
	}
}

func le32(a [4]byte) uint32 {
	return uint32(a[0]) | uint32(a[1])<<8 | uint32(a[2])<<16 | uint32(a[3])<<24
}

func Example_dropNames() {
	for _, d := range []Drop{DropNoVIP, DropNoBackend, DropNoNeighbor, DropTooBig, DropNoHeadroom, Drop(packet.Fragment)} {
		fmt.Println(d)
	}
	// Output:
	// no_vip
	// no_backend
	// no_neighbor
	// too_big
	// no_headroom
	// fragment
}
