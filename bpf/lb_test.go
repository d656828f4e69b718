package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf/labprogs"
	"github.com/xlbproject/xlb/datapath"
	"github.com/xlbproject/xlb/datapath/packet"
	"github.com/xlbproject/xlb/hash"
	"github.com/xlbproject/xlb/hash/hashtest"
	"github.com/xlbproject/xlb/internal/frametest"
	"github.com/xlbproject/xlb/internal/testenv"
)

// The lb fixtures: VIPs of every forwarding mode and family, IPv4 and IPv6
// backends, Maglev tables of two sizes. Every frame the program sends must
// equal what the Go worker sends for the same input: lbModel below is
// datapath/forward.go's per-packet logic over the same packet functions
// (Parse, hash.Flow4/Flow6, the same tables, Encap*, RewriteDSR, EchoReply,
// FragNeeded).
var (
	vipEmpty   = netip.MustParseAddr("198.18.0.12")   // 80/tcp, no table
	vipNoNeigh = netip.MustParseAddr("198.18.0.13")   // 80/tcp, unresolved backend
	vip4in6    = netip.MustParseAddr("198.18.0.14")   // 80/tcp, IPv6 backends
	vipGUE4    = netip.MustParseAddr("198.18.0.15")   // 80/tcp, GUE, IPv4 backends
	vipDSR4    = netip.MustParseAddr("198.18.0.16")   // 80/tcp, DSR
	vipFrag    = netip.MustParseAddr("198.18.0.18")   // every UDP port, fragments passed, no echo
	vipGUE6    = netip.MustParseAddr("2001:db8::15")  // 80/tcp, GUE, IPv6 backends
	vipDSR6    = netip.MustParseAddr("2001:db8::16")  // 80/tcp, DSR, IPv6 backends
	vip6in4    = netip.MustParseAddr("2001:db8::17")  // 80/tcp, IPv4 backends
	vipFrag6   = netip.MustParseAddr("2001:db8::18")  // every UDP port, fragments passed
	vipGUE6v4  = netip.MustParseAddr("2001:db8::19")  // 80/tcp, GUE, IPv4 backends
	router     = netip.MustParseAddr("198.18.5.1")    // sends ICMP errors
	router6    = netip.MustParseAddr("2001:db8:5::1") // sends ICMPv6 errors
	lbSrc      = [4]byte{198, 18, 0, 1}
	lbSrc6     = [16]byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}
	lbMAC      = [6]byte{0x02, 0, 0, 0, 0, 0xaa}
)

const (
	lbTestTableSize  = 251
	lbTestTableSize6 = 257 // IPv6 backends' tables: another size in the same map
	lbTestMTU        = 1500
	lbTestGUEPort    = 6080
	lbTestGen        = 7 // every backend's generation: IDs are index | 7<<16
	xdpDrop          = 1
	xdpTX            = 3
)

func lbTestBackends() []LBBackend {
	mac := func(b byte) [6]byte { return [6]byte{0x02, 0, 0, 0, 0, b} }
	return []LBBackend{
		{Addr: netip.MustParseAddr("198.18.0.50"), MAC: mac(0x50), Resolved: true, Generation: lbTestGen},
		{Addr: netip.MustParseAddr("198.18.0.51"), MAC: mac(0x51), Resolved: true, Generation: lbTestGen},
		{Addr: netip.MustParseAddr("198.18.0.52"), MAC: mac(0x52), Resolved: true, Generation: lbTestGen},
		{Addr: netip.MustParseAddr("198.18.0.53"), MAC: mac(0x53), Generation: lbTestGen},
		{Addr: netip.MustParseAddr("2001:db8::50"), MAC: mac(0x60), Resolved: true, Generation: lbTestGen},
		{Addr: netip.MustParseAddr("2001:db8::51"), MAC: mac(0x61), Resolved: true, Generation: lbTestGen},
		{Addr: netip.MustParseAddr("2001:db8::52"), MAC: mac(0x62), Resolved: true, Generation: lbTestGen},
	}
}

// lbTable is a VIP's Maglev table and the backend index of each of its
// members (hash.Table slots hold member positions).
type lbTable struct {
	tab     *hash.Table
	members []int
}

func buildTable(t testing.TB, members []int, size uint32) lbTable {
	var hb []hash.Backend
	for _, i := range members {
		hb = append(hb, hash.Backend{Addr: lbTestBackends()[i].Addr, Weight: 1})
	}
	tab, err := hash.Build(hb, size)
	if err != nil {
		t.Fatal(err)
	}
	return lbTable{tab, members}
}

// pick is the backend index the table gives hash h, or -1.
func (lt lbTable) pick(h uint32) int {
	if lt.tab == nil {
		return -1
	}
	bi := lt.tab.Lookup(h)
	if bi < 0 {
		return -1
	}
	return lt.members[bi]
}

// slots is the table as SetTable takes it: backend IDs.
func (lt lbTable) slots() []uint32 {
	out := make([]uint32, lt.tab.Size())
	for i, s := range lt.tab.Slots() {
		out[i] = hash.EmptySlot
		if s != hash.EmptySlot {
			out[i] = LBBackendID(lt.members[s], lbTestGen)
		}
	}
	return out
}

// lbTestVIP is one VIP of the fixture; table selects its table (lbTables).
type lbTestVIP struct {
	addr  netip.Addr
	port  uint16
	proto uint8
	fwd   LBForward
	echo  bool
	frags bool
	table int // -1: none
}

const (
	tab4 = iota
	tab6
	tabNoNeigh
)

func lbTables(t testing.TB) []lbTable {
	noNeigh := buildTable(t, []int{3}, lbTestTableSize)
	return []lbTable{
		tab4:       buildTable(t, []int{0, 1, 2}, lbTestTableSize),
		tab6:       buildTable(t, []int{4, 5, 6}, lbTestTableSize6),
		tabNoNeigh: noNeigh,
	}
}

// lbTestVIPs: the index is the VIP's ID.
var lbTestVIPs = []lbTestVIP{
	{vipTCP, 80, 6, LBForwardIPIP, true, false, tab4},
	{vipUDP, 0, 17, LBForwardIPIP, false, false, tab4},
	{vipEmpty, 80, 6, LBForwardIPIP, true, false, -1},
	{vipNoNeigh, 80, 6, LBForwardIPIP, true, false, tabNoNeigh},
	{vip6, 443, 6, LBForwardIPIP, true, false, tab6},
	{vip4in6, 80, 6, LBForwardIPIP, true, false, tab6},
	{vipGUE4, 80, 6, LBForwardGUE, true, false, tab4},
	{vipGUE6, 80, 6, LBForwardGUE, true, false, tab6},
	{vipDSR4, 80, 6, LBForwardDSR, true, false, tab4},
	{vipDSR6, 80, 6, LBForwardDSR, true, false, tab6},
	{vip6in4, 80, 6, LBForwardIPIP, true, false, tab4},
	{vipFrag, 0, 17, LBForwardIPIP, false, true, tab4},
	{vipFrag6, 0, 17, LBForwardIPIP, true, true, tab6},
	{vipGUE6v4, 80, 6, LBForwardGUE, true, false, tab4},
}

func lbTestEntries() []VIPEntry {
	var out []VIPEntry
	for i, v := range lbTestVIPs {
		e := VIPEntry{Key: NewVIPKey(v.addr, v.port, v.proto), ID: uint32(i), Forward: v.fwd,
			ICMPEcho: v.echo, PassFragments: v.frags}
		if v.fwd == LBForwardGUE {
			e.GUEPort = lbTestGUEPort
		}
		out = append(out, e)
	}
	return out
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
	lb, err := LoadLB(LBOptions{FlowTableSize: 4096, TableSize: lbTestTableSize, MaxVIPs: 16, MaxBackends: 16,
		MaglevSlots: 8*lbTestTableSize + 8*lbTestTableSize6})
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
	must(lb.SetBackends(lbTestBackends()))
	tabs := lbTables(t)
	for i, v := range lbTestVIPs {
		if v.table >= 0 {
			must(lb.SetTable(uint32(i), tabs[v.table].slots()))
		}
	}
	must(lb.SetVIPs(lbTestEntries()))
	must(lb.SetSource(lbSrc, lbMAC, lbTestMTU))
	must(lb.SetSource6(lbSrc6))
	return lb
}

// lbWant is what the Go worker does with a frame: its verdict, the frame it
// sends, the drop reason or event it counts and the backend index it picks.
type lbWant struct {
	verdict uint32
	out     []byte
	drop    string
	event   string // echo_reply, frag_needed_sent, icmp_error_forwarded
	backend int
}

// lbModel is datapath/forward.go's Forward for the fixture, for frames that
// reach the worker (to a VIP address, parsed past L3). backend >= 0 forces
// the backend the flow table would give (the Maglev pick otherwise); id is
// the outer IPv4 identification.
func lbModel(t testing.TB, frame []byte, backend int, id uint16) lbWant {
	var fl packet.Flow
	if r := packet.Parse(frame, &fl); r != packet.OK {
		return lbWant{verdict: xdpDrop, drop: r.String(), backend: -1}
	}
	dst := netip.AddrFrom16(fl.Dst6)
	if fl.Family == 4 {
		var a [4]byte
		binary.LittleEndian.PutUint32(a[:], fl.Dst)
		dst = netip.AddrFrom4(a)
	}
	const headroom = 256
	buf := make([]byte, headroom+len(frame)+256)
	copy(buf[headroom:], frame)
	send := func(off, n int, ok bool, event string, be int) lbWant {
		if !ok {
			return lbWant{verdict: xdpDrop, drop: "too_big", backend: be}
		}
		return lbWant{verdict: xdpTX, out: buf[off : off+n], event: event, backend: be}
	}
	vi := -1
	for i, v := range lbTestVIPs {
		if v.addr == dst && v.proto == fl.Proto && (v.port == fl.DstPort || v.port == 0) && (vi < 0 || v.port != 0) {
			vi = i
		}
	}
	if fl.ICMP == packet.ICMPEchoRequest {
		for _, v := range lbTestVIPs {
			if v.addr == dst {
				if !v.echo {
					return lbWant{verdict: xdpDrop, drop: "echo_disabled", backend: -1}
				}
				off, n, ok := packet.EchoReply(buf, headroom, len(frame), &fl)
				if !ok {
					return lbWant{verdict: xdpDrop, drop: "unsupported_icmp", backend: -1}
				}
				return send(off, n, true, "echo_reply", -1)
			}
		}
		return lbWant{verdict: xdpDrop, drop: "no_vip", backend: -1}
	}
	if vi < 0 {
		return lbWant{verdict: xdpDrop, drop: "no_vip", backend: -1}
	}
	v := lbTestVIPs[vi]
	var h uint32
	if fl.Family == 4 {
		h = hash.Flow4(fl.Src, fl.Dst, fl.Ports, fl.Proto)
	} else {
		h = hash.Flow6(&fl.Src6, &fl.Dst6, fl.Ports, fl.Proto)
	}
	bi := backend
	if bi < 0 && v.table >= 0 {
		bi = lbTables(t)[v.table].pick(h)
	}
	if bi < 0 {
		return lbWant{verdict: xdpDrop, drop: "no_backend", backend: -1}
	}
	be := lbTestBackends()[bi]
	if !be.Resolved {
		return lbWant{verdict: xdpDrop, drop: "no_neighbor", backend: bi}
	}
	event := ""
	if fl.ICMP == packet.ICMPError {
		event = "icmp_error_forwarded"
	}
	if v.fwd == LBForwardDSR {
		off, n, ok := packet.RewriteDSR(buf, headroom, len(frame), &fl, lbMAC, be.MAC)
		return send(off, n, ok, event, bi)
	}
	maxLen := lbTestMTU + int(fl.L3Off)
	var off, n, overhead int
	var ok bool
	switch {
	case v.fwd == LBForwardGUE && be.Addr.Is6():
		overhead = packet.GUE6Overhead
		off, n, ok = packet.EncapGUE6(buf, headroom, len(frame), &fl, lbSrc6, be.Addr.As16(), lbMAC, be.MAC, h, lbTestGUEPort, maxLen)
	case v.fwd == LBForwardGUE:
		overhead = packet.GUE4Overhead
		off, n, ok = packet.EncapGUE4(buf, headroom, len(frame), &fl, lbSrc, be.Addr.As4(), lbMAC, be.MAC, id, h, lbTestGUEPort, maxLen)
	case be.Addr.Is6():
		overhead = packet.IPIP6Overhead
		off, n, ok = packet.EncapIPIP6(buf, headroom, len(frame), &fl, lbSrc6, be.Addr.As16(), lbMAC, be.MAC, h, maxLen)
	default:
		overhead = packet.IPIPOverhead
		off, n, ok = packet.EncapIPIP(buf, headroom, len(frame), &fl, lbSrc, be.Addr.As4(), lbMAC, be.MAC, id, maxLen)
	}
	if !ok && fl.ICMP == packet.ICMPNone && (fl.Family == 6 || fl.DF) {
		if off, n, ok = packet.FragNeeded(buf, headroom, len(frame), &fl, lbTestMTU-overhead); ok {
			w := send(off, n, true, "frag_needed_sent", bi)
			w.drop = "too_big" // counted as a drop too, as the worker does
			return w
		}
	}
	return send(off, n, ok, event, bi)
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
		Malformed: a.Malformed - b.Malformed, FlowHits: a.FlowHits - b.FlowHits,
		EchoReplies: a.EchoReplies - b.EchoReplies, FragNeeded: a.FragNeeded - b.FragNeeded,
		ICMPErrors: a.ICMPErrors - b.ICMPErrors, ICMPRateLimited: a.ICMPRateLimited - b.ICMPRateLimited,
		SYNUntracked: a.SYNUntracked - b.SYNUntracked, Dropped: a.Dropped - b.Dropped,
		Drops: map[string]uint64{},
	}
	for k, v := range a.Drops {
		if v != b.Drops[k] {
			d.Drops[k] = v - b.Drops[k]
		}
	}
	return d
}

// voidFlowCaches moves the lb program's flow_epoch on, as a SYN that moves
// a flow does: every CPU's flow cache entry is void, so the next frames
// read the flow tables, where a test has changed an entry.
func voidFlowCaches(t testing.TB, lb *LB) {
	t.Helper()
	var e uint32
	if err := lb.objs.FlowEpoch.Get(&e); err != nil {
		t.Fatal(err)
	}
	if err := lb.objs.FlowEpoch.Set(e + 1); err != nil {
		t.Fatal(err)
	}
}

// flowKeys returns the flow table's keys of frame's 5-tuple (for an ICMP
// error, of the flow it is about), and whether it is IPv4.
func flowKeys(t testing.TB, frame []byte) (lbFlowKey4, lbFlowKey6, bool) {
	t.Helper()
	var fl packet.Flow
	if packet.Parse(frame, &fl) != packet.OK {
		t.Fatalf("flowKeys: frame does not parse")
	}
	return lbFlowKey4{Saddr: fl.Src, Daddr: fl.Dst, Ports: fl.Ports, Proto: fl.Proto},
		lbFlowKey6{Saddr: fl.Src6, Daddr: fl.Dst6, Ports: fl.Ports, Proto: fl.Proto}, fl.Family == 4
}

// flowOf returns the flow table entry of frame's 5-tuple (for an ICMP
// error, of the flow it is about).
func flowOf(t testing.TB, lb *LB, frame []byte) (lbFlowValue, bool) {
	t.Helper()
	k4, k6, v4 := flowKeys(t, frame)
	var v lbFlowValue
	var err error
	if v4 {
		err = lb.objs.Flows.Lookup(k4, &v)
	} else {
		err = lb.objs.Flows6.Lookup(k6, &v)
	}
	if errors.Is(err, ebpf.ErrKeyNotExist) {
		return v, false
	}
	if err != nil {
		t.Fatal(err)
	}
	return v, true
}

// setFlow rewrites the flow table entry of frame's 5-tuple, which exists.
func setFlow(t testing.TB, lb *LB, frame []byte, v lbFlowValue) {
	t.Helper()
	k4, k6, v4 := flowKeys(t, frame)
	var err error
	if v4 {
		err = lb.objs.Flows.Update(k4, v, ebpf.UpdateExist)
	} else {
		err = lb.objs.Flows6.Update(k6, v, ebpf.UpdateExist)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// deleteFlow removes the flow table entry of frame's 5-tuple, as the LRU
// evicts one.
func deleteFlow(t testing.TB, lb *LB, frame []byte) {
	t.Helper()
	k4, k6, v4 := flowKeys(t, frame)
	var err error
	if v4 {
		err = lb.objs.Flows.Delete(k4)
	} else {
		err = lb.objs.Flows6.Delete(k6)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// tcpFrame is a TCP frame from the client (of dst's family) with source
// port sport to dst:dport with the given flags ("S", "A", "SA"), TOS or
// traffic class, DF (IPv4), and n payload bytes.
func tcpFrame(t testing.TB, dst netip.Addr, sport, dport uint16, flags string, tos uint8, df bool, n int) []byte {
	tc := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 7, Ack: 9, Window: 512,
		SYN: bytes.Contains([]byte(flags), []byte("S")), ACK: bytes.Contains([]byte(flags), []byte("A"))}
	if dst.Is6() {
		ip := frametest.IPv6(client6, dst, layers.IPProtocolTCP)
		ip.TrafficClass = tos
		ip.FlowLabel = 0x12345
		_ = tc.SetNetworkLayerForChecksum(ip)
		return frametest.Serialize(t, eth(layers.EthernetTypeIPv6), ip, tc, gopacket.Payload(make([]byte, n)))
	}
	ip := frametest.IPv4(client, dst, layers.IPProtocolTCP)
	ip.TOS = tos
	if df {
		ip.Flags = layers.IPv4DontFragment
	}
	_ = tc.SetNetworkLayerForChecksum(ip)
	return frametest.Serialize(t, eth(layers.EthernetTypeIPv4), ip, tc, gopacket.Payload(make([]byte, n)))
}

// udpFrame is a UDP frame from the client:40000 to dst:port with n payload
// bytes (an odd n gives an odd IP length).
func udpFrame(t testing.TB, dst netip.Addr, port uint16, n int) []byte {
	u := &layers.UDP{SrcPort: 40000, DstPort: layers.UDPPort(port)}
	pl := make([]byte, n)
	for i := range pl {
		pl[i] = byte(i*7 + 1)
	}
	if dst.Is6() {
		ip := frametest.IPv6(client6, dst, layers.IPProtocolUDP)
		_ = u.SetNetworkLayerForChecksum(ip)
		return frametest.Serialize(t, eth(layers.EthernetTypeIPv6), ip, u, gopacket.Payload(pl))
	}
	ip := frametest.IPv4(client, dst, layers.IPProtocolUDP)
	_ = u.SetNetworkLayerForChecksum(ip)
	return frametest.Serialize(t, eth(layers.EthernetTypeIPv4), ip, u, gopacket.Payload(pl))
}

// withIPField returns a copy of f (untagged) with IP header bytes
// [off, off+len(b)) replaced by b and checksums left as they were.
func withIPField(f []byte, off int, b ...byte) []byte {
	g := append([]byte(nil), f...)
	copy(g[14+off:], b)
	return g
}

// vlan tags an untagged frame with 802.1Q VLAN 100, priority 5.
func vlan(f []byte) []byte {
	g := append([]byte(nil), f[:12]...)
	g = append(g, 0x81, 0x00, 0xa0, 100)
	return append(g, f[12:]...)
}

// pad appends Ethernet padding (zeros) up to n bytes.
func pad(f []byte, n int) []byte {
	return append(append([]byte(nil), f...), make([]byte, max(0, n-len(f)))...)
}

// icmpErrorAbout is an ICMP (IPv4) or ICMPv6 error of type/code from a
// router to vip about a packet the backend sent from vip:vport to the
// client:cport (TCP), quoting its header and 8 bytes (with extra payload
// bytes more). The 4 bytes after the type and code carry an MTU.
func icmpErrorAbout(t testing.TB, vip netip.Addr, vport, cport uint16, typ, code uint8, extra int) []byte {
	tc := &layers.TCP{SrcPort: layers.TCPPort(vport), DstPort: layers.TCPPort(cport), ACK: true, Window: 1}
	pl := gopacket.Payload(make([]byte, extra))
	if vip.Is6() {
		inner := frametest.IPv6(vip, client6, layers.IPProtocolTCP)
		_ = tc.SetNetworkLayerForChecksum(inner)
		quoted := frametest.Serialize(t, inner, tc, pl)
		ip := frametest.IPv6(router6, vip, layers.IPProtocolICMPv6)
		ic := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, code)}
		_ = ic.SetNetworkLayerForChecksum(ip)
		return frametest.Serialize(t, eth(layers.EthernetTypeIPv6), ip, ic, gopacket.Payload(append([]byte{0, 0, 5, 0}, quoted...)))
	}
	inner := frametest.IPv4(vip, client, layers.IPProtocolTCP)
	inner.Flags = layers.IPv4DontFragment
	_ = tc.SetNetworkLayerForChecksum(inner)
	quoted := frametest.Serialize(t, inner, tc, pl)
	ip := frametest.IPv4(router, vip, layers.IPProtocolICMPv4)
	return frametest.Serialize(t, eth(layers.EthernetTypeIPv4), ip,
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, code), Seq: 1400}, gopacket.Payload(quoted))
}

// lbCase is one fixture: a frame, the verdict the program must give and
// what it counts. For XDP_TX the output must be the Go worker's (lbModel)
// byte for byte, with the same event; a drop must carry the Go worker's
// reason (lbModel's, for frames that reach it).
type lbCase struct {
	name    string
	frame   []byte
	verdict uint32
	drop    string // the drop reason for xdpDrop
	bad     bool   // counted Malformed (and passed)
	event   string // for xdpTX: "" (a forward), echo_reply, frag_needed_sent, icmp_error_forwarded
}

func lbCases(t testing.TB) []lbCase {
	tcp := layers.IPProtocolTCP
	short := tcpFrame(t, vipTCP, 40000, 80, "A", 0, false, 0)
	short6 := tcpFrame(t, vip6, 40000, 443, "A", 0, false, 0)
	big := lbTestMTU - 20 - 20 + 1 // TCP payload of a 1501-byte IPv4 packet
	ext := func(dst netip.Addr, port uint16, exts ...layers.IPProtocol) []byte {
		return frame6Ext(t, dst, exts, tcp, port)
	}
	hbh, dstopts, rt, frag := layers.IPProtocolIPv6HopByHop, layers.IPProtocolIPv6Destination, layers.IPProtocolIPv6Routing, layers.IPProtocolIPv6Fragment
	icmp4Opts := frametest.WithIHL(icmp4(t, vipTCP), 14, 6) // IHL 6: the echo data's first word read as an option
	unreach, fragNeeded := uint8(layers.ICMPv4TypeDestinationUnreachable), uint8(layers.ICMPv4CodeFragmentationNeeded)
	return []lbCase{
		// IPIP, IPv4 to IPv4 (packet.EncapIPIP).
		{"ipip tcp syn", tcpFrame(t, vipTCP, 40000, 80, "S", 0, false, 0), xdpTX, "", false, ""},
		{"ipip tcp ack", tcpFrame(t, vipTCP, 40001, 80, "A", 0, false, 100), xdpTX, "", false, ""},
		{"ipip tcp syn-ack", tcpFrame(t, vipTCP, 40002, 80, "SA", 0, false, 0), xdpTX, "", false, ""},
		{"ipip tos and df", tcpFrame(t, vipTCP, 40003, 80, "A", 0xb9, true, 10), xdpTX, "", false, ""},
		{"ipip udp wildcard", udpFrame(t, vipUDP, 53, 20), xdpTX, "", false, ""},
		{"ipip udp other port", udpFrame(t, vipUDP, 9999, 20), xdpTX, "", false, ""},
		{"ipip ethernet padding", pad(udpFrame(t, vipUDP, 53, 0), 60), xdpTX, "", false, ""},
		{"ipip 802.1Q", frame4VLAN(t, layers.EthernetTypeDot1Q, vipTCP, tcp, 80), xdpTX, "", false, ""},
		{"ipip 802.1ad", frame4VLAN(t, layers.EthernetTypeQinQ, vipUDP, layers.IPProtocolUDP, 53), xdpTX, "", false, ""},
		{"ipip ip options", frame4Opts(t, vipTCP, 80, 9), xdpTX, "", false, ""},
		{"ipip fits the mtu exactly", udpFrame(t, vipUDP, 53, lbTestMTU-20-20-8), xdpTX, "", false, ""},
		// IPv6 VIPs: IP6IP6, 6in4; IPv4 VIP to IPv6 backends: 4in6.
		{"ip6ip6 tcp", tcpFrame(t, vip6, 40000, 443, "S", 0x28, false, 50), xdpTX, "", false, ""},
		{"ip6ip6 802.1Q", vlan(tcpFrame(t, vip6, 40001, 443, "A", 0, false, 5)), xdpTX, "", false, ""},
		{"ip6ip6 ethernet padding", pad(tcpFrame(t, vip6, 40002, 443, "A", 0, false, 0), 100), xdpTX, "", false, ""},
		{"ip6ip6 extension headers", ext(vip6, 443, hbh, dstopts, rt), xdpTX, "", false, ""},
		{"ip6ip6 four extension headers", ext(vip6, 443, hbh, dstopts, rt, dstopts), xdpTX, "", false, ""},
		{"4in6 tcp", tcpFrame(t, vip4in6, 40000, 80, "S", 0x10, true, 30), xdpTX, "", false, ""},
		{"6in4 tcp", tcpFrame(t, vip6in4, 40000, 80, "A", 0x48, false, 30), xdpTX, "", false, ""},
		// GUE (packet.EncapGUE4, EncapGUE6: the UDP checksum over the
		// whole packet, odd lengths included).
		{"gue4 tcp", tcpFrame(t, vipGUE4, 40000, 80, "S", 0, true, 40), xdpTX, "", false, ""},
		{"gue4 802.1Q", vlan(tcpFrame(t, vipGUE4, 40001, 80, "A", 0, false, 3)), xdpTX, "", false, ""},
		{"gue6 tcp", tcpFrame(t, vipGUE6, 40000, 80, "S", 0, false, 40), xdpTX, "", false, ""},
		{"gue6 odd length", tcpFrame(t, vipGUE6, 40001, 80, "A", 0, false, 1001), xdpTX, "", false, ""},
		{"gue6 802.1Q", vlan(tcpFrame(t, vipGUE6, 40002, 80, "A", 0, false, 777)), xdpTX, "", false, ""},
		{"gue6 fits the mtu exactly", tcpFrame(t, vipGUE6, 40003, 80, "A", 0, false, lbTestMTU-52-40-20), xdpTX, "", false, ""},
		{"gue6 ipv4 backends", tcpFrame(t, vipGUE6v4, 40000, 80, "A", 0, false, 9), xdpTX, "", false, ""},
		// L2 DSR (packet.RewriteDSR): MACs only, padding kept, no MTU check.
		{"dsr4", tcpFrame(t, vipDSR4, 40000, 80, "S", 0, false, 10), xdpTX, "", false, ""},
		{"dsr4 padding", pad(tcpFrame(t, vipDSR4, 40001, 80, "A", 0, false, 0), 64), xdpTX, "", false, ""},
		{"dsr4 bigger than the mtu", tcpFrame(t, vipDSR4, 40002, 80, "A", 0, true, big), xdpTX, "", false, ""},
		// Padding past a page: the test run hands it over in fragments,
		// which the frame's length must count.
		{"ipip padding in fragments", pad(udpFrame(t, vipUDP, 53, 1000), 4000), xdpTX, "", false, ""},
		{"dsr4 padding in fragments", pad(tcpFrame(t, vipDSR4, 40003, 80, "A", 0, false, 1000), 4000), xdpTX, "", false, ""},
		{"dsr6 802.1Q", vlan(tcpFrame(t, vipDSR6, 40000, 80, "S", 0, false, 10)), xdpTX, "", false, ""},
		// ICMP echo (packet.EchoReply).
		{"echo", icmp4(t, vipTCP), xdpTX, "", false, "echo_reply"},
		{"echo padded", pad(icmp4(t, vipTCP), 80), xdpTX, "", false, "echo_reply"},
		{"echo6", icmp6(t, vip6), xdpTX, "", false, "echo_reply"},
		{"echo disabled", icmp4(t, vipUDP), xdpDrop, "echo_disabled", false, ""},
		{"echo ip options", icmp4Opts, xdpDrop, "unsupported_icmp", false, ""},
		{"echo6 extension header", frame6Ext(t, vip6, []layers.IPProtocol{hbh}, layers.IPProtocolICMPv6, 0), xdpDrop, "unsupported_icmp", false, ""},
		// ICMP errors about a VIP flow go to its backend.
		{"icmp frag-needed to the flow's backend", icmpErrorAbout(t, vipTCP, 80, 40100, unreach, fragNeeded, 0), xdpTX, "", false, "icmp_error_forwarded"},
		{"icmp time exceeded, long quote", icmpErrorAbout(t, vipTCP, 80, 40101, 11, 0, 300), xdpTX, "", false, "icmp_error_forwarded"},
		{"icmp error gue", icmpErrorAbout(t, vipGUE4, 80, 40102, unreach, 3, 0), xdpTX, "", false, "icmp_error_forwarded"},
		{"icmp error dsr", icmpErrorAbout(t, vipDSR4, 80, 40103, unreach, 1, 0), xdpTX, "", false, "icmp_error_forwarded"},
		{"icmpv6 packet too big", icmpErrorAbout(t, vip6, 443, 40100, 2, 0, 0), xdpTX, "", false, "icmp_error_forwarded"},
		{"icmpv6 error gue6", icmpErrorAbout(t, vipGUE6, 80, 40101, 1, 4, 33), xdpTX, "", false, "icmp_error_forwarded"},
		{"icmp error, no such VIP port", icmpErrorAbout(t, vipTCP, 81, 40100, unreach, fragNeeded, 0), xdpDrop, "no_vip", false, ""},
		{"icmp error, cut quote", withIPField(icmpErrorAbout(t, vipTCP, 80, 40100, unreach, fragNeeded, 0), 2, 0, 52)[:14+52], xdpDrop, "truncated_icmp", false, ""},
		{"icmp redirect", withIPField(icmpErrorAbout(t, vipTCP, 80, 40100, unreach, 0, 0), 20, 5), xdpDrop, "unsupported_icmp", false, ""},
		// Too big: frag-needed / packet-too-big back to the client
		// (packet.FragNeeded), only with DF over IPv4.
		{"too big with df", tcpFrame(t, vipTCP, 40010, 80, "A", 0, true, big), xdpTX, "too_big", false, "frag_needed_sent"},
		{"too big with df, 802.1Q", vlan(tcpFrame(t, vipTCP, 40011, 80, "A", 0, true, big)), xdpTX, "too_big", false, "frag_needed_sent"},
		{"too big, odd length", tcpFrame(t, vipGUE4, 40012, 80, "A", 0, true, big+2), xdpTX, "too_big", false, "frag_needed_sent"},
		{"too big without df", tcpFrame(t, vipTCP, 40013, 80, "A", 0, false, big), xdpDrop, "too_big", false, ""},
		{"too big by one byte", udpFrame(t, vipUDP, 53, lbTestMTU-20-20-8+1), xdpDrop, "too_big", false, ""},
		{"too big ipv6", tcpFrame(t, vip6, 40010, 443, "A", 0, false, lbTestMTU-40), xdpTX, "too_big", false, "frag_needed_sent"},
		{"too big gue6", tcpFrame(t, vipGUE6, 40010, 80, "A", 0, false, lbTestMTU-52-40-20+1), xdpTX, "too_big", false, "frag_needed_sent"},
		{"too big 4in6 odd", tcpFrame(t, vip4in6, 40010, 80, "A", 0, true, lbTestMTU-40-20-20+7), xdpTX, "too_big", false, "frag_needed_sent"},
		// Fragments: the VIP address's policy.
		{"non-first fragment, drop", fragment4(t, vipTCP, tcp), xdpDrop, "fragment", false, ""},
		{"first fragment, drop", firstFragment4(t, vipTCP, 80), xdpDrop, "fragment", false, ""},
		{"fragment, pass", fragment4(t, vipFrag, layers.IPProtocolUDP), xdpPass, "", false, ""},
		{"ipv6 fragment, drop", ext(vip6, 443, frag), xdpDrop, "fragment", false, ""},
		{"ipv6 fragment, pass", frame6Ext(t, vipFrag6, []layers.IPProtocol{hbh, frag}, layers.IPProtocolUDP, 53), xdpPass, "", false, ""},
		// What the parser refuses, with its reasons.
		{"five extension headers", ext(vip6, 443, hbh, dstopts, rt, dstopts, dstopts), xdpDrop, "too_many_ext_headers", false, ""},
		{"extension header past the payload", withIPField(ext(vip6, 443, hbh), 4, 0, 4), xdpDrop, "truncated_ext_header", false, ""},
		{"ipv6 payload length past the frame", withIPField(short6, 4, 0x05, 0xdc), xdpDrop, "bad_ipv6_length", false, ""},
		{"ipv6 version 4", withIPField(short6, 0, 0x46), xdpDrop, "bad_ip_version", false, ""},
		{"ipv6 truncated tcp", withIPField(short6, 4, 0, 12)[:14+40+12], xdpDrop, "truncated_l4", false, ""},
		{"ipv6 other protocol", frame6(t, vip6, layers.IPProtocolUDP, 443), xdpDrop, "no_vip", false, ""},
		{"ipv6 no next header", withIPField(short6, 6, 59), xdpDrop, "unsupported_protocol", false, ""},
		{"VIP address, other port", frame4(t, vipTCP, tcp, 81), xdpDrop, "no_vip", false, ""},
		{"VIP address, other protocol", frame4(t, vipTCP, layers.IPProtocolUDP, 80), xdpDrop, "no_vip", false, ""},
		{"truncated tcp", withIPField(short, 2, 0, 30)[:14+30], xdpDrop, "truncated_l4", false, ""},
		// The IP length, not the frame, cuts the L4 header (lb_fast4's
		// bounds, by one byte).
		{"ip length cuts the tcp header", withIPField(short, 2, 0, 39), xdpDrop, "truncated_l4", false, ""},
		{"ip length cuts the udp header", withIPField(udpFrame(t, vipUDP, 53, 4), 2, 0, 27), xdpDrop, "truncated_l4", false, ""},
		{"ip length ends with the udp header", withIPField(udpFrame(t, vipUDP, 53, 4), 2, 0, 28), xdpTX, "", false, ""},
		{"ip length past the frame", withIPField(short, 2, 0x05, 0xdc), xdpDrop, "bad_ip_length", false, ""},
		{"ip length below ihl", withIPField(short, 2, 0, 19), xdpDrop, "bad_ip_length", false, ""},
		{"ip version 6 in an IPv4 ethertype", withIPField(short, 0, 0x65), xdpDrop, "bad_ip_version", false, ""},
		{"esp", withIPField(short, 9, 50), xdpDrop, "unsupported_protocol", false, ""},
		{"no table", frame4(t, vipEmpty, tcp, 80), xdpDrop, "no_backend", false, ""},
		{"unresolved backend", frame4(t, vipNoNeigh, tcp, 80), xdpDrop, "no_neighbor", false, ""},
		// Not for a VIP address, or not parsed that far: the kernel's.
		{"non-VIP", frame4(t, nonVIP, tcp, 80), xdpPass, "", false, ""},
		{"non-VIP ipv6", frame6(t, nonVIP6, tcp, 443), xdpPass, "", false, ""},
		{"non-VIP icmp error", icmpErrorAbout(t, nonVIP, 80, 40000, unreach, fragNeeded, 0), xdpPass, "", false, ""},
		{"arp", arp(t), xdpPass, "", false, ""},
		{"ihl 4", frametest.WithIHL(short, 14, 4), xdpPass, "", true, ""},
		{"14 bytes", short[:14], xdpPass, "", true, ""},
		{"cut in the ip header", short[:30], xdpPass, "", true, ""},
		{"cut in the ipv6 header", short6[:50], xdpPass, "", true, ""},
		{"vlan tag cut", frame4VLAN(t, layers.EthernetTypeDot1Q, vipTCP, tcp, 80)[:16], xdpPass, "", true, ""},
	}
}

func TestLBFrames(t *testing.T) {
	lb := loadTestLB(t)
	for _, tc := range lbCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			verdict, out, d, id := lbRun(t, lb, tc.frame)
			if verdict != tc.verdict {
				t.Fatalf("verdict %d, want %d (counters %+v)", verdict, tc.verdict, d)
			}
			want := LBCounters{Seen: 1, Drops: map[string]uint64{}}
			switch {
			case tc.verdict == xdpTX:
				m := lbModel(t, tc.frame, -1, id)
				if m.verdict != xdpTX || m.event != tc.event {
					t.Fatalf("the Go worker does not send this (%+v)", m)
				}
				if !bytes.Equal(out, m.out) {
					t.Errorf("output differs from the Go worker's\n got % x\nwant % x", out, m.out)
				}
				switch tc.event {
				case "echo_reply":
					want.EchoReplies = 1
				case "frag_needed_sent":
					want.FragNeeded, want.Dropped, want.Drops["too_big"] = 1, 1, 1
				case "icmp_error_forwarded":
					want.ICMPErrors, want.Forwarded = 1, 1
				default:
					want.Forwarded = 1
				}
			case tc.verdict == xdpDrop:
				want.Dropped = 1
				want.Drops[tc.drop] = 1
				if m := lbModel(t, tc.frame, -1, id); m.drop != tc.drop {
					t.Errorf("the Go worker drops it as %q", m.drop)
				}
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

// TestLBFlowHashGolden checks the native program's IPv4 flow hash against
// the golden vectors that package hash is held to, as the flow table
// records it, and the backend its Maglev slot names.
func TestLBFlowHashGolden(t *testing.T) {
	lb := loadTestLB(t)
	var vips []VIPEntry
	// The rows with ports: the flow table records the hash that picked
	// each flow's backend.
	var golden []hashtest.Golden
	for _, g := range hashtest.Flow4 {
		if g.Proto == 6 || g.Proto == 17 {
			golden = append(golden, g)
		}
	}
	for _, g := range golden {
		vips = append(vips, VIPEntry{Key: NewVIPKey(netip.MustParseAddr(g.Dst), 0, g.Proto), ID: 0})
	}
	if err := lb.SetVIPs(vips); err != nil {
		t.Fatal(err)
	}
	tab := lbTables(t)[tab4]
	for _, g := range golden {
		src, dst := netip.MustParseAddr(g.Src), netip.MustParseAddr(g.Dst)
		ip := frametest.IPv4(src, dst, layers.IPProtocol(g.Proto))
		var l4l gopacket.SerializableLayer
		if g.Proto == 6 {
			tc := &layers.TCP{SrcPort: layers.TCPPort(g.Sport), DstPort: layers.TCPPort(g.Dport), SYN: true, Window: 1}
			_ = tc.SetNetworkLayerForChecksum(ip)
			l4l = tc
		} else {
			u := &layers.UDP{SrcPort: layers.UDPPort(g.Sport), DstPort: layers.UDPPort(g.Dport)}
			_ = u.SetNetworkLayerForChecksum(ip)
			l4l = u
		}
		frame := frametest.Serialize(t, eth(layers.EthernetTypeIPv4), ip, l4l, payload)
		verdict, out, _, _ := lbRun(t, lb, frame)
		if verdict != xdpTX {
			t.Fatalf("%s -> %s: verdict %d, want XDP_TX", g.Src, g.Dst, verdict)
		}
		fv, ok := flowOf(t, lb, frame)
		if !ok {
			t.Fatalf("%s -> %s: no flow table entry", g.Src, g.Dst)
		}
		if fv.Hash != g.Want {
			t.Errorf("%s:%d -> %s:%d proto %d: BPF hash %#08x, want %#08x", g.Src, g.Sport, g.Dst, g.Dport, g.Proto, fv.Hash, g.Want)
		}
		bi := tab.pick(g.Want)
		want := lbTestBackends()[bi].Addr.As4()
		if got := [4]byte(out[30:34]); got != want || fv.Backend != LBBackendID(bi, lbTestGen) {
			t.Errorf("%s -> %s: sent to %v (id %#x), want %v", g.Src, g.Dst, netip.AddrFrom4(got), fv.Backend, netip.AddrFrom4(want))
		}
	}
}

// TestLBFlowHash6 checks the IPv6 flow hash against hash.Flow6 (itself
// checked against golden vectors in package hash) over a spread of tuples.
func TestLBFlowHash6(t *testing.T) {
	lb := loadTestLB(t)
	for i := range 64 {
		port := uint16(1000 + 97*i)
		frame := tcpFrame(t, vip6, port, 443, "S", 0, false, i)
		if v, _, d, _ := lbRun(t, lb, frame); v != xdpTX {
			t.Fatalf("verdict %d (%+v)", v, d)
		}
		var fl packet.Flow
		if packet.Parse(frame, &fl) != packet.OK {
			t.Fatal("parse")
		}
		fv, ok := flowOf(t, lb, frame)
		if want := hash.Flow6(&fl.Src6, &fl.Dst6, fl.Ports, fl.Proto); !ok || fv.Hash != want {
			t.Fatalf("port %d: BPF hash %#08x (found %v), want %#08x", port, fv.Hash, ok, want)
		}
	}
}

// lbBackendOf runs frame and returns the backend index it was sent to (by
// outer destination, or MAC for DSR) and whether the flow table gave it.
func lbBackendOf(t *testing.T, lb *LB, frame []byte) (int, bool) {
	t.Helper()
	verdict, out, d, _ := lbRun(t, lb, frame)
	if verdict != xdpTX {
		t.Fatalf("verdict %d, want XDP_TX (%+v)", verdict, d)
	}
	for i, b := range lbTestBackends() {
		var a []byte
		switch {
		case out[12] == 0x08:
			a = out[30:34]
		case out[12] == 0x86:
			a = out[38:54]
		}
		if bytes.Equal(a, b.Addr.AsSlice()) {
			return i, d.FlowHits == 1
		}
	}
	t.Fatalf("sent to no known backend: % x", out[:60])
	return -1, false
}

// TestLBFlowTable: established flows keep their backend across table
// changes, a TCP SYN always takes the current table's choice, a flow whose
// backend ID was freed or took a new generation picks again, and ICMP
// errors follow the flow table without making entries.
func TestLBFlowTable(t *testing.T) {
	for _, dst := range []netip.Addr{vipTCP, vip6} {
		t.Run(dst.String(), func(t *testing.T) {
			lb := loadTestLB(t)
			vi, port, tabi, size := uint32(0), uint16(80), tab4, lbTestTableSize
			if dst.Is6() {
				vi, port, tabi, size = 4, 443, tab6, lbTestTableSize6
			}
			members := lbTables(t)[tabi].members
			ack := tcpFrame(t, dst, 41000, port, "A", 0, false, 0)
			syn := tcpFrame(t, dst, 41000, port, "S", 0, false, 0)
			icmpErr := icmpErrorAbout(t, dst, port, 41000, 3, 0, 0)
			if dst.Is6() {
				icmpErr = icmpErrorAbout(t, dst, port, 41000, 1, 0, 0)
			}
			first := lbModel(t, ack, -1, 0).backend
			if got, hit := lbBackendOf(t, lb, ack); got != first || hit {
				t.Fatalf("new flow went to backend %d (hit %v), Maglev says %d", got, hit, first)
			}
			other := members[0]
			if other == first {
				other = members[1]
			}
			if err := lb.SetTable(vi, fill(size, LBBackendID(other, lbTestGen))); err != nil {
				t.Fatal(err)
			}
			if got, hit := lbBackendOf(t, lb, ack); got != first || !hit {
				t.Errorf("established flow went to %d (hit %v) after a table change, want %d", got, hit, first)
			}
			if got, hit := lbBackendOf(t, lb, icmpErr); got != first || !hit {
				t.Errorf("ICMP error went to %d (hit %v), want the flow's %d", got, hit, first)
			}
			if got, _ := lbBackendOf(t, lb, syn); got != other {
				t.Errorf("SYN went to %d, want the table's %d", got, other)
			}
			if got, hit := lbBackendOf(t, lb, ack); got != other || !hit {
				t.Errorf("flow after the SYN went to %d (hit %v), want %d", got, hit, other)
			}
			// A new generation at the flow's index: the flow picks again.
			bs := lbTestBackends()
			bs[other].Generation++
			if err := lb.SetBackends(bs); err != nil {
				t.Fatal(err)
			}
			if err := lb.SetTable(vi, fill(size, LBBackendID(first, lbTestGen))); err != nil {
				t.Fatal(err)
			}
			if got, hit := lbBackendOf(t, lb, ack); got != first || hit {
				t.Errorf("flow of a replaced backend went to %d (hit %v), want %d", got, hit, first)
			}
			// Freed: the same.
			bs[first] = LBBackend{}
			if err := lb.SetBackends(bs); err != nil {
				t.Fatal(err)
			}
			if err := lb.SetTable(vi, fill(size, LBBackendID(other, lbTestGen+1))); err != nil {
				t.Fatal(err)
			}
			if got, hit := lbBackendOf(t, lb, ack); got != other || hit {
				t.Errorf("flow of a freed backend went to %d (hit %v), want %d", got, hit, other)
			}
			// An ICMP error about an unknown flow: Maglev, no entry made.
			stray := icmpErrorAbout(t, dst, port, 41999, 3, 0, 0)
			if dst.Is6() {
				stray = icmpErrorAbout(t, dst, port, 41999, 2, 0, 0)
			}
			if got, hit := lbBackendOf(t, lb, stray); got != other || hit {
				t.Errorf("stray ICMP error went to %d (hit %v), want %d", got, hit, other)
			}
			if _, ok := flowOf(t, lb, stray); ok {
				t.Error("an ICMP error made a flow entry")
			}
		})
	}
}

// TestLBIdleTimeout: an entry idle past its protocol's timeout is a miss
// (the flow re-picks from the current table); within it, a hit. The
// entries' last-seen times are aged by writing them, not by sleeping.
func TestLBIdleTimeout(t *testing.T) {
	lb := loadTestLB(t)
	if err := lb.SetTimeouts(time.Hour, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if tcp, udp := lb.Timeouts(); tcp != time.Hour || udp != 10*time.Second {
		t.Fatalf("Timeouts() = %v, %v", tcp, udp)
	}
	tcpF := tcpFrame(t, vipTCP, 42000, 80, "A", 0, false, 0)
	udpF := udpFrame(t, vipUDP, 53, 10)
	tcp6F := tcpFrame(t, vip6, 42000, 443, "A", 0, false, 0)
	frames := []struct {
		f     []byte
		vi    uint32
		size  int
		other int
	}{{tcpF, 0, lbTestTableSize, -1}, {udpF, 1, lbTestTableSize, -1}, {tcp6F, 4, lbTestTableSize6, -1}}
	firsts := make([]int, len(frames))
	for i, fr := range frames {
		firsts[i], _ = lbBackendOf(t, lb, fr.f)
		members := lbTables(t)[tab4].members
		if fr.vi == 4 {
			members = lbTables(t)[tab6].members
		}
		frames[i].other = members[0]
		if members[0] == firsts[i] {
			frames[i].other = members[1]
		}
		if err := lb.SetTable(fr.vi, fill(fr.size, LBBackendID(frames[i].other, lbTestGen))); err != nil {
			t.Fatal(err)
		}
	}
	now, _, err := lb.clock() // jiffies
	if err != nil {
		t.Fatal(err)
	}
	if lb.hz < 100 || lb.hz > 1000 {
		t.Fatalf("measured HZ %d", lb.hz)
	}
	t.Logf("kernel HZ %d", lb.hz)
	age := func(frame []byte, by time.Duration) {
		t.Helper()
		fv, ok := flowOf(t, lb, frame)
		if !ok {
			t.Fatal("no flow entry")
		}
		fv.Seen = now - lb.jiffies(by)
		setFlow(t, lb, frame, fv)
		voidFlowCaches(t, lb)
	}
	// 30 s idle: past UDP's 10 s, within TCP's hour.
	for _, fr := range frames {
		age(fr.f, 30*time.Second)
	}
	for i, want := range []bool{true, false, true} {
		got, hit := lbBackendOf(t, lb, frames[i].f)
		if wantB := map[bool]int{true: firsts[i], false: frames[i].other}[want]; got != wantB || hit != want {
			t.Errorf("frame %d after 30 s idle: backend %d (hit %v), want %d (hit %v)", i, got, hit, wantB, want)
		}
	}
	// A hit refreshes the entry: just used, it is well within both.
	if fv, _ := flowOf(t, lb, tcpF); fv.Seen < now {
		t.Errorf("a hit did not refresh the entry's time: %d < %d", fv.Seen, now)
	}
	// Two hours idle: past TCP's timeout too.
	age(tcpF, 2*time.Hour)
	age(tcp6F, 2*time.Hour)
	if got, hit := lbBackendOf(t, lb, tcpF); got != frames[0].other || hit {
		t.Errorf("TCP after 2 h idle: backend %d (hit %v), want %d", got, hit, frames[0].other)
	}
	if got, hit := lbBackendOf(t, lb, tcp6F); got != frames[2].other || hit {
		t.Errorf("TCP/IPv6 after 2 h idle: backend %d (hit %v), want %d", got, hit, frames[2].other)
	}
	for _, bad := range [][2]time.Duration{{0, time.Second}, {time.Second, 25 * time.Hour}} {
		if err := lb.SetTimeouts(bad[0], bad[1]); err == nil {
			t.Errorf("SetTimeouts(%v, %v) accepted", bad[0], bad[1])
		}
	}
}

func TestLBBackendCounters(t *testing.T) {
	lb := loadTestLB(t)
	frames := [][]byte{
		tcpFrame(t, vipTCP, 42000, 80, "S", 0, false, 0),
		tcpFrame(t, vipTCP, 42001, 80, "S", 0, false, 300),
		udpFrame(t, vipUDP, 53, 20),
		udpFrame(t, vipUDP, 53, 20),
		tcpFrame(t, vip6, 42000, 443, "S", 0, false, 7),
		icmpErrorAbout(t, vipTCP, 80, 42000, 3, 4, 0),
	}
	want := make([]LBBackendCounters, len(lbTestBackends()))
	for _, f := range frames {
		bi := lbModel(t, f, -1, 0).backend
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
	if c.Seen != c.Forwarded+c.EchoReplies+c.Passed+c.Malformed+c.Dropped || c.Forwarded != uint64(len(frames)) || c.ICMPErrors != 1 {
		t.Errorf("counters %+v", c)
	}
}

// TestLBNoSource: without an outer source address of the backend's family
// frames are dropped as no_source; DSR needs none.
func TestLBNoSource(t *testing.T) {
	lb := loadTestLB(t)
	if err := lb.SetSource6([16]byte{}); err != nil {
		t.Fatal(err)
	}
	if err := lb.SetSource([4]byte{}, lbMAC, lbTestMTU); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		frame []byte
		want  uint32
	}{
		{tcpFrame(t, vipTCP, 43000, 80, "S", 0, false, 0), xdpDrop},
		{tcpFrame(t, vip6, 43000, 443, "S", 0, false, 0), xdpDrop},
		{tcpFrame(t, vipDSR6, 43000, 80, "S", 0, false, 0), xdpTX},
	} {
		v, _, d, _ := lbRun(t, lb, tc.frame)
		if v != tc.want || (v == xdpDrop && d.Drops["no_source"] != 1) {
			t.Errorf("verdict %d (%+v), want %d", v, d, tc.want)
		}
	}
}

func TestLBArgs(t *testing.T) {
	testenv.Root(t, "loads the lb program")
	for _, o := range []LBOptions{
		{FlowTableSize: -1},
		{TableSize: hash.MaxTableSize + 1},
		{MaxVIPs: -1},
		{MaglevSlots: 1 << 29},
		{MaxBackends: -1},
		{MaxBackends: MaxLBBackends + 1},
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
	if got := lb.Options(); got.FlowTableSize != 64 || got.MaglevSlots != 3*lbTestTableSize {
		t.Errorf("Options() = %+v", got)
	}
	if _, err := lb.Attach(1, ModeGeneric); !errors.Is(err, ErrNoSource) {
		t.Errorf("Attach before SetSource = %v, want ErrNoSource", err)
	}
	k := NewVIPKey(vipTCP, 80, 6)
	bad := []struct {
		name string
		err  error
	}{
		{"VIP index out of range", lb.SetVIPs([]VIPEntry{{Key: k, ID: 2}})},
		{"GUE without a port", lb.SetVIPs([]VIPEntry{{Key: k, Forward: LBForwardGUE}})},
		{"invalid forward", lb.SetVIPs([]VIPEntry{{Key: k, Forward: 9}})},
		{"one index, two modes", lb.SetVIPs([]VIPEntry{{Key: k}, {Key: NewVIPKey(vip6, 80, 6), Forward: LBForwardDSR}})},
		{"table of VIP out of range", lb.SetTable(2, fill(lbTestTableSize, 0))},
		{"empty table", lb.SetTable(0, nil)},
		{"table with an index out of range", lb.SetTable(0, fill(lbTestTableSize, 4))},
		{"table with an index out of range, generation set", lb.SetTable(0, fill(lbTestTableSize, LBBackendID(4, 3)))},
		{"too many backends", lb.SetBackends(make([]LBBackend, 5))},
		{"mtu 0", lb.SetSource(lbSrc, lbMAC, 0)},
		{"mtu 65536", lb.SetSource(lbSrc, lbMAC, 65536)},
		{"mapped source6", lb.SetSource6(netip.MustParseAddr("::ffff:198.18.0.1").As16())},
	}
	for _, b := range bad {
		if b.err == nil {
			t.Errorf("%s: accepted", b.name)
		}
	}
	if err := lb.SetTable(1, fill(lbTestTableSize, hash.EmptySlot)); err != nil {
		t.Errorf("SetTable of empty slots: %v", err)
	}
	if err := lb.SetVIPs([]VIPEntry{{Key: k, Forward: LBForwardGUE, GUEPort: 1}, {Key: NewVIPKey(vip6, 80, 6), Forward: LBForwardGUE, GUEPort: 1}}); err != nil {
		t.Errorf("two VIPs of one index, one mode: %v", err)
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
		lbMapBackends: unsafe.Sizeof(lbBackend{}), lbMapSettings: unsafe.Sizeof(lbSettings{}),
		lbMapFlows: unsafe.Sizeof(lbFlowValue{}), lbMapFlows6: unsafe.Sizeof(lbFlowValue{}),
		lbMapFlowCache: unsafe.Sizeof(lbFcBucket4{}), lbMapFlowCache6: unsafe.Sizeof(lbFcBucket6{}),
		lbMapBackendStats: unsafe.Sizeof(lbBackendStats{}), lbMapVipConf: lbVIPConfSize,
		lbMapIcmpBucket: unsafe.Sizeof(lbIcmpBucket{}),
	} {
		if got := spec.Maps[name].ValueSize; uintptr(got) != size {
			t.Errorf("map %s: value size %d, Go %d", name, got, size)
		}
	}
	if unsafe.Sizeof(lbCapScratch{}.Hdr) != lbCapHdrSize || binary.Size(lbCapHdr{}) != lbCapHdrSize ||
		unsafe.Offsetof(lbCapScratch{}.Hdr.Backend) != unsafe.Offsetof(lbCapHdr{}.Backend) ||
		unsafe.Offsetof(lbCapScratch{}.Hdr.Dir) != unsafe.Offsetof(lbCapHdr{}.Dir) {
		t.Errorf("struct cap_hdr: %d bytes, lbCapHdr %d", unsafe.Sizeof(lbCapScratch{}.Hdr), binary.Size(lbCapHdr{}))
	}
	if unsafe.Sizeof(lbVipConf{}) != lbVIPConfSize || unsafe.Offsetof(lbVipConf{}.Forward) != 8 || unsafe.Offsetof(lbVipConf{}.GuePort) != 10 {
		t.Errorf("lbVipConf layout: size %d", unsafe.Sizeof(lbVipConf{}))
	}
	if got := spec.Maps[lbMapVips].KeySize; uintptr(got) != unsafe.Sizeof(VIPKey{}) {
		t.Errorf("lb vips key size %d, VIPKey %d", got, unsafe.Sizeof(VIPKey{}))
	}
	if got := spec.Maps[lbMapVips4].KeySize; uintptr(got) != unsafe.Sizeof(lbVip4Key{}) {
		t.Errorf("lb vips4 key size %d, lbVip4Key %d", got, unsafe.Sizeof(lbVip4Key{}))
	}
	k := NewVIPKey(netip.MustParseAddr("198.18.0.10"), 80, 6)
	if k4 := vip4Key(k); k4.String() != k.String() || (*[8]byte)(unsafe.Pointer(&k4))[0] != 198 || k4.Port != k.Port {
		t.Errorf("vip4Key(%v) = %+v (%v)", k, k4, k4)
	}
	// The drop reasons are the Go worker's, by name.
	worker := map[string]bool{}
	for d := range datapath.NumDrops {
		worker[d.String()] = true
	}
	for _, name := range lbDropNames {
		if !worker[name] {
			t.Errorf("lb drop reason %q is none of the Go worker's", name)
		}
	}
	if datapath.EventICMPRateLimited.String() != "icmp_rate_limited" {
		t.Errorf("the worker's event is %q, LBCounters.ICMPRateLimited documents icmp_rate_limited", datapath.EventICMPRateLimited)
	}
	if datapath.EventSYNUntracked.String() != "syn_untracked" {
		t.Errorf("the worker's event is %q, LBCounters.SYNUntracked documents syn_untracked", datapath.EventSYNUntracked)
	}
	if got := binary.NativeEndian.Uint32([]byte{198, 18, 0, 1}); got != nativeAddr(lbSrc) {
		t.Errorf("nativeAddr(%v) = %#x", lbSrc, nativeAddr(lbSrc))
	}
}

// TestLBICMPRateLimit checks the limit on the ICMP the program sends, as
// the Go worker's (datapath.TestICMPRateLimit*): unlimited at rate 0; at a
// rate, a CPU's first burst of echo requests is answered and the rest
// dropped as echo_rate_limited; frag-needed take from the same bucket, and
// a frame too big without a token is dropped as too_big, unanswered.
func TestLBICMPRateLimit(t *testing.T) {
	// The buckets are per CPU and BPF_PROG_TEST_RUN runs on the caller's:
	// one CPU for the whole test. The thread stays locked, so the runtime
	// discards it, affinity and all, when the test returns.
	runtime.LockOSThread()
	var one unix.CPUSet
	one.Set(0)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatalf("pin to CPU 0: %v", err)
	}
	lb := loadTestLB(t)
	const burst = 5
	echo := func(i int) []byte {
		if i%2 == 0 {
			return icmp4(t, vipTCP)
		}
		return icmp6(t, vip6)
	}
	tooBig := tcpFrame(t, vipTCP, 40010, 80, "A", 0, true, lbTestMTU-20-20+1)
	// sent and limited count the frames answered and refused, first the
	// index of the first refused (n if none).
	type result struct{ sent, limited, first int }
	run := func(frame func(int) []byte, n int, sentAs func(LBCounters) uint64, limitedDrop string) result {
		t.Helper()
		r := result{first: n}
		for i := range n {
			verdict, _, d, _ := lbRun(t, lb, frame(i))
			switch {
			case verdict == xdpTX && sentAs(d) == 1 && d.ICMPRateLimited == 0:
				r.sent++
			case verdict == xdpDrop && d.Drops[limitedDrop] == 1 && d.ICMPRateLimited == 1 && sentAs(d) == 0 && d.Dropped == 1:
				r.first = min(r.first, i)
				r.limited++
			default:
				t.Fatalf("frame %d: verdict %d, counters %+v", i, verdict, d)
			}
		}
		return r
	}
	echoes := func(c LBCounters) uint64 { return c.EchoReplies }
	fragNeeded := func(c LBCounters) uint64 { return c.FragNeeded }
	fromTooBig := func(int) []byte { return tooBig }

	// Rate 0, the default: no limit.
	if r := run(echo, 4*burst, echoes, "echo_rate_limited"); r.sent != 4*burst {
		t.Errorf("no limit: %d of %d echo requests answered", r.sent, 4*burst)
	}
	if r := run(fromTooBig, 4*burst, fragNeeded, "too_big"); r.sent != 4*burst {
		t.Errorf("no limit: %d of %d frag-needed sent", r.sent, 4*burst)
	}

	// 1 a second: whole seconds the test takes may add a token each.
	if err := lb.SetICMPRate(1, burst); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r := run(echo, 4*burst, echoes, "echo_rate_limited")
	if extra := int(time.Since(start) / time.Second); r.first != burst || r.sent > burst+extra {
		t.Errorf("%d of %d echo requests answered, the first refused #%d, want the first %d (+%d for the time taken)", r.sent, 4*burst, r.first, burst, extra)
	}
	// The bucket is spent: a frame too big is dropped without an answer.
	if r := run(fromTooBig, 1, fragNeeded, "too_big"); r.limited != 1 && time.Since(start) < time.Second {
		t.Errorf("frag-needed sent from a spent bucket")
	}

	// A new bucket (the map entry reset: full at first use) for frag-needed.
	if err := lb.objs.IcmpBucket.Update(uint32(0), make([]lbIcmpBucket, ebpf.MustPossibleCPU()), ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	r = run(fromTooBig, 4*burst, fragNeeded, "too_big")
	if extra := int(time.Since(start) / time.Second); r.first != burst || r.sent > burst+extra {
		t.Errorf("%d of %d frag-needed sent, the first refused #%d, want the first %d (+%d for the time taken)", r.sent, 4*burst, r.first, burst, extra)
	}

	// Back to rate 0: no limit again.
	if err := lb.SetICMPRate(0, burst); err != nil {
		t.Fatal(err)
	}
	if r := run(echo, 2*burst, echoes, "echo_rate_limited"); r.sent != 2*burst {
		t.Errorf("limit lifted: %d of %d echo requests answered", r.sent, 2*burst)
	}
	if err := lb.SetICMPRate(1, 0); err == nil {
		t.Error("SetICMPRate(1, 0) accepted a burst of 0")
	}
}

// FuzzLB runs arbitrary frames through the program: a frame it sends must
// be exactly the Go worker's (for the backend the flow table gave, if it
// did), anything else must be passed untouched or dropped, and each frame
// is counted once.
func FuzzLB(f *testing.F) {
	for _, tc := range lbCases(f) {
		f.Add(tc.frame)
	}
	lb := loadTestLB(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 {
			return // BPF_PROG_TEST_RUN refuses frames shorter than Ethernet
		}
		verdict, out, d, id := lbRun(t, lb, frame)
		switch verdict {
		case xdpTX:
			backend := -1
			// A flow table entry made by an earlier input may point
			// elsewhere than the table: compare with that backend.
			if fv, found := flowOf(t, lb, frame); found && d.FlowHits == 1 {
				backend = int(fv.Backend & 0xffff)
			}
			m := lbModel(t, frame, backend, id)
			if m.verdict != xdpTX || !bytes.Equal(out, m.out) {
				t.Fatalf("sent frame differs from the Go worker's (%+v)\n got % x\nwant % x", m, out, m.out)
			}
		case xdpPass:
			if !bytes.Equal(out, frame) {
				t.Fatalf("passed frame changed")
			}
		case xdpDrop:
		default:
			t.Fatalf("verdict %d", verdict)
		}
		if d.Seen != 1 || d.Forwarded+d.EchoReplies+d.Passed+d.Malformed+d.Dropped != 1 {
			t.Fatalf("counter delta %+v", d)
		}
	})
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
		lbMapVips: m.Vips, lbMapVips4: m.Vips4, lbMapVipCache: m.VipCache, lbMapVipConf: m.VipConf, lbMapMaglev: m.Maglev, lbMapBackends: m.Backends,
		lbMapBackendStats: m.BackendStats, lbMapFlows: m.Flows, lbMapFlows6: m.Flows6, lbMapFlowCache: m.FlowCache,
		lbMapFlowCache6: m.FlowCache6, lbMapSettings: m.Settings,
		lbMapIpIds: m.IpIds, lbMapCounters: m.Counters, lbMapIcmpBucket: m.IcmpBucket, lbMapSynGuard: m.SynGuard,
		lbMapFwRules: m.FwRules, lbMapFwTrieA: m.FwTrieA, lbMapFwTrieB: m.FwTrieB, lbMapFwRuleStats: m.FwRuleStats,
		lbMapFwVipStats: m.FwVipStats, lbMapFwSyn: m.FwSyn,
		lbMapRttHists: m.RttHists, lbMapCapScratch: m.CapScratch, lbMapCaptureRing: m.CaptureRing, lbMapCapLost: m.CapLost,
		lbMapCaptureProg: m.CaptureProg,
	}}
	for name := range spec.Maps {
		if _, ok := opts.MapReplacements[name]; !ok && !strings.HasPrefix(name, ".") {
			b.Fatalf("map %s is not shared with the harness: it would run on an empty copy", name)
		}
	}
	if err := spec.LoadAndAssign(&objs, opts); err != nil {
		b.Fatalf("load xlb_lb_bench: %v", err)
	}
	b.Cleanup(func() { objs.Bench.Close() })
	return objs.Bench
}

// BenchmarkLB measures the program per packet through xlb_lb_bench, which
// undoes each encapsulation so that a repeated BPF_PROG_TEST_RUN runs on
// the same frame every time. The undo (an adjust_head and a 14-byte copy, a
// few ns) is included in the forwarded figures. The established cases hit
// the flow table; gue6 sums its UDP checksum over the whole packet.
func BenchmarkLB(b *testing.B) {
	lb := loadTestLB(b)
	bench := loadLBBench(b, lb)
	// The perf lab's 64-byte frames, byte for byte (its generator's
	// templates): a UDP datagram and a pure ACK, each hitting its flow.
	lab := func(dst netip.Addr, port uint16, proto, flags uint8) []byte {
		f, err := labprogs.BuildTemplate(labprogs.TemplateSpec{Src: netip.MustParseAddr("198.18.1.1"), Dst: dst,
			DstPort: port, Proto: proto, TCPFlags: flags, Size: 64})
		if err != nil {
			b.Fatal(err)
		}
		return f
	}
	for _, bc := range []struct {
		name  string
		frame []byte
		want  uint32
	}{
		{"established", tcpFrame(b, vipTCP, 43000, 80, "A", 0, false, 64), xdpTX}, // flow table hit
		{"syn", tcpFrame(b, vipTCP, 43001, 80, "S", 0, false, 64), xdpTX},         // Maglev pick, flow table update
		{"lab-udp", lab(vipUDP, 53, 17, 0), xdpTX},
		{"lab-tcp-ack", lab(vipTCP, 80, 6, labprogs.TCPAck), xdpTX},
		{"lab-tcp-syn", lab(vipTCP, 80, 6, labprogs.TCPSyn), xdpTX},
		{"non-vip-pass", frame4(b, nonVIP, layers.IPProtocolTCP, 80), xdpPass},
		{"ip6ip6-established", tcpFrame(b, vip6, 43000, 443, "A", 0, false, 64), xdpTX},
		{"gue4-established", tcpFrame(b, vipGUE4, 43000, 80, "A", 0, false, 64), xdpTX},
		{"gue6-established-1400", tcpFrame(b, vipGUE6, 43000, 80, "A", 0, false, 1400-60), xdpTX},
		{"dsr4-established", tcpFrame(b, vipDSR4, 43000, 80, "A", 0, false, 64), xdpTX},
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

// TestLBSetTable reads the tables back through the maps: what SetTable
// wrote into the maglev map's memory, at the offset and size vip_conf
// gives, is what the program looks up; a table of a new size moves and
// frees the old one; a full map refuses a table and changes nothing; and a
// VIP index no VIP uses any more loses its table.
func TestLBSetTable(t *testing.T) {
	lb := loadTestLB(t)
	tabs := lbTables(t)
	read := func(vip uint32) []uint32 {
		t.Helper()
		var c lbVipConf
		if err := lb.objs.VipConf.Lookup(vip, &c); err != nil {
			t.Fatal(err)
		}
		out := make([]uint32, c.TableSize)
		for i := range out {
			if err := lb.objs.Maglev.Lookup(c.TableOff+uint32(i), &out[i]); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	for i, v := range lbTestVIPs {
		want := []uint32{}
		if v.table >= 0 {
			want = tabs[v.table].slots()
		}
		if got := read(uint32(i)); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("VIP %d: table %v, want %v", i, got, want)
		}
	}
	// The fixture's map holds 8 tables of each size: 13 are in use.
	if err := lb.SetTable(15, fill(lbTestTableSize6, 0)); err != nil {
		t.Fatalf("a 13th table: %v", err)
	}
	if err := lb.SetTable(14, fill(1000, 0)); err == nil {
		t.Fatal("a table past the map's capacity was accepted")
	}
	if got := read(14); len(got) != 0 {
		t.Fatalf("a refused table was written: %d slots", len(got))
	}
	// Resize VIP 0's table: it moves; the old space is reused.
	before := lb.regions[0]
	small := fill(lbTestTableSize-2, LBBackendID(1, lbTestGen))
	if err := lb.SetTable(0, small); err != nil {
		t.Fatal(err)
	}
	if after := lb.regions[0]; after.off == before.off || fmt.Sprint(read(0)) != fmt.Sprint(small) {
		t.Fatalf("resized table at %d (was %d)", after.off, before.off)
	}
	if v, out, _, _ := lbRun(t, lb, tcpFrame(t, vipTCP, 44000, 80, "S", 0, false, 0)); v != xdpTX || !bytes.Equal(out[30:34], lbTestBackends()[1].Addr.AsSlice()) {
		t.Errorf("after the resize: verdict %d, sent to % x", v, out[30:34])
	}
	if err := lb.SetTable(14, fill(lbTestTableSize, 0)); err != nil {
		t.Fatalf("a table in the freed space: %v", err)
	}
	// VIPs gone: their tables are freed; frames to them pass.
	if err := lb.SetVIPs(lbTestEntries()[:1]); err != nil {
		t.Fatal(err)
	}
	var free uint32
	for _, r := range lb.free {
		free += r.size
	}
	if len(lb.regions) != 1 || free != uint32(lb.opts.MaglevSlots)-lb.regions[0].size {
		t.Errorf("after dropping VIPs: regions %v, free %v", lb.regions, lb.free)
	}
	if err := lb.SetTable(14, fill(1000, 0)); err != nil {
		t.Errorf("a big table after the others were freed: %v", err)
	}
}

// TestLBVerifierHeadroom keeps the program far below the verifier's limit
// of a million processed instructions: a program near it fails to load on
// the next compiler or kernel. (Everything inlined into one function, this
// one once took 929k; with the parser and the rare answers as global
// functions, checked once each, about 15k.)
func TestLBVerifierHeadroom(t *testing.T) {
	testenv.Root(t, "loads the lb program")
	opts, err := LBOptions{FlowTableSize: 64, MaxVIPs: 2, MaxBackends: 4, TableSize: lbTestTableSize}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	spec, err := lbSpec(opts)
	if err != nil {
		t.Fatal(err)
	}
	var objs lbLoaded
	if err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats}}); err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	// xlb_lb_capture is the datapath again with the capture around it.
	for name, p := range map[string]*ebpf.Program{"xlb_lb": objs.XlbLb, "xlb_lb_capture": objs.XlbLbCapture} {
		var n int
		log := p.VerifierLog
		i := strings.Index(log, "processed ")
		if i < 0 {
			t.Fatalf("%s: no statistics in the verifier log: %q", name, log)
		}
		if _, err := fmt.Sscanf(log[i:], "processed %d insns", &n); err != nil {
			t.Fatal(err)
		}
		t.Logf("%s verifier: %d instructions processed; %s", name, n, log[strings.Index(log, "stack depth"):i])
		if n > 200_000 {
			t.Errorf("%s: the verifier processed %d instructions (limit 1000000): split the program further", name, n)
		}
	}
}

// TestLBLocalBackend: a flow whose backend is this host (co-located mode)
// goes to the kernel's stack unchanged (XDP_PASS), counted on the backend
// and as passed; the flow stays tracked to it.
func TestLBLocalBackend(t *testing.T) {
	lb := loadTestLB(t)
	backends := lbTestBackends()
	for i := range backends {
		backends[i].Local = true
	}
	if err := lb.SetBackends(backends); err != nil {
		t.Fatal(err)
	}
	frame := tcpFrame(t, vipTCP, 44000, 80, "S", 0, false, 0)
	bi := lbModel(t, frame, -1, 0).backend
	for range 2 {
		v, out, d, _ := lbRun(t, lb, frame)
		if v != xdpPass || !bytes.Equal(out, frame) || d.Passed != 1 || d.Forwarded != 0 {
			t.Fatalf("verdict %d, counters %+v, frame changed %v", v, d, !bytes.Equal(out, frame))
		}
	}
	got, err := lb.BackendCounters()
	if err != nil {
		t.Fatal(err)
	}
	if got[bi].Packets != 2 || got[bi].Bytes != uint64(2*len(frame)) {
		t.Errorf("backend %d counters %+v, want 2 packets", bi, got[bi])
	}
}

// TestLBVIPCapacity: the IPv4 keys go to vips4 and the IPv6 ones to vips,
// but the set as a whole keeps steer's limit of 4096 entries (markers
// included); a set past it is refused and changes nothing.
func TestLBVIPCapacity(t *testing.T) {
	lb := loadTestLB(t)
	set := func(perFamily int) error {
		var vips []VIPEntry
		for i := range perFamily {
			vips = append(vips, VIPEntry{Key: NewVIPKey(vipTCP, uint16(1000+i), 6)}, VIPEntry{Key: NewVIPKey(vip6, uint16(1000+i), 6)})
		}
		return lb.SetVIPs(vips)
	}
	if err := set(2047); err != nil { // 2 * 2047 keys + 2 markers
		t.Fatalf("4096 entries: %v", err)
	}
	if v, _, _, _ := lbRun(t, lb, tcpFrame(t, vip6, 40000, 3046, "S", 0, false, 0)); v != xdpTX {
		t.Errorf("IPv6 VIP at capacity: verdict %d", v)
	}
	if err := set(2048); !errors.Is(err, ErrTooManyVIPs) {
		t.Fatalf("4098 entries: %v, want ErrTooManyVIPs", err)
	}
	if v, _, _, _ := lbRun(t, lb, tcpFrame(t, vipTCP, 40000, 3046, "S", 0, false, 0)); v != xdpTX {
		t.Errorf("IPv4 VIP after a refused set: verdict %d", v)
	}
	if v, _, _, _ := lbRun(t, lb, tcpFrame(t, vipTCP, 40000, 3047, "S", 0, false, 0)); v != xdpDrop {
		t.Errorf("a VIP of the refused set: verdict %d", v)
	}
}

// TestLBVIPCache: the program's per-CPU cache of IPv4 VIP resolutions
// (vip_cache) never outlives a SetVIPs. A port that gets a VIP of its own
// leaves the protocol's VIP on every port; a VIP that goes away, and one
// that comes for a port that had none, apply to the next frame.
func TestLBVIPCache(t *testing.T) {
	lb := loadTestLB(t)
	// Every run on one CPU, so that each meets the cache the one before
	// filled. The thread stays locked: it ends with the test rather than
	// go back to the runtime pinned.
	runtime.LockOSThread()
	var cpu unix.CPUSet
	cpu.Set(0)
	if err := unix.SchedSetaffinity(0, &cpu); err != nil {
		t.Fatal(err)
	}
	run := func(frame []byte) (uint32, byte) {
		t.Helper()
		v, out, _, _ := lbRun(t, lb, frame)
		return v, out[14+9] // the outer IPv4 header's protocol
	}
	udp, tcp81 := udpFrame(t, vipUDP, 53, 8), tcpFrame(t, vipTCP, 40000, 81, "S", 0, false, 0)
	for range 2 { // the second from the cache
		if v, proto := run(udp); v != xdpTX || proto != unix.IPPROTO_IPIP {
			t.Fatalf("UDP VIP on every port: verdict %d, outer protocol %d", v, proto)
		}
		if v, _ := run(tcp81); v != xdpDrop {
			t.Fatalf("VIP address, port without a VIP: verdict %d", v)
		}
	}
	// Port 53 gets a VIP of its own (GUE, index 6 as vipGUE4's); port
	// 81 gets one.
	more := append(lbTestEntries(),
		VIPEntry{Key: NewVIPKey(vipUDP, 53, 17), ID: 6, Forward: LBForwardGUE, GUEPort: lbTestGUEPort},
		VIPEntry{Key: NewVIPKey(vipTCP, 81, 6), ID: 0})
	if err := lb.SetVIPs(more); err != nil {
		t.Fatal(err)
	}
	if v, proto := run(udp); v != xdpTX || proto != unix.IPPROTO_UDP {
		t.Errorf("port with a VIP of its own: verdict %d, outer protocol %d, want GUE", v, proto)
	}
	if v, _ := run(tcp81); v != xdpTX {
		t.Errorf("port given a VIP: verdict %d", v)
	}
	// Back, then without the UDP VIPs: the address is no VIP's any more.
	if err := lb.SetVIPs(lbTestEntries()); err != nil {
		t.Fatal(err)
	}
	if v, proto := run(udp); v != xdpTX || proto != unix.IPPROTO_IPIP {
		t.Errorf("back on every port: verdict %d, outer protocol %d", v, proto)
	}
	if err := lb.SetVIPs(slices.DeleteFunc(lbTestEntries(), func(e VIPEntry) bool { return e.Key.IP() == vipUDP })); err != nil {
		t.Fatal(err)
	}
	if v, _ := run(udp); v != xdpPass {
		t.Errorf("VIP gone: verdict %d, want pass", v)
	}
}
