package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"unsafe"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/btf"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/internal/frametest"
	"github.com/xlbproject/xlb/internal/testenv"
)

var (
	vipTCP  = netip.MustParseAddr("198.18.0.10")  // port 80/tcp
	vipUDP  = netip.MustParseAddr("198.18.0.11")  // every UDP port
	vip6    = netip.MustParseAddr("2001:db8::10") // port 443/tcp
	nonVIP  = netip.MustParseAddr("198.18.0.99")
	nonVIP6 = netip.MustParseAddr("2001:db8::99")
)

func testVIPs() []VIPEntry {
	return []VIPEntry{
		{Key: NewVIPKey(vipTCP, 80, 6), ID: 1},
		{Key: NewVIPKey(vipUDP, 0, 17), ID: 2},
		{Key: NewVIPKey(vip6, 443, 6), ID: 3},
	}
}

// outcome is what the steer program should do with a frame when no AF_XDP
// socket is bound: every outcome is XDP_PASS, told apart by the counters.
type outcome int

const (
	outPass      outcome = iota // not for a VIP: Passed
	outMalformed                // Malformed
	outVIP                      // for a VIP, no socket: Passed + NoSocket
)

func (o outcome) String() string {
	return [...]string{"pass", "malformed", "vip"}[o]
}

func (o outcome) delta() SteerCounters {
	switch o {
	case outMalformed:
		return SteerCounters{Seen: 1, Malformed: 1}
	case outVIP:
		return SteerCounters{Seen: 1, Passed: 1, NoSocket: 1}
	}
	return SteerCounters{Seen: 1, Passed: 1}
}

func sub(a, b SteerCounters) SteerCounters {
	return SteerCounters{a.Seen - b.Seen, a.Redirected - b.Redirected, a.Passed - b.Passed, a.Malformed - b.Malformed,
		a.NoSocket - b.NoSocket, a.Spliced - b.Spliced, a.SpliceExpired - b.SpliceExpired}
}

type steerCase struct {
	name  string
	frame []byte
	want  outcome
}

func steerCases(t testing.TB) []steerCase {
	tcp, udp := layers.IPProtocolTCP, layers.IPProtocolUDP
	hbh, rt, do, frag := layers.IPProtocolIPv6HopByHop, layers.IPProtocolIPv6Routing, layers.IPProtocolIPv6Destination, layers.IPProtocolIPv6Fragment
	cases := []steerCase{
		{"tcp to VIP exact port", frame4(t, vipTCP, tcp, 80), outVIP},
		{"tcp to VIP address, other port", frame4(t, vipTCP, tcp, 81), outPass},
		{"udp to VIP address, tcp-only VIP", frame4(t, vipTCP, udp, 80), outPass},
		{"udp to wildcard VIP", frame4(t, vipUDP, udp, 12345), outVIP},
		{"udp to wildcard VIP port 1", frame4(t, vipUDP, udp, 1), outVIP},
		{"tcp to udp wildcard VIP address", frame4(t, vipUDP, tcp, 80), outPass},
		{"tcp to non-VIP", frame4(t, nonVIP, tcp, 80), outPass},
		{"arp", arp(t), outPass},
		{"lldp ethertype", frametest.Serialize(t, eth(layers.EthernetType(0x88cc)), payload), outPass},
		{"802.1Q tcp to VIP", frame4VLAN(t, layers.EthernetTypeDot1Q, vipTCP, tcp, 80), outVIP},
		{"802.1ad tcp to VIP", frame4VLAN(t, layers.EthernetTypeQinQ, vipTCP, tcp, 80), outVIP},
		{"802.1Q tcp to non-VIP", frame4VLAN(t, layers.EthernetTypeDot1Q, nonVIP, tcp, 80), outPass},
		{"non-first fragment to VIP address", fragment4(t, vipTCP, tcp), outVIP},
		{"non-first fragment to udp VIP address", fragment4(t, vipUDP, udp), outVIP},
		{"non-first fragment to non-VIP", fragment4(t, nonVIP, tcp), outPass},
		{"first fragment to VIP port", firstFragment4(t, vipTCP, 80), outVIP},
		// Every fragment to a VIP address follows the address's fragment policy,
		// whatever its port: its later pieces carry none.
		{"first fragment to other port", firstFragment4(t, vipTCP, 81), outVIP},
		{"icmp to VIP address", icmp4(t, vipTCP), outVIP},
		{"icmp to non-VIP", icmp4(t, nonVIP), outPass},
		{"ipv6 tcp to VIP", frame6(t, vip6, tcp, 443), outVIP},
		{"ipv6 tcp to VIP address, other port", frame6(t, vip6, tcp, 444), outPass},
		{"ipv6 tcp to non-VIP", frame6(t, nonVIP6, tcp, 443), outPass},
		{"ipv6 to v4-mapped VIP address", frame6(t, netip.AddrFrom16(vipTCP.As16()), tcp, 80), outPass},
		{"ipv6 hop-by-hop to VIP address", frame6HopByHop(t, vip6, 443), outVIP},
		{"ipv6 hop-by-hop to non-VIP", frame6HopByHop(t, nonVIP6, 443), outPass},
		{"icmpv6 to VIP address", icmp6(t, vip6), outVIP},
		{"ipv6 hop-by-hop to VIP address, other port", frame6HopByHop(t, vip6, 444), outPass},
		{"ipv6 routing to VIP port", frame6Ext(t, vip6, []layers.IPProtocol{rt}, tcp, 443), outVIP},
		{"ipv6 routing to other port", frame6Ext(t, vip6, []layers.IPProtocol{rt}, tcp, 444), outPass},
		{"ipv6 dest options to VIP port", frame6Ext(t, vip6, []layers.IPProtocol{do}, tcp, 443), outVIP},
		{"ipv6 hbh, routing, dest options to VIP port", frame6Ext(t, vip6, []layers.IPProtocol{hbh, rt, do}, tcp, 443), outVIP},
		{"ipv6 hbh, routing, dest options to other port", frame6Ext(t, vip6, []layers.IPProtocol{hbh, rt, do}, tcp, 444), outPass},
		{"ipv6 4 extension headers to VIP port", frame6Ext(t, vip6, []layers.IPProtocol{hbh, do, rt, do}, tcp, 443), outVIP},
		{"ipv6 4 extension headers to other port", frame6Ext(t, vip6, []layers.IPProtocol{hbh, do, rt, do}, tcp, 444), outPass},
		{"ipv6 5 extension headers to VIP address", frame6Ext(t, vip6, []layers.IPProtocol{hbh, do, rt, do, do}, tcp, 444), outVIP},
		{"ipv6 5 extension headers to non-VIP", frame6Ext(t, nonVIP6, []layers.IPProtocol{hbh, do, rt, do, do}, tcp, 443), outPass},
		{"ipv6 fragment to VIP address", frame6Ext(t, vip6, []layers.IPProtocol{frag}, tcp, 444), outVIP},
		{"ipv6 hbh then fragment to VIP address", frame6Ext(t, vip6, []layers.IPProtocol{hbh, frag}, tcp, 444), outVIP},
		{"ipv6 fragment to non-VIP", frame6Ext(t, nonVIP6, []layers.IPProtocol{frag}, tcp, 443), outPass},
		{"icmpv6 after hop-by-hop to VIP address", frame6Ext(t, vip6, []layers.IPProtocol{hbh}, layers.IPProtocolICMPv6, 0), outVIP},
		{"icmp frag-needed to VIP address", icmp4Error(t, vipTCP, vipTCP, layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded), outVIP},
		{"icmp port-unreachable to VIP address", icmp4Error(t, vipUDP, vipUDP, layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort), outVIP},
		{"icmp time-exceeded to VIP address", icmp4Error(t, vipTCP, vipTCP, layers.ICMPv4TypeTimeExceeded, 0), outVIP},
		{"icmp frag-needed to non-VIP quoting a VIP", icmp4Error(t, nonVIP, vipTCP, layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodeFragmentationNeeded), outPass},
		{"icmpv6 packet-too-big to VIP address", icmp6Error(t, vip6, vip6, layers.ICMPv6TypePacketTooBig, 0), outVIP},
		{"icmpv6 unreachable to VIP address", icmp6Error(t, vip6, vip6, layers.ICMPv6TypeDestinationUnreachable, layers.ICMPv6CodeAddressUnreachable), outVIP},
		{"icmpv6 time-exceeded to VIP address", icmp6Error(t, vip6, vip6, layers.ICMPv6TypeTimeExceeded, 0), outVIP},
		{"icmpv6 packet-too-big to non-VIP quoting a VIP", icmp6Error(t, nonVIP6, vip6, layers.ICMPv6TypePacketTooBig, 0), outPass},
		{"ipv4 14-byte frame", frame4(t, vipTCP, tcp, 80)[:14], outMalformed},
	}
	for ihl := 6; ihl <= 15; ihl++ {
		cases = append(cases,
			steerCase{fmt.Sprintf("ihl %d to VIP port", ihl), frame4Opts(t, vipTCP, 80, ihl), outVIP},
			steerCase{fmt.Sprintf("ihl %d to other port", ihl), frame4Opts(t, vipTCP, 81, ihl), outPass},
		)
	}
	for ihl := range byte(5) {
		cases = append(cases, steerCase{fmt.Sprintf("ihl %d", ihl), frametest.WithIHL(frame4(t, vipTCP, tcp, 80), 14, ihl), outMalformed})
	}
	// Truncation at every length: inside the L2/L3 headers it is malformed;
	// past them (inside the L4 header, or inside an IPv6 extension header
	// whose next-header and length bytes are there) to a VIP address it goes
	// to the worker through the address marker, elsewhere it is passed.
	truncations := []struct {
		name   string
		frame  []byte
		l3     int // offset of the IP header
		parsed int // the frame is malformed below this length
		end    int // end of the L4 header
		vip    bool
	}{
		{"tcp", frame4(t, vipTCP, tcp, 80), 14, 34, 54, true},
		{"udp", frame4(t, vipUDP, udp, 53), 14, 34, 42, true},
		{"tcp non-VIP", frame4(t, nonVIP, tcp, 80), 14, 34, 54, false},
		{"vlan tcp", frame4VLAN(t, layers.EthernetTypeDot1Q, vipTCP, tcp, 80), 18, 38, 58, true},
		{"ihl 15 tcp", frame4Opts(t, vipTCP, 80, 15), 14, 74, 94, true},
		{"ipv6 tcp", frame6(t, vip6, tcp, 443), 14, 54, 74, true},
		{"ipv6 tcp non-VIP", frame6(t, nonVIP6, tcp, 443), 14, 54, 74, false},
		{"ipv6 hbh tcp", frame6Ext(t, vip6, []layers.IPProtocol{hbh}, tcp, 443), 14, 56, 82, true},
		{"ipv6 hbh, routing, dest options tcp", frame6Ext(t, vip6, []layers.IPProtocol{hbh, rt, do}, tcp, 443), 14, 80, 122, true},
		{"ipv6 hbh tcp non-VIP", frame6Ext(t, nonVIP6, []layers.IPProtocol{hbh}, tcp, 443), 14, 56, 82, false},
	}
	for _, tr := range truncations {
		for n := 14; n < tr.end; n++ {
			want := outMalformed
			if n >= tr.parsed {
				want = outPass
				if tr.vip {
					want = outVIP
				}
			}
			if n == 14 && tr.l3 == 18 {
				// 14 bytes of a tagged frame: the tag itself is missing.
				want = outMalformed
			}
			cases = append(cases, steerCase{fmt.Sprintf("%s cut at %d", tr.name, n), tr.frame[:n], want})
		}
	}
	return cases
}

func loadTestSteer(t testing.TB) *Steer {
	t.Helper()
	testenv.Root(t, "loads the steer program (BPF_PROG_TEST_RUN)")
	s, err := LoadSteer(SteerOptions{SpliceTableSize: 4})
	if err != nil {
		t.Fatalf("LoadSteer: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if err := s.SetVIPs(testVIPs()); err != nil {
		t.Fatalf("SetVIPs: %v", err)
	}
	return s
}

func TestSteerVerdicts(t *testing.T) {
	s := loadTestSteer(t)
	for _, tc := range steerCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			before, err := s.Counters()
			if err != nil {
				t.Fatal(err)
			}
			out := make([]byte, len(tc.frame)+256)
			opts := ebpf.RunOptions{Data: tc.frame, DataOut: out}
			verdict, err := s.Program().Run(&opts)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if verdict != xdpPass {
				t.Errorf("verdict %d, want XDP_PASS (%d)", verdict, xdpPass)
			}
			if !bytes.Equal(opts.DataOut, tc.frame) {
				t.Errorf("the program changed the frame")
			}
			after, err := s.Counters()
			if err != nil {
				t.Fatal(err)
			}
			if got, want := sub(after, before), tc.want.delta(); got != want {
				t.Errorf("counter delta %+v, want %+v (%v)", got, want, tc.want)
			}
		})
	}
}

func TestSteerSetVIPs(t *testing.T) {
	s := loadTestSteer(t)
	contents := func() map[VIPKey]vipValue {
		got := map[VIPKey]vipValue{}
		var k VIPKey
		var v vipValue
		it := s.objs.Vips.Iterate()
		for it.Next(&k, &v) {
			got[k] = v
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		return got
	}
	marker := vipValue{Flags: vipFlagAddrMarker}
	want := map[VIPKey]vipValue{
		NewVIPKey(vipTCP, 80, 6): {ID: 1},
		NewVIPKey(vipUDP, 0, 17): {ID: 2},
		NewVIPKey(vip6, 443, 6):  {ID: 3},
		AddrKey(vipTCP):          marker,
		AddrKey(vipUDP):          marker,
		AddrKey(vip6):            marker,
	}
	if got := contents(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("map after SetVIPs:\n got %v\nwant %v", got, want)
	}

	// Replace: vipUDP goes away with its marker, vipTCP gains a port.
	next := []VIPEntry{
		{Key: NewVIPKey(vipTCP, 80, 6), ID: 1},
		{Key: NewVIPKey(vipTCP, 443, 6), ID: 4},
		{Key: NewVIPKey(vip6, 443, 6), ID: 3},
	}
	if err := s.SetVIPs(next); err != nil {
		t.Fatal(err)
	}
	want = map[VIPKey]vipValue{
		NewVIPKey(vipTCP, 80, 6):  {ID: 1},
		NewVIPKey(vipTCP, 443, 6): {ID: 4},
		NewVIPKey(vip6, 443, 6):   {ID: 3},
		AddrKey(vipTCP):           marker,
		AddrKey(vip6):             marker,
	}
	if got := contents(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("map after replace:\n got %v\nwant %v", got, want)
	}
	verdictDelta := func(frame []byte) SteerCounters {
		before, _ := s.Counters()
		if _, err := s.Program().Run(&ebpf.RunOptions{Data: frame}); err != nil {
			t.Fatal(err)
		}
		after, _ := s.Counters()
		return sub(after, before)
	}
	if got := verdictDelta(frame4(t, vipUDP, layers.IPProtocolUDP, 53)); got != outPass.delta() {
		t.Errorf("removed VIP still steered: %+v", got)
	}
	if got := verdictDelta(frame4(t, vipTCP, layers.IPProtocolTCP, 443)); got != outVIP.delta() {
		t.Errorf("added VIP not steered: %+v", got)
	}

	// Invalid input changes nothing.
	bad := []struct {
		name string
		vips []VIPEntry
	}{
		{"zero key", []VIPEntry{{}}},
		{"proto 0", []VIPEntry{{Key: NewVIPKey(vipTCP, 80, 0)}}},
		{"invalid address", []VIPEntry{{Key: NewVIPKey(netip.Addr{}, 80, 6)}}},
		{"dirty ipv4 key", []VIPEntry{{Key: VIPKey{Addr: [16]byte{198, 18, 0, 1, 5: 1}, Proto: 6, Family: 4}}}},
		{"duplicate with other ID", []VIPEntry{{Key: NewVIPKey(vipTCP, 80, 6), ID: 1}, {Key: NewVIPKey(vipTCP, 80, 6), ID: 2}}},
	}
	for _, tc := range bad {
		if err := s.SetVIPs(tc.vips); err == nil {
			t.Errorf("%s: SetVIPs accepted %v", tc.name, tc.vips)
		}
	}
	many := make([]VIPEntry, 4096)
	for i := range many {
		many[i] = VIPEntry{Key: NewVIPKey(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), 80, 6), ID: uint32(i)}
	}
	if err := s.SetVIPs(many); !errors.Is(err, ErrTooManyVIPs) {
		t.Errorf("SetVIPs(4096 VIPs + markers) = %v, want ErrTooManyVIPs", err)
	}
	if got := contents(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("map changed by rejected input:\n got %v\nwant %v", got, want)
	}

	if err := s.SetVIPs(nil); err != nil {
		t.Fatal(err)
	}
	if got := contents(); len(got) != 0 {
		t.Errorf("map not empty after SetVIPs(nil): %v", got)
	}
}

// TestSteerSetVIPsFull swaps two VIP sets that each fill most of the map,
// so old and new never fit together.
func TestSteerSetVIPsFull(t *testing.T) {
	s := loadTestSteer(t)
	set := func(third byte) []VIPEntry {
		vips := make([]VIPEntry, 2000) // 4000 entries with the markers
		for i := range vips {
			addr := netip.AddrFrom4([4]byte{198, 19, third + byte(i>>8), byte(i)})
			vips[i] = VIPEntry{Key: NewVIPKey(addr, 80, 6), ID: uint32(i)}
		}
		return vips
	}
	for _, third := range []byte{0, 100, 0} {
		vips := set(third)
		if err := s.SetVIPs(vips); err != nil {
			t.Fatalf("SetVIPs(set %d): %v", third, err)
		}
		var k VIPKey
		var v vipValue
		n := 0
		it := s.objs.Vips.Iterate()
		for it.Next(&k, &v) {
			n++
			if k.Addr[2] < third || k.Addr[2] >= third+8 {
				t.Fatalf("set %d: stale key %v left", third, k)
			}
		}
		if err := it.Err(); err != nil {
			t.Fatal(err)
		}
		if n != 2*len(vips) {
			t.Fatalf("set %d: %d entries, want %d", third, n, 2*len(vips))
		}
	}
}

func TestSteerSocketArgs(t *testing.T) {
	s := loadTestSteer(t)
	for _, q := range []int{-1, MaxQueues} {
		if err := s.SetSocket(q, 3); err == nil {
			t.Errorf("SetSocket(%d) accepted", q)
		}
		if err := s.ClearSocket(q); err == nil {
			t.Errorf("ClearSocket(%d) accepted", q)
		}
	}
	if err := s.SetSocket(0, -1); err == nil {
		t.Error("SetSocket(fd -1) accepted")
	}
	if err := s.ClearSocket(3); err != nil {
		t.Errorf("ClearSocket of an empty slot: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.SetVIPs(testVIPs()); !errors.Is(err, ErrClosed) {
		t.Errorf("SetVIPs after Close = %v, want ErrClosed", err)
	}
	if _, err := s.Attach(1, ModeAuto); !errors.Is(err, ErrClosed) {
		t.Errorf("Attach after Close = %v, want ErrClosed", err)
	}
}

func TestVIPKey(t *testing.T) {
	tests := []struct {
		addr  string
		port  uint16
		proto uint8
		want  []byte // memory image of struct vip_key
	}{
		{"198.18.0.10", 80, 6, []byte{198, 18, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 80, 6, 4}},
		{"::ffff:198.18.0.10", 0x1234, 17, []byte{198, 18, 0, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34, 17, 4}},
		{"2001:db8::1", 443, 6, []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0x01, 0xbb, 6, 6}},
	}
	for _, tc := range tests {
		k := NewVIPKey(netip.MustParseAddr(tc.addr), tc.port, tc.proto)
		got, err := binary.Append(nil, binary.NativeEndian, k)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, tc.want) {
			t.Errorf("NewVIPKey(%s, %d, %d) = % x, want % x", tc.addr, tc.port, tc.proto, got, tc.want)
		}
		if k.HostPort() != tc.port || k.IP() != netip.MustParseAddr(tc.addr).Unmap() {
			t.Errorf("round trip of %s:%d gave %v", tc.addr, tc.port, k)
		}
		if m := AddrKey(netip.MustParseAddr(tc.addr)); m.Port != 0 || m.Proto != 0 || m.Addr != k.Addr || m.Family != k.Family {
			t.Errorf("AddrKey(%s) = %v", tc.addr, m)
		}
	}
	if got := NewVIPKey(netip.MustParseAddr("198.18.0.10"), 80, 6).String(); got != "198.18.0.10:80/6" {
		t.Errorf("String() = %q", got)
	}
}

// TestLayout checks the Go mirrors against the C structs as compiled (the
// object's BTF) and the counter indexes against the map sizes.
func TestLayout(t *testing.T) {
	spec, err := loadSteer()
	if err != nil {
		t.Fatal(err)
	}
	checkStruct := func(name string, typ btf.Type, goSize uintptr, offsets map[string]uintptr) {
		t.Helper()
		st, ok := typ.(*btf.Struct)
		if !ok {
			t.Fatalf("%s: BTF type %v is not a struct", name, typ)
		}
		if uintptr(st.Size) != goSize {
			t.Errorf("%s: C size %d, Go size %d", name, st.Size, goSize)
		}
		if len(st.Members) != len(offsets) {
			t.Errorf("%s: C has %d members, Go mirror %d", name, len(st.Members), len(offsets))
		}
		for _, m := range st.Members {
			if off, ok := offsets[m.Name]; !ok || uintptr(m.Offset.Bytes()) != off {
				t.Errorf("%s.%s: C offset %d, Go offset %d (known %v)", name, m.Name, m.Offset.Bytes(), off, ok)
			}
		}
	}
	var k VIPKey
	checkStruct("vip_key", spec.Maps[steerMapVips].Key, unsafe.Sizeof(k), map[string]uintptr{
		"addr": unsafe.Offsetof(k.Addr), "port": unsafe.Offsetof(k.Port),
		"proto": unsafe.Offsetof(k.Proto), "family": unsafe.Offsetof(k.Family),
	})
	var v vipValue
	checkStruct("vip_value", spec.Maps[steerMapVips].Value, unsafe.Sizeof(v), map[string]uintptr{
		"id": unsafe.Offsetof(v.ID), "flags": unsafe.Offsetof(v.Flags),
	})
	if unsafe.Sizeof(k) != unsafe.Sizeof(steerVipKey{}) || unsafe.Sizeof(v) != unsafe.Sizeof(steerVipValue{}) {
		t.Error("hand-written mirrors differ in size from the bpf2go types")
	}
	var sk SpliceKey
	checkStruct("splice_key", spec.Maps[steerMapSplice].Key, unsafe.Sizeof(sk), map[string]uintptr{
		"family": unsafe.Offsetof(sk.Family), "pad": 1, "saddr": unsafe.Offsetof(sk.Saddr),
		"daddr": unsafe.Offsetof(sk.Daddr), "sport": unsafe.Offsetof(sk.Sport), "dport": unsafe.Offsetof(sk.Dport),
	})
	var sd SpliceDir
	checkStruct("splice_dir", spec.Maps[steerMapSplice].Value, unsafe.Sizeof(sd), map[string]uintptr{
		"saddr": unsafe.Offsetof(sd.Saddr), "daddr": unsafe.Offsetof(sd.Daddr),
		"sport": unsafe.Offsetof(sd.Sport), "dport": unsafe.Offsetof(sd.Dport),
		"dmac": unsafe.Offsetof(sd.Dmac), "smac": unsafe.Offsetof(sd.Smac),
		"ifindex": unsafe.Offsetof(sd.Ifindex), "seq_delta": unsafe.Offsetof(sd.SeqDelta),
		"ack_delta": unsafe.Offsetof(sd.AckDelta), "wscale_in": unsafe.Offsetof(sd.WscaleIn),
		"wscale_out": unsafe.Offsetof(sd.WscaleOut), "flags": unsafe.Offsetof(sd.Flags),
		"dir": unsafe.Offsetof(sd.Dir), "ts_base": unsafe.Offsetof(sd.TSBase),
		"tsecr_base": unsafe.Offsetof(sd.TSecrBase), "ip_csum_diff": unsafe.Offsetof(sd.IPCsumDiff),
		"l4_csum_diff": unsafe.Offsetof(sd.L4CsumDiff), "pair": unsafe.Offsetof(sd.Pair),
	})
	var sp SplicePair
	checkStruct("splice_pair", spec.Maps[steerMapSplicePairs].Value, unsafe.Sizeof(sp), map[string]uintptr{
		"state": unsafe.Offsetof(sp.State), "pad": 4, "last_ns": unsafe.Offsetof(sp.LastNs),
		"last_seq": unsafe.Offsetof(sp.LastSeq), "last_ack": unsafe.Offsetof(sp.LastAck),
		"ts_delta": unsafe.Offsetof(sp.TSDelta),
	})
	var sc SpliceCount
	checkStruct("splice_count", spec.Maps[steerMapSpliceCounts].Value, unsafe.Sizeof(sc), map[string]uintptr{
		"packets": unsafe.Offsetof(sc.Packets), "bytes": unsafe.Offsetof(sc.Bytes),
	})
	if n := spec.Maps[steerMapCounters].MaxEntries; n != steerCounterMax {
		t.Errorf("counters map has %d entries, Go knows %d", n, steerCounterMax)
	}
	if n := spec.Maps[steerMapXsks].MaxEntries; n != MaxQueues {
		t.Errorf("xsks map has %d entries, MaxQueues is %d", n, MaxQueues)
	}
}

func TestAttachArgs(t *testing.T) {
	s := loadTestSteer(t)
	if _, err := s.Attach(0, ModeAuto); err == nil {
		t.Error("Attach(ifindex 0) accepted")
	}
	if _, err := s.Attach(1, "turbo"); err == nil {
		t.Error("Attach(mode turbo) accepted")
	}
}

// FuzzSteer runs arbitrary frames through the program: it must always pass
// (no socket is bound), never change the frame, and count each frame once.
func FuzzSteer(f *testing.F) {
	for _, tc := range steerCases(f) {
		f.Add(tc.frame)
	}
	s := loadTestSteer(f)
	f.Fuzz(func(t *testing.T, frame []byte) {
		if len(frame) < 14 {
			return // BPF_PROG_TEST_RUN refuses frames shorter than Ethernet
		}
		before, err := s.Counters()
		if err != nil {
			t.Fatal(err)
		}
		out := make([]byte, len(frame)+256)
		opts := ebpf.RunOptions{Data: frame, DataOut: out}
		verdict, err := s.Program().Run(&opts)
		if err != nil {
			t.Fatal(err)
		}
		if verdict != xdpPass || !bytes.Equal(opts.DataOut, frame) {
			t.Fatalf("verdict %d, frame changed %v", verdict, !bytes.Equal(opts.DataOut, frame))
		}
		after, err := s.Counters()
		if err != nil {
			t.Fatal(err)
		}
		d := sub(after, before)
		if d.Seen != 1 || d.Passed+d.Malformed+d.Redirected != 1 || d.NoSocket > d.Passed {
			t.Fatalf("counter delta %+v", d)
		}
	})
}

// BenchmarkSteer measures the program per frame, loaded without splice
// and with it (an empty splice map: non-VIP TCP frames pay its lookup;
// package splice benchmarks spliced frames).
func BenchmarkSteer(b *testing.B) {
	for _, pairs := range []int{0, 32768} {
		testenv.Root(b, "loads the steer program (BPF_PROG_TEST_RUN)")
		s, err := LoadSteer(SteerOptions{SpliceTableSize: pairs})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		if err := s.SetVIPs(testVIPs()); err != nil {
			b.Fatal(err)
		}
		for _, bc := range []struct {
			name  string
			frame []byte
		}{
			{"vip-tcp", frame4(b, vipTCP, layers.IPProtocolTCP, 80)},
			{"non-vip-tcp", frame4(b, nonVIP, layers.IPProtocolTCP, 80)},
			{"vip-ipv6", frame6(b, vip6, layers.IPProtocolTCP, 443)},
		} {
			b.Run(fmt.Sprintf("splice-%d/%s", pairs, bc.name), func(b *testing.B) {
				_, per, err := s.Program().Benchmark(bc.frame, b.N, b.ResetTimer)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
			})
		}
	}
}

// TestSteerPassFragments: an address whose VIP passes fragments hands every
// fragment (first and later ones, IPv4 and IPv6) to the kernel, and still
// steers its unfragmented traffic.
func TestSteerPassFragments(t *testing.T) {
	s := loadTestSteer(t)
	vips := testVIPs()
	for i := range vips {
		vips[i].PassFragments = true
	}
	if err := s.SetVIPs(vips); err != nil {
		t.Fatal(err)
	}
	tcp := layers.IPProtocolTCP
	for _, tc := range []steerCase{
		{"non-first fragment", fragment4(t, vipTCP, tcp), outPass},
		{"first fragment", firstFragment4(t, vipTCP, 80), outPass},
		{"unfragmented", frame4(t, vipTCP, tcp, 80), outVIP},
	} {
		before, _ := s.Counters()
		opts := ebpf.RunOptions{Data: tc.frame, DataOut: make([]byte, len(tc.frame)+256)}
		if _, err := s.Program().Run(&opts); err != nil {
			t.Fatal(err)
		}
		after, _ := s.Counters()
		if got, want := sub(after, before), tc.want.delta(); got != want {
			t.Errorf("%s: counter delta %+v, want %+v", tc.name, got, want)
		}
	}
}

// TestSteerVerifierHeadroom loads the program with splice on (its largest
// form) and reports what the verifier went through.
func TestSteerVerifierHeadroom(t *testing.T) {
	testenv.Root(t, "loads the steer program")
	spec, err := steerSpec(SteerOptions{SpliceTableSize: 4})
	if err != nil {
		t.Fatal(err)
	}
	var objs steerObjects
	if err := spec.LoadAndAssign(&objs, &ebpf.CollectionOptions{Programs: ebpf.ProgramOptions{LogLevel: ebpf.LogLevelStats}}); err != nil {
		t.Fatal(err)
	}
	defer objs.Close()
	var n int
	log := objs.XlbSteer.VerifierLog
	i := strings.Index(log, "processed ")
	if i < 0 {
		t.Fatalf("no statistics in the verifier log: %q", log)
	}
	if _, err := fmt.Sscanf(log[i:], "processed %d insns", &n); err != nil {
		t.Fatal(err)
	}
	t.Logf("verifier: %d instructions processed; %s", n, log[strings.Index(log, "stack depth"):i])
	if n > 200_000 {
		t.Errorf("the verifier processed %d instructions (limit 1000000): split the program further", n)
	}
}
