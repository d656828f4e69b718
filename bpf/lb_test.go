package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/datapath/packet"
	"github.com/xlbproject/xlb/hash"
	"github.com/xlbproject/xlb/internal/testenv"
)

// The lb fixtures: four VIPs, four backends (the last one unresolved), a
// small prime table. Every forwarded frame must equal what the Go worker
// builds from the same input: packet.ParseIPv4, hash.Flow4, the same Maglev
// table, packet.EncapIPIP.
var (
	vipEmpty   = netip.MustParseAddr("198.18.0.12") // 80/tcp, table empty
	vipNoNeigh = netip.MustParseAddr("198.18.0.13") // 80/tcp, unresolved backend
	lbSrc      = [4]byte{198, 18, 0, 1}
	lbMAC      = [6]byte{0x02, 0, 0, 0, 0, 0xaa}
)

const (
	lbTestTableSize = 251
	lbTestMTU       = 1500
	xdpDrop         = 1
	xdpTX           = 3
)

func lbTestBackends() []LBBackend {
	return []LBBackend{
		{Addr: netip.MustParseAddr("198.18.0.50"), MAC: [6]byte{0x02, 0, 0, 0, 0, 0x50}, Resolved: true},
		{Addr: netip.MustParseAddr("198.18.0.51"), MAC: [6]byte{0x02, 0, 0, 0, 0, 0x51}, Resolved: true},
		{Addr: netip.MustParseAddr("198.18.0.52"), MAC: [6]byte{0x02, 0, 0, 0, 0, 0x52}, Resolved: true},
		{Addr: netip.MustParseAddr("198.18.0.53"), MAC: [6]byte{0x02, 0, 0, 0, 0, 0x53}},
	}
}

// lbTestTable is the Maglev table of backends 0..2, as the Go datapath
// builds it.
func lbTestTable(t testing.TB) *hash.Table {
	var hb []hash.Backend
	for _, b := range lbTestBackends()[:3] {
		hb = append(hb, hash.Backend{Addr: b.Addr, Weight: 1})
	}
	tab, err := hash.Build(hb, lbTestTableSize)
	if err != nil {
		t.Fatal(err)
	}
	return tab
}

func fill(n int, v uint32) []uint32 {
	s := make([]uint32, n)
	for i := range s {
		s[i] = v
	}
	return s
}

func loadTestLB(t testing.TB) *LB {
	t.Helper()
	testenv.Root(t, "loads the lb program (BPF_PROG_TEST_RUN)")
	lb, err := LoadLB(LBOptions{FlowTableSize: 4096, TableSize: lbTestTableSize, MaxVIPs: 8, MaxBackends: 16})
	if err != nil {
		t.Fatalf("LoadLB: %v", err)
	}
	t.Cleanup(func() {
		if err := lb.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(lb.SetVIPs([]VIPEntry{
		{Key: NewVIPKey(vipTCP, 80, 6), ID: 0},
		{Key: NewVIPKey(vipUDP, 0, 17), ID: 1},
		{Key: NewVIPKey(vipEmpty, 80, 6), ID: 2},
		{Key: NewVIPKey(vipNoNeigh, 80, 6), ID: 3},
	}))
	must(lb.SetBackends(lbTestBackends()))
	tab := lbTestTable(t)
	must(lb.SetTable(0, tab.Slots()))
	must(lb.SetTable(1, tab.Slots()))
	must(lb.SetTable(3, fill(lbTestTableSize, 3)))
	must(lb.SetSource(lbSrc, lbMAC, lbTestMTU))
	return lb
}

// goForward is what the Go worker sends for frame: the backend it picks from
// tab (among lbTestBackends) and the encapsulated frame with IPv4 ID id. ok
// is false if the worker would not forward the frame.
func goForward(frame []byte, tab *hash.Table, id uint16) (out []byte, backend int, ok bool) {
	var fl packet.Flow
	if packet.ParseIPv4(frame, &fl) != packet.OK {
		return nil, -1, false
	}
	bi := tab.Lookup(hash.Flow4(fl.Src, fl.Dst, fl.Ports, fl.Proto))
	if bi < 0 {
		return nil, -1, false
	}
	be := lbTestBackends()[bi]
	const headroom = 256
	buf := make([]byte, headroom+len(frame))
	copy(buf[headroom:], frame)
	off, n, ok := packet.EncapIPIP(buf, headroom, len(frame), &fl, lbSrc, be.Addr.As4(), lbMAC, be.MAC, id, lbTestMTU+int(fl.L3Off))
	if !ok {
		return nil, int(bi), false
	}
	return buf[off : off+n], int(bi), true
}

// lbRun runs frame through the program and returns the verdict, the output
// frame, the counter delta and the outer IPv4 ID the program used (the
// per-CPU counter of the CPU it ran on).
func lbRun(t testing.TB, lb *LB, frame []byte) (uint32, []byte, LBCounters, uint16) {
	t.Helper()
	var idsBefore, idsAfter []uint32
	if err := lb.objs.IpIds.Lookup(uint32(0), &idsBefore); err != nil {
		t.Fatal(err)
	}
	before, err := lb.Counters()
	if err != nil {
		t.Fatal(err)
	}
	opts := ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+256)}
	verdict, err := lb.Program().Run(&opts)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	after, err := lb.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if err := lb.objs.IpIds.Lookup(uint32(0), &idsAfter); err != nil {
		t.Fatal(err)
	}
	var id uint16
	for cpu := range idsAfter {
		if idsAfter[cpu] != idsBefore[cpu] {
			id = uint16(idsAfter[cpu])
		}
	}
	return verdict, opts.DataOut, subLB(after, before), id
}

func subLB(a, b LBCounters) LBCounters {
	d := LBCounters{
		Seen: a.Seen - b.Seen, Forwarded: a.Forwarded - b.Forwarded, Passed: a.Passed - b.Passed,
		Malformed: a.Malformed - b.Malformed, FlowHits: a.FlowHits - b.FlowHits, Dropped: a.Dropped - b.Dropped,
		Drops: map[string]uint64{},
	}
	for k, v := range a.Drops {
		if v != b.Drops[k] {
			d.Drops[k] = v - b.Drops[k]
		}
	}
	return d
}

// flowOf returns the flow table entry of frame's 5-tuple.
func flowOf(t testing.TB, lb *LB, frame []byte) (lbFlowValue, bool) {
	t.Helper()
	var fl packet.Flow
	if packet.ParseIPv4(frame, &fl) != packet.OK {
		t.Fatalf("flowOf: frame does not parse")
	}
	k := lbFlowKey{Saddr: fl.Src, Daddr: fl.Dst, Ports: fl.Ports, Proto: fl.Proto}
	var v lbFlowValue
	err := lb.objs.Flows.Lookup(k, &v)
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return v, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return v, true
}

// tcpFrame is a TCP frame from client:sport to dst:dport with the given
// flags ("S", "A", "SA"), TOS and DF, and payload of n bytes.
func tcpFrame(t testing.TB, dst netip.Addr, sport, dport uint16, flags string, tos uint8, df bool, n int) []byte {
	ip := ipv4(client, dst, layers.IPProtocolTCP)
	ip.TOS = tos
	if df {
		ip.Flags = layers.IPv4DontFragment
	}
	tc := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 7, Ack: 9, Window: 512,
		SYN: bytes.Contains([]byte(flags), []byte("S")), ACK: bytes.Contains([]byte(flags), []byte("A"))}
	_ = tc.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth(layers.EthernetTypeIPv4), ip, tc, gopacket.Payload(make([]byte, n)))
}

// udpFrame is a UDP frame from client:40000 to dst:port with n payload bytes.
func udpFrame(t testing.TB, dst netip.Addr, port uint16, n int) []byte {
	ip := ipv4(client, dst, layers.IPProtocolUDP)
	u := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(port)}
	_ = u.SetNetworkLayerForChecksum(ip)
	return serialize(t, eth(layers.EthernetTypeIPv4), ip, u, gopacket.Payload(make([]byte, n)))
}

// withIPField returns a copy of f (untagged IPv4) with IPv4 header bytes
// [off, off+len(b)) replaced by b and the header checksum left as it was.
func withIPField(f []byte, off int, b ...byte) []byte {
	g := append([]byte(nil), f...)
	copy(g[14+off:], b)
	return g
}

type lbCase struct {
	name    string
	frame   []byte
	verdict uint32 // xdpTX: the output must be goForward's
	drop    string // the drop reason for xdpDrop
	bad     bool   // counted Malformed (and passed)
}

func lbCases(t testing.TB) []lbCase {
	tcp := layers.IPProtocolTCP
	padded := udpFrame(t, vipUDP, 53, 0) // 42 bytes
	padded = append(padded, make([]byte, 60-len(padded))...)
	short := tcpFrame(t, vipTCP, 40000, 80, "A", 0, false, 0)
	// tot_len 30: the TCP header is cut by the end of the IP packet.
	truncL4 := withIPField(short, 2, 0, 30)[:14+30]
	return []lbCase{
		{"tcp syn", tcpFrame(t, vipTCP, 40000, 80, "S", 0, false, 0), xdpTX, "", false},
		{"tcp ack", tcpFrame(t, vipTCP, 40001, 80, "A", 0, false, 100), xdpTX, "", false},
		{"tcp syn-ack", tcpFrame(t, vipTCP, 40002, 80, "SA", 0, false, 0), xdpTX, "", false},
		{"tcp tos and df", tcpFrame(t, vipTCP, 40003, 80, "A", 0xb9, true, 10), xdpTX, "", false},
		{"udp wildcard", udpFrame(t, vipUDP, 53, 20), xdpTX, "", false},
		{"udp other port", udpFrame(t, vipUDP, 9999, 20), xdpTX, "", false},
		{"udp ethernet padding", padded, xdpTX, "", false},
		{"802.1Q", frame4VLAN(t, layers.EthernetTypeDot1Q, vipTCP, tcp, 80), xdpTX, "", false},
		{"802.1ad", frame4VLAN(t, layers.EthernetTypeQinQ, vipUDP, layers.IPProtocolUDP, 53), xdpTX, "", false},
		{"ip options", frame4Opts(t, vipTCP, 80, 9), xdpTX, "", false},
		{"fits the mtu exactly", udpFrame(t, vipUDP, 53, lbTestMTU-20-20-8), xdpTX, "", false},
		{"too big by one byte", udpFrame(t, vipUDP, 53, lbTestMTU-20-20-8+1), xdpDrop, "too_big", false},
		{"non-VIP", frame4(t, nonVIP, tcp, 80), xdpPass, "", false},
		{"arp", arp(t), xdpPass, "", false},
		{"ipv6 to a VIP", frame6(t, vip6, tcp, 443), xdpPass, "", false},
		{"VIP address, other port", frame4(t, vipTCP, tcp, 81), xdpDrop, "no_vip", false},
		{"VIP address, other protocol", frame4(t, vipTCP, layers.IPProtocolUDP, 80), xdpDrop, "no_vip", false},
		{"icmp to VIP", icmp4(t, vipTCP), xdpDrop, "unsupported_protocol", false},
		{"icmp frag-needed to VIP", icmp4Error(t, vipTCP, vipTCP, layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded), xdpDrop, "unsupported_protocol", false},
		{"non-first fragment", fragment4(t, vipTCP, tcp), xdpDrop, "fragment", false},
		{"first fragment", firstFragment4(t, vipTCP, 80), xdpDrop, "fragment", false},
		{"truncated tcp", truncL4, xdpDrop, "truncated_l4", false},
		{"ip length past the frame", withIPField(short, 2, 0x05, 0xdc), xdpDrop, "bad_ip_length", false},
		{"ip length below ihl", withIPField(short, 2, 0, 19), xdpDrop, "bad_ip_length", false},
		{"ip version 6 in an IPv4 ethertype", withIPField(short, 0, 0x65), xdpDrop, "bad_ip_version", false},
		{"empty table", frame4(t, vipEmpty, tcp, 80), xdpDrop, "no_backend", false},
		{"unresolved backend", frame4(t, vipNoNeigh, tcp, 80), xdpDrop, "no_neighbor", false},
		{"ihl 4", withIHL(short, 14, 4), xdpPass, "", true},
		{"14 bytes", short[:14], xdpPass, "", true},
		{"cut in the ip header", short[:30], xdpPass, "", true},
		{"vlan tag cut", frame4VLAN(t, layers.EthernetTypeDot1Q, vipTCP, tcp, 80)[:16], xdpPass, "", true},
	}
}

func TestLBFrames(t *testing.T) {
	lb := loadTestLB(t)
	tab := lbTestTable(t)
	for _, tc := range lbCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			verdict, out, d, id := lbRun(t, lb, tc.frame)
			if verdict != tc.verdict {
				t.Fatalf("verdict %d, want %d (counters %+v)", verdict, tc.verdict, d)
			}
			want := LBCounters{Seen: 1, Drops: map[string]uint64{}}
			switch {
			case tc.verdict == xdpTX:
				want.Forwarded = 1
				goOut, _, ok := goForward(tc.frame, tab, id)
				if !ok {
					t.Fatal("the Go worker does not forward this frame")
				}
				if !bytes.Equal(out, goOut) {
					t.Errorf("output differs from the Go worker's\n got % x\nwant % x", out, goOut)
				}
			case tc.verdict == xdpDrop:
				want.Dropped = 1
				want.Drops[tc.drop] = 1
			case tc.bad:
				want.Malformed = 1
			default:
				want.Passed = 1
			}
			if tc.verdict != xdpTX && !bytes.Equal(out, tc.frame) {
				t.Errorf("frame changed")
			}
			d.FlowHits = 0 // TestLBFlowTable checks these
			if fmt.Sprint(d) != fmt.Sprint(want) {
				t.Errorf("counter delta %+v, want %+v", d, want)
			}
		})
	}
}

// flow4Golden are hash/flow_test.go's golden vectors with ports (TCP and
// UDP): the flow table records the hash that picked each flow's backend.
var flow4Golden = []struct {
	saddr, daddr string
	sport, dport uint16
	proto        uint8
	want         uint32
}{
	{"198.18.0.1", "198.19.0.10", 40000, 80, 6, 0x182e99af},
	{"198.19.0.10", "198.18.0.1", 80, 40000, 6, 0x8740f0cc},
	{"198.18.0.1", "198.19.0.10", 40000, 80, 17, 0x414a5f54},
	{"198.18.0.2", "198.19.0.10", 40000, 80, 6, 0x77c4b205},
	{"198.18.0.1", "198.19.0.10", 40001, 80, 6, 0x2199bf1d},
	{"198.18.255.254", "198.19.255.255", 65535, 443, 6, 0x7f735990},
}

func TestLBFlowHashGolden(t *testing.T) {
	lb := loadTestLB(t)
	tab := lbTestTable(t)
	var vips []VIPEntry
	for _, g := range flow4Golden {
		k := NewVIPKey(netip.MustParseAddr(g.daddr), 0, g.proto)
		vips = append(vips, VIPEntry{Key: k, ID: 0})
	}
	if err := lb.SetVIPs(vips); err != nil {
		t.Fatal(err)
	}
	for _, g := range flow4Golden {
		src, dst := netip.MustParseAddr(g.saddr), netip.MustParseAddr(g.daddr)
		ip := ipv4(src, dst, layers.IPProtocol(g.proto))
		var l4l gopacket.SerializableLayer
		if g.proto == 6 {
			tc := &layers.TCP{SrcPort: layers.TCPPort(g.sport), DstPort: layers.TCPPort(g.dport), SYN: true, Window: 1}
			_ = tc.SetNetworkLayerForChecksum(ip)
			l4l = tc
		} else {
			u := &layers.UDP{SrcPort: layers.UDPPort(g.sport), DstPort: layers.UDPPort(g.dport)}
			_ = u.SetNetworkLayerForChecksum(ip)
			l4l = u
		}
		frame := serialize(t, eth(layers.EthernetTypeIPv4), ip, l4l, payload)
		verdict, out, _, _ := lbRun(t, lb, frame)
		if verdict != xdpTX {
			t.Fatalf("%s -> %s: verdict %d, want XDP_TX", g.saddr, g.daddr, verdict)
		}
		fv, ok := flowOf(t, lb, frame)
		if !ok {
			t.Fatalf("%s -> %s: no flow table entry", g.saddr, g.daddr)
		}
		if fv.Hash != g.want {
			t.Errorf("%s:%d -> %s:%d proto %d: BPF hash %#08x, want %#08x", g.saddr, g.sport, g.daddr, g.dport, g.proto, fv.Hash, g.want)
		}
		want := lbTestBackends()[tab.Lookup(g.want)].Addr.As4()
		if got := [4]byte(out[30:34]); got != want || fv.Backend != uint32(tab.Lookup(g.want)) {
			t.Errorf("%s -> %s: sent to %v (id %d), want %v", g.saddr, g.daddr, netip.AddrFrom4(got), fv.Backend, netip.AddrFrom4(want))
		}
	}
}

// TestLBFlowTable: established flows keep their backend across table
// changes, a TCP SYN always takes the current table's choice, and a flow
// whose backend id was freed picks again.
func TestLBFlowTable(t *testing.T) {
	lb := loadTestLB(t)
	tab := lbTestTable(t)
	ack := tcpFrame(t, vipTCP, 41000, 80, "A", 0, false, 0)
	syn := tcpFrame(t, vipTCP, 41000, 80, "S", 0, false, 0)
	udp := udpFrame(t, vipUDP, 53, 10)
	backendOf := func(frame []byte, wantHit bool) int {
		t.Helper()
		verdict, out, d, _ := lbRun(t, lb, frame)
		if verdict != xdpTX {
			t.Fatalf("verdict %d, want XDP_TX (%+v)", verdict, d)
		}
		if hit := d.FlowHits == 1; hit != wantHit {
			t.Errorf("flow table hit %v, want %v", hit, wantHit)
		}
		dst := netip.AddrFrom4([4]byte(out[30:34]))
		for i, b := range lbTestBackends() {
			if b.Addr == dst {
				return i
			}
		}
		t.Fatalf("sent to unknown backend %v", dst)
		return -1
	}
	_, first, _ := goForward(ack, tab, 0)
	_, firstUDP, _ := goForward(udp, tab, 0)
	if got := backendOf(ack, false); got != first {
		t.Fatalf("new flow went to backend %d, Maglev says %d", got, first)
	}
	if got := backendOf(udp, false); got != firstUDP {
		t.Fatalf("new UDP flow went to backend %d, Maglev says %d", got, firstUDP)
	}
	other := (first + 1) % 3
	otherUDP := (firstUDP + 1) % 3
	if err := lb.SetTable(0, fill(lbTestTableSize, uint32(other))); err != nil {
		t.Fatal(err)
	}
	if err := lb.SetTable(1, fill(lbTestTableSize, uint32(otherUDP))); err != nil {
		t.Fatal(err)
	}
	if got := backendOf(ack, true); got != first {
		t.Errorf("established flow moved to %d after a table change, want %d", got, first)
	}
	if got := backendOf(udp, true); got != firstUDP {
		t.Errorf("established UDP flow moved to %d after a table change, want %d", got, firstUDP)
	}
	if got := backendOf(syn, false); got != other {
		t.Errorf("SYN went to %d, want the table's %d", got, other)
	}
	if got := backendOf(ack, true); got != other {
		t.Errorf("flow after the SYN went to %d, want %d", got, other)
	}
	// Free the flow's backend id; the table points at the first one again.
	bs := lbTestBackends()
	bs[other] = LBBackend{}
	if err := lb.SetBackends(bs); err != nil {
		t.Fatal(err)
	}
	if err := lb.SetTable(0, fill(lbTestTableSize, uint32(first))); err != nil {
		t.Fatal(err)
	}
	if got := backendOf(ack, false); got != first {
		t.Errorf("flow of a freed backend went to %d, want %d", got, first)
	}
	// A smaller set frees the ids past its end.
	if err := lb.SetBackends(lbTestBackends()[:1]); err != nil {
		t.Fatal(err)
	}
	if err := lb.SetTable(1, fill(lbTestTableSize, 0)); err != nil {
		t.Fatal(err)
	}
	if firstUDP != 0 {
		if got := backendOf(udp, false); got != 0 {
			t.Errorf("flow of an id past the new set went to %d, want 0", got)
		}
	}
}

func TestLBBackendCounters(t *testing.T) {
	lb := loadTestLB(t)
	tab := lbTestTable(t)
	frames := [][]byte{
		tcpFrame(t, vipTCP, 42000, 80, "S", 0, false, 0),
		tcpFrame(t, vipTCP, 42001, 80, "S", 0, false, 300),
		udpFrame(t, vipUDP, 53, 20),
		udpFrame(t, vipUDP, 53, 20),
	}
	want := make([]LBBackendCounters, len(lbTestBackends()))
	for _, f := range frames {
		_, bi, _ := goForward(f, tab, 0)
		want[bi].Packets++
		want[bi].Bytes += uint64(len(f))
		if v, _, _, _ := lbRun(t, lb, f); v != xdpTX {
			t.Fatalf("verdict %d", v)
		}
	}
	got, err := lb.BackendCounters()
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("BackendCounters = %v, want %v", got, want)
	}
	c, err := lb.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if c.Seen != c.Forwarded+c.Passed+c.Malformed+c.Dropped || c.Forwarded != uint64(len(frames)) {
		t.Errorf("counters %+v", c)
	}
}

func TestLBArgs(t *testing.T) {
	testenv.Root(t, "loads the lb program (BPF_PROG_TEST_RUN)")
	for _, o := range []LBOptions{
		{FlowTableSize: -1},
		{TableSize: hash.MaxTableSize + 1},
		{MaxVIPs: -1},
		{MaxVIPs: 1 << 20, TableSize: 65537},
		{MaxBackends: -1},
	} {
		if lb, err := LoadLB(o); err == nil {
			lb.Close()
			t.Errorf("LoadLB(%+v) accepted", o)
		}
	}
	lb, err := LoadLB(LBOptions{FlowTableSize: 64, TableSize: lbTestTableSize, MaxVIPs: 2, MaxBackends: 4})
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	if _, err := lb.Attach(1, ModeGeneric); !errors.Is(err, ErrNoSource) {
		t.Errorf("Attach before SetSource = %v, want ErrNoSource", err)
	}
	bad := []struct {
		name string
		err  error
	}{
		{"ipv6 VIP", lb.SetVIPs([]VIPEntry{{Key: NewVIPKey(vip6, 443, 6)}})},
		{"VIP index out of range", lb.SetVIPs([]VIPEntry{{Key: NewVIPKey(vipTCP, 80, 6), ID: 2}})},
		{"table of VIP out of range", lb.SetTable(2, fill(lbTestTableSize, 0))},
		{"table of the wrong size", lb.SetTable(0, fill(lbTestTableSize-1, 0))},
		{"table with an id out of range", lb.SetTable(0, fill(lbTestTableSize, 4))},
		{"too many backends", lb.SetBackends(make([]LBBackend, 5))},
		{"ipv6 backend", lb.SetBackends([]LBBackend{{Addr: vip6}})},
		{"mtu 0", lb.SetSource(lbSrc, lbMAC, 0)},
		{"mtu 65536", lb.SetSource(lbSrc, lbMAC, 65536)},
	}
	for _, b := range bad {
		if b.err == nil {
			t.Errorf("%s: accepted", b.name)
		}
	}
	if err := lb.SetTable(1, fill(lbTestTableSize, hash.EmptySlot)); err != nil {
		t.Errorf("SetTable of empty slots: %v", err)
	}
	if got := lb.Options(); got.FlowTableSize != 64 || got.TableSize != lbTestTableSize {
		t.Errorf("Options() = %+v", got)
	}
	if err := lb.Close(); err != nil {
		t.Fatal(err)
	}
	if err := lb.SetSource(lbSrc, lbMAC, 1500); !errors.Is(err, ErrClosed) {
		t.Errorf("SetSource after Close = %v, want ErrClosed", err)
	}
	if _, err := lb.Counters(); !errors.Is(err, ErrClosed) {
		t.Errorf("Counters after Close = %v, want ErrClosed", err)
	}
}

// TestLBLayout checks the generated mirrors of the C structs the Go side
// writes, and the counter names against the map.
func TestLBLayout(t *testing.T) {
	spec, err := loadLb()
	if err != nil {
		t.Fatal(err)
	}
	if n := spec.Maps[lbMapCounters].ValueSize; int(n) != 8*lbCounterMax {
		t.Errorf("lb counters value has %d bytes, Go knows %d counters", n, lbCounterMax)
	}
	for name, size := range map[string]uintptr{
		lbMapBackends: unsafe.Sizeof(lbBackend{}), lbMapSource: unsafe.Sizeof(lbSource{}),
		lbMapFlows: unsafe.Sizeof(lbFlowValue{}), lbMapBackendStats: unsafe.Sizeof(lbBackendStats{}),
	} {
		if got := spec.Maps[name].ValueSize; uintptr(got) != size {
			t.Errorf("map %s: value size %d, Go %d", name, got, size)
		}
	}
	if got := spec.Maps[lbMapVips].KeySize; uintptr(got) != unsafe.Sizeof(VIPKey{}) {
		t.Errorf("lb vips key size %d, VIPKey %d", got, unsafe.Sizeof(VIPKey{}))
	}
	if got := binary.NativeEndian.Uint32([]byte{198, 18, 0, 1}); got != nativeAddr(lbSrc) {
		t.Errorf("nativeAddr(%v) = %#x", lbSrc, nativeAddr(lbSrc))
	}
}

// FuzzLB runs arbitrary frames through the program: a forwarded frame must
// be exactly the Go worker's, anything else must be passed untouched or
// dropped, and each frame is counted once.
func FuzzLB(f *testing.F) {
	for _, tc := range lbCases(f) {
		f.Add(tc.frame)
	}
	lb := loadTestLB(f)
	tab := lbTestTable(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 {
			return // BPF_PROG_TEST_RUN refuses frames shorter than Ethernet
		}
		verdict, out, d, id := lbRun(t, lb, frame)
		switch verdict {
		case xdpTX:
			goOut, _, ok := goForward(frame, tab, id)
			// A flow table entry made by an earlier input may point
			// elsewhere than the table: compare with that backend.
			if fv, found := flowOf(t, lb, frame); found && d.FlowHits == 1 {
				goOut, ok = goForwardTo(frame, int(fv.Backend), id)
			}
			if !ok || !bytes.Equal(out, goOut) {
				t.Fatalf("forwarded frame differs from the Go worker's (ok %v)\n got % x\nwant % x", ok, out, goOut)
			}
		case xdpPass:
			if !bytes.Equal(out, frame) {
				t.Fatalf("passed frame changed")
			}
		case xdpDrop:
		default:
			t.Fatalf("verdict %d", verdict)
		}
		if d.Seen != 1 || d.Forwarded+d.Passed+d.Malformed+d.Dropped != 1 {
			t.Fatalf("counter delta %+v", d)
		}
	})
}

// goForwardTo is goForward with the backend given.
func goForwardTo(frame []byte, bi int, id uint16) ([]byte, bool) {
	var fl packet.Flow
	if packet.ParseIPv4(frame, &fl) != packet.OK || bi >= len(lbTestBackends()) {
		return nil, false
	}
	be := lbTestBackends()[bi]
	const headroom = 256
	buf := make([]byte, headroom+len(frame))
	copy(buf[headroom:], frame)
	off, n, ok := packet.EncapIPIP(buf, headroom, len(frame), &fl, lbSrc, be.Addr.As4(), lbMAC, be.MAC, id, lbTestMTU+int(fl.L3Off))
	return buf[off : off+n], ok
}

// loadLBBench loads the benchmark harness xlb_lb_bench on lb's maps.
func loadLBBench(b *testing.B, lb *LB) *ebpf.Program {
	spec, err := lbSpec(lb.opts)
	if err != nil {
		b.Fatal(err)
	}
	m := lb.objs.lbMaps
	var objs struct {
		Bench *ebpf.Program `ebpf:"xlb_lb_bench"`
	}
	opts := &ebpf.CollectionOptions{MapReplacements: map[string]*ebpf.Map{
		lbMapVips: m.Vips, lbMapMaglev: m.Maglev, lbMapBackends: m.Backends, lbMapBackendStats: m.BackendStats,
		lbMapFlows: m.Flows, lbMapSource: m.Source, lbMapIpIds: m.IpIds, lbMapCounters: m.Counters,
	}}
	if err := spec.LoadAndAssign(&objs, opts); err != nil {
		b.Fatalf("load xlb_lb_bench: %v", err)
	}
	b.Cleanup(func() { objs.Bench.Close() })
	return objs.Bench
}

// BenchmarkLB measures the program per packet through xlb_lb_bench, which
// undoes each encapsulation so that a repeated BPF_PROG_TEST_RUN runs on the
// same frame every time. The undo (an adjust_head and a 14-byte copy, a few
// ns) is included in the forwarded figures.
func BenchmarkLB(b *testing.B) {
	lb := loadTestLB(b)
	bench := loadLBBench(b, lb)
	for _, bc := range []struct {
		name  string
		frame []byte
		want  uint32
	}{
		{"established", tcpFrame(b, vipTCP, 43000, 80, "A", 0, false, 64), xdpTX}, // flow table hit
		{"syn", tcpFrame(b, vipTCP, 43001, 80, "S", 0, false, 64), xdpTX},         // Maglev pick, flow table update
		{"non-vip-pass", frame4(b, nonVIP, layers.IPProtocolTCP, 80), xdpPass},
	} {
		b.Run(bc.name, func(b *testing.B) {
			verdict, per, err := bench.Benchmark(bc.frame, b.N, b.ResetTimer)
			if err != nil {
				b.Fatal(err)
			}
			if verdict != bc.want {
				b.Fatalf("verdict %d, want %d", verdict, bc.want)
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
		})
	}
}

// TestLBSetTable reads the tables back through the map: what SetTable
// wrote into the map's memory is what the program looks up, and a table
// never set is empty.
func TestLBSetTable(t *testing.T) {
	lb := loadTestLB(t)
	tab := lbTestTable(t)
	want := map[uint32][]uint32{0: tab.Slots(), 1: tab.Slots(), 2: fill(lbTestTableSize, hash.EmptySlot),
		3: fill(lbTestTableSize, 3), 7: fill(lbTestTableSize, hash.EmptySlot)}
	for vip, slots := range want {
		for i, s := range slots {
			var got uint32
			if err := lb.objs.Maglev.Lookup(vip*lbTestTableSize+uint32(i), &got); err != nil {
				t.Fatal(err)
			}
			if got != s {
				t.Fatalf("VIP %d slot %d holds %#x, want %#x", vip, i, got, s)
			}
		}
	}
}
