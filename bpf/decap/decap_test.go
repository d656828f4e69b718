package decap

import (
	"bytes"
	"fmt"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/internal/frametest"
	"github.com/xlbproject/xlb/internal/testenv"
)

// xdpDrop is XDP_DROP (enum xdp_action).
const xdpDrop = 1

// The balancers' prefixes and the backend's addresses of the fixtures: the
// frames the builders make go from balancer(6) to backend(6).
var (
	testAllow = []netip.Prefix{netip.MustParsePrefix("198.18.0.0/30"), netip.PrefixFrom(balancer6, 128)}
	testLocal = []netip.Addr{backend, backend6, vip4, vip6}
	// A host the balancers' prefixes do not cover, and an address that is
	// not the backend's.
	stranger  = netip.MustParseAddr("198.18.0.99")
	stranger6 = netip.MustParseAddr("2001:db8::99")
	other     = netip.MustParseAddr("198.18.0.51")
	other6    = netip.MustParseAddr("2001:db8::51")
)

// testOptions are the options the attach tests use.
var testOptions = Options{GUEPort: DefaultGUEPort, Allow: testAllow, Local: testLocal}

// loadTestDecap loads the program with the GUE port given (0: disabled),
// testAllow and testLocal.
func loadTestDecap(t testing.TB, guePort uint16) *decapObjects {
	t.Helper()
	testenv.Root(t, "loads the decap program (BPF_PROG_TEST_RUN)")
	if err := rlimit.RemoveMemlock(); err != nil {
		t.Fatal(err)
	}
	var objs decapObjects
	if err := loadDecapObjects(&objs, nil); err != nil {
		t.Fatalf("load decap: %v", err)
	}
	t.Cleanup(func() { objs.Close() })
	if err := objs.GuePort.Update(uint32(0), uint32(guePort), ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
	if err := configure(objs.AllowedSources, objs.LocalAddrs, testAllow, testLocal); err != nil {
		t.Fatal(err)
	}
	return &objs
}

type decapCase struct {
	name string
	in   []byte
	out  []byte // nil: the frame must come out untouched
	want Counters
	gue  bool // a whole GUE frame (passed untouched when GUE is disabled)
}

func one(c Counter) Counters {
	var cs Counters
	cs[c] = 1
	return cs
}

func decapCases(t testing.TB) []decapCase {
	in4, in6 := innerTCP4(t), innerTCP6(t)
	out4 := func(vlan bool) []byte { return l2(t, vlan, layers.EthernetTypeIPv4, gopacket.Payload(in4)) }
	out6 := func(vlan bool) []byte { return l2(t, vlan, layers.EthernetTypeIPv6, gopacket.Payload(in6)) }
	ipip := encap(t, in4, layers.IPProtocolIPv4, 5, false)
	var (
		ipipN    = one(CounterIPIP)
		sixIn4   = one(Counter6in4)
		fourIn6  = one(Counter4in6)
		sixIn6   = one(Counter6in6)
		gue      = one(CounterGUE)
		passed   = one(CounterPassed)
		bad      = one(CounterMalformed)
		spoofed  = one(CounterSourceNotAllowed)
		notLocal = one(CounterNotLocalDestination)
	)
	const port = DefaultGUEPort
	v4, v6 := byte(layers.IPProtocolIPv4), byte(layers.IPProtocolIPv6)
	fragment := encap(t, in4, layers.IPProtocolIPv4, 5, false)
	fragment[14+6] |= 0x20 // MF
	gueFragment := gueFrame(t, true, port, gueHdr(v4, 0, false), in4, false)
	gueFragment[14+6] |= 0x20
	// Every kind of tunnel, for the outer address checks.
	tunnels := []struct {
		name  string
		frame []byte
		v6    bool // outer IPv6
		gue   bool
	}{
		{"ipip", ipip, false, false},
		{"6in4", encap(t, in6, layers.IPProtocolIPv6, 5, false), false, false},
		{"4in6", encap6(t, in4, layers.IPProtocolIPv4, false), true, false},
		{"6in6", encap6(t, in6, layers.IPProtocolIPv6, false), true, false},
		{"gue over ipv4", gueFrame(t, true, port, gueHdr(v4, 0, false), in4, false), false, true},
		{"gue over ipv6", gueFrame(t, false, port, gueHdr(v6, 0, false), in6, false), true, true},
		{"gue variant 1", gueFrame(t, true, port, nil, in4, false), false, true},
	}
	cases := []decapCase{
		{"ipip", ipip, out4(false), ipipN, false},
		{"ipip outer ihl 7", encap(t, in4, layers.IPProtocolIPv4, 7, false), out4(false), ipipN, false},
		{"ipip outer ihl 15", encap(t, in4, layers.IPProtocolIPv4, 15, false), out4(false), ipipN, false},
		{"ipip vlan", encap(t, in4, layers.IPProtocolIPv4, 5, true), out4(true), ipipN, false},
		{"6in4", encap(t, in6, layers.IPProtocolIPv6, 5, false), out6(false), sixIn4, false},
		{"6in4 vlan", encap(t, in6, layers.IPProtocolIPv6, 5, true), out6(true), sixIn4, false},
		{"4in6", encap6(t, in4, layers.IPProtocolIPv4, false), out4(false), fourIn6, false},
		{"4in6 vlan", encap6(t, in4, layers.IPProtocolIPv4, true), out4(true), fourIn6, false},
		{"6in6", encap6(t, in6, layers.IPProtocolIPv6, false), out6(false), sixIn6, false},
		{"6in6 vlan", encap6(t, in6, layers.IPProtocolIPv6, true), out6(true), sixIn6, false},
		{"gue ipv4 in ipv4", gueFrame(t, true, port, gueHdr(v4, 0, false), in4, false), out4(false), gue, true},
		{"gue ipv6 in ipv4", gueFrame(t, true, port, gueHdr(v6, 0, false), in6, false), out6(false), gue, true},
		{"gue ipv4 in ipv6", gueFrame(t, false, port, gueHdr(v4, 0, false), in4, false), out4(false), gue, true},
		{"gue ipv6 in ipv6", gueFrame(t, false, port, gueHdr(v6, 0, false), in6, false), out6(false), gue, true},
		{"gue vlan", gueFrame(t, true, port, gueHdr(v4, 0, false), in4, true), out4(true), gue, true},
		{"gue ipv6 vlan", gueFrame(t, false, port, gueHdr(v6, 0, false), in6, true), out6(true), gue, true},
		{"gue optional fields", gueFrame(t, true, port, gueHdr(v4, 2, false), in4, false), out4(false), gue, true},
		{"gue longest optional fields", gueFrame(t, false, port, gueHdr(v6, 31, false), in6, false), out6(false), gue, true},
		{"gue variant 1 ipv4", gueFrame(t, true, port, nil, in4, false), out4(false), gue, true},
		{"gue variant 1 ipv6", gueFrame(t, false, port, nil, in6, false), out6(false), gue, true},
		{"gue control message", gueFrame(t, true, port, gueHdr(v4, 0, true), in4, false), nil, passed, true},
		{"gue carrying udp", gueFrame(t, true, port, gueHdr(17, 0, false), in4, false), nil, passed, true},
		{"gue version 2", gueFrame(t, true, port, []byte{0x80, v4, 0, 0}, in4, false), nil, passed, true},
		{"gue version 3", gueFrame(t, true, port, []byte{0xc0, v4, 0, 0}, in4, false), nil, passed, true},
		{"gue inner version mismatch", gueFrame(t, true, port, gueHdr(v4, 0, false), in6, false), nil, bad, true},
		{"gue variant 1 bad version", gueFrame(t, true, port, nil, append([]byte{0x55}, in4[1:]...), false), nil, bad, true},
		{"gue outer fragment", gueFragment, nil, passed, false},
		// UDP to any other port is ordinary traffic, whoever sends it.
		{"udp to another port", gueFrame(t, true, port+1, gueHdr(v4, 0, false), in4, false), nil, passed, false},
		{"udp to another port over ipv6", gueFrame(t, false, port-1, gueHdr(v4, 0, false), in4, false), nil, passed, false},
		{"udp to another port from a stranger", readdress(gueFrame(t, true, port+1, gueHdr(v4, 0, false), in4, false), stranger, backend), nil, passed, false},
		{"udp to another port from a stranger over ipv6", readdress(gueFrame(t, false, 53, gueHdr(v6, 0, false), in6, false), stranger6, backend6), nil, passed, false},
		{"plain tcp", plain(t, inner(t, client, backend, layers.IPProtocolTCP, 80)), nil, passed, false},
		{"plain ipv6", plain(t, innerTCP6(t)), nil, passed, false},
		{"plain udp", plain(t, inner(t, client, backend, layers.IPProtocolUDP, 53)), nil, passed, false},
		{"plain tcp from a stranger to another host", plain(t, inner(t, stranger, other, layers.IPProtocolTCP, 80)), nil, passed, false},
		{"arp", arp(t), nil, passed, false},
		{"ipip fragment", fragment, nil, passed, false},
		{"6in6 behind hop-by-hop", encap6(t, in6, layers.IPProtocolIPv6, false, layers.IPProtocolIPv6HopByHop), nil, passed, false},
		{"6in6 fragment", encap6(t, in6, layers.IPProtocolIPv6, false, layers.IPProtocolIPv6Fragment), nil, passed, false},
		{"ipip outer ihl 4", frametest.WithIHL(ipip, 14, 4), nil, bad, false},
		{"ipip no inner", ipip[:34], nil, bad, false},
		{"ipip inner version mismatch", encap(t, in6, layers.IPProtocolIPv4, 5, false), nil, bad, false},
		{"6in4 inner version mismatch", encap(t, in4, layers.IPProtocolIPv6, 5, false), nil, bad, false},
		{"4in6 inner version mismatch", encap6(t, in6, layers.IPProtocolIPv4, false), nil, bad, false},
		{"6in6 inner version mismatch", encap6(t, in4, layers.IPProtocolIPv6, false), nil, bad, false},
		{"ipip vlan truncated tag", encap(t, in4, layers.IPProtocolIPv4, 5, true)[:16], nil, bad, false},
		{"ipip ihl 15 truncated options", encap(t, in4, layers.IPProtocolIPv4, 15, false)[:60], nil, bad, false},
		// The prefix's edge: 198.18.0.3 is in 198.18.0.0/30, .4 is not.
		{"ipip from the allowed prefix's last address", readdress(ipip, netip.MustParseAddr("198.18.0.3"), backend), out4(false), ipipN, false},
		{"ipip from just past the allowed prefix", readdress(ipip, netip.MustParseAddr("198.18.0.4"), backend), nil, spoofed, false},
		{"ipip to a vip address", readdress(ipip, balancer, vip4), out4(false), ipipN, false},
		// An IPv4 prefix never matches an IPv6 source with the same bytes.
		{"4in6 from the ipv4 prefix's bytes", readdress(encap6(t, in4, layers.IPProtocolIPv4, false), netip.MustParseAddr("c612:1::1"), backend6), nil, spoofed, false},
	}
	for _, tn := range tunnels {
		src, dst, wrongDst := stranger, backend, other
		if tn.v6 {
			src, dst, wrongDst = stranger6, backend6, other6
		}
		cases = append(cases,
			decapCase{tn.name + " spoofed source", readdress(tn.frame, src, dst), nil, spoofed, tn.gue},
			decapCase{tn.name + " not local", readdress(tn.frame, balancer6Or4(tn.v6), wrongDst), nil, notLocal, tn.gue},
			// Not local is what counts when both are wrong.
			decapCase{tn.name + " spoofed and not local", readdress(tn.frame, src, wrongDst), nil, notLocal, tn.gue},
		)
	}
	// Truncation at every length up to and including the inner version
	// byte is malformed; the inner packet itself is the stack's business.
	truncations := []struct {
		name  string
		frame []byte
		inner int // offset of the inner packet
	}{
		{"ipip", ipip, 34},
		{"6in6", encap6(t, in6, layers.IPProtocolIPv6, false), 54},
		{"6in6 vlan", encap6(t, in6, layers.IPProtocolIPv6, true), 58},
		{"gue over ipv4", gueFrame(t, true, port, gueHdr(v4, 0, false), in4, false), 46},
		{"gue over ipv6", gueFrame(t, false, port, gueHdr(v6, 0, false), in6, false), 66},
		{"gue optional fields", gueFrame(t, true, port, gueHdr(v4, 3, false), in4, false), 58},
	}
	for _, tr := range truncations {
		for n := 14; n <= tr.inner; n++ {
			cases = append(cases, decapCase{fmt.Sprintf("%s cut at %d", tr.name, n), tr.frame[:n], nil, bad, false})
		}
	}
	return cases
}

func balancer6Or4(v6 bool) netip.Addr {
	if v6 {
		return balancer6
	}
	return balancer
}

func runDecap(t *testing.T, objs *decapObjects, in []byte) (uint32, []byte, Counters) {
	t.Helper()
	before, err := readCounters(objs.DecapCounters)
	if err != nil {
		t.Fatal(err)
	}
	opts := ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+256)}
	verdict, err := objs.XlbDecap.Run(&opts)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	after, err := readCounters(objs.DecapCounters)
	if err != nil {
		t.Fatal(err)
	}
	for i := range after {
		after[i] -= before[i]
	}
	return verdict, opts.DataOut, after
}

// TestDecapFrames: every verdict of the program, byte for byte, with its
// counter. Tunnels from the allowed prefixes to the host's addresses are
// decapsulated; tunnels from elsewhere or to another address are dropped
// and counted by reason; everything else passes untouched.
func TestDecapFrames(t *testing.T) {
	objs := loadTestDecap(t, DefaultGUEPort)
	for _, tc := range decapCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			verdict, out, got := runDecap(t, objs, tc.in)
			wantVerdict := uint32(xdpPass)
			if tc.want.Dropped() > 0 {
				wantVerdict = xdpDrop
			}
			if verdict != wantVerdict {
				t.Errorf("verdict %d, want %d", verdict, wantVerdict)
			}
			want := tc.out
			if want == nil {
				want = tc.in
			}
			if !bytes.Equal(out, want) {
				t.Errorf("output frame\n got % x\nwant % x", out, want)
			}
			if got != tc.want {
				t.Errorf("counter delta %v, want %v", got, tc.want)
			}
		})
	}
}

// TestDecapGUEDisabled: with GUE port 0 (the map's value until the loader
// sets it) every GUE frame is passed untouched, whoever sent it, and
// IP-in-IP still works.
func TestDecapGUEDisabled(t *testing.T) {
	objs := loadTestDecap(t, 0)
	for _, tc := range decapCases(t) {
		if !tc.gue && tc.name != "ipip" {
			continue
		}
		want := one(CounterPassed)
		if !tc.gue {
			want = tc.want
		}
		_, out, got := runDecap(t, objs, tc.in)
		if got != want || (tc.gue && !bytes.Equal(out, tc.in)) {
			t.Errorf("%s: counter delta %v (want %v), frame changed %v", tc.name, got, want, !bytes.Equal(out, tc.in))
		}
	}
}

// TestDecapCounterNames: the Go names follow enum decap_counter, and the
// map has exactly as many entries as Go knows.
func TestDecapCounterNames(t *testing.T) {
	spec, err := loadDecap()
	if err != nil {
		t.Fatal(err)
	}
	if n := spec.Maps[decapMapDecapCounters].MaxEntries; n != uint32(counterMax) {
		t.Errorf("decap_counters has %d entries, Go knows %d", n, counterMax)
	}
	if n := spec.Maps[decapMapAllowedSources].MaxEntries; n != MaxAllowedSources {
		t.Errorf("allowed_sources has %d entries, MaxAllowedSources is %d", n, MaxAllowedSources)
	}
	if n := spec.Maps[decapMapLocalAddrs].MaxEntries; n != MaxLocalAddrs {
		t.Errorf("local_addrs has %d entries, MaxLocalAddrs is %d", n, MaxLocalAddrs)
	}
	for c := range counterMax {
		if c.String() == "" || c.String() == fmt.Sprintf("counter(%d)", int(c)) {
			t.Errorf("counter %d has no name", int(c))
		}
	}
}

// TestDecapUpdateChangesVerdict: replacing the allowed set in the loaded
// program's map (configure, what SetAllowed does to an attached program)
// changes the verdict of the next packet without reloading anything.
func TestDecapUpdateChangesVerdict(t *testing.T) {
	objs := loadTestDecap(t, DefaultGUEPort)
	in4 := innerTCP4(t)
	ipip := encap(t, in4, layers.IPProtocolIPv4, 5, false)
	gue6 := gueFrame(t, false, DefaultGUEPort, gueHdr(4, 0, false), in4, false)
	newBalancer := netip.MustParseAddr("198.18.0.77")
	fromNew := readdress(ipip, newBalancer, backend)
	steps := []struct {
		name  string
		allow []netip.Prefix
		local []netip.Addr
		frame []byte
		want  Counter
	}{
		{"old balancer allowed", testAllow, testLocal, ipip, CounterIPIP},
		{"new balancer not yet allowed", testAllow, testLocal, fromNew, CounterSourceNotAllowed},
		{"new balancer allowed", []netip.Prefix{netip.PrefixFrom(newBalancer, 32), netip.PrefixFrom(balancer6, 128)}, testLocal, fromNew, CounterIPIP},
		{"old balancer removed", []netip.Prefix{netip.PrefixFrom(newBalancer, 32), netip.PrefixFrom(balancer6, 128)}, testLocal, ipip, CounterSourceNotAllowed},
		{"ipv6 balancer kept", []netip.Prefix{netip.PrefixFrom(newBalancer, 32), netip.PrefixFrom(balancer6, 128)}, testLocal, gue6, CounterGUE},
		{"ipv6 balancer removed", []netip.Prefix{netip.PrefixFrom(newBalancer, 32)}, testLocal, gue6, CounterSourceNotAllowed},
		{"any", []netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")}, testLocal, readdress(ipip, stranger, backend), CounterIPIP},
		{"backend address gone", testAllow, []netip.Addr{backend6}, ipip, CounterNotLocalDestination},
	}
	for _, s := range steps {
		if err := configure(objs.AllowedSources, objs.LocalAddrs, s.allow, s.local); err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		_, _, got := runDecap(t, objs, s.frame)
		if got != one(s.want) {
			t.Errorf("%s: counter delta %v, want %s", s.name, got, s.want)
		}
		keys, err := mapKeys(objs.AllowedSources)
		if err != nil {
			t.Fatal(err)
		}
		if len(keys) != len(s.allow) {
			t.Errorf("%s: allowed_sources holds %d keys, want %d", s.name, len(keys), len(s.allow))
		}
	}
}

// FuzzDecap: every frame passes or is dropped. A passed frame comes out
// either untouched or with exactly the outer headers (IPv4 with options or
// IPv6, then UDP and GUE with optional fields for GUE) removed from behind
// its L2 header; a dropped one is a tunnel from a stranger or to another
// host, and comes out untouched.
func FuzzDecap(f *testing.F) {
	for _, tc := range decapCases(f) {
		f.Add(tc.in)
	}
	objs := loadTestDecap(f, DefaultGUEPort)
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) < 14 {
			return // BPF_PROG_TEST_RUN refuses frames shorter than Ethernet
		}
		opts := ebpf.RunOptions{Data: in, DataOut: make([]byte, len(in)+256)}
		verdict, err := objs.XlbDecap.Run(&opts)
		if err != nil {
			t.Fatal(err)
		}
		out := opts.DataOut
		if verdict != xdpPass && verdict != xdpDrop {
			t.Fatalf("verdict %d", verdict)
		}
		if bytes.Equal(out, in) {
			return
		}
		if verdict == xdpDrop {
			t.Fatalf("dropped frame rewritten\n in % x\nout % x", in, out)
		}
		l2len := 14
		if len(out) >= 18 && (out[12] == 0x81 || out[12] == 0x88) {
			l2len = 18
		}
		cut := len(in) - len(out)
		if cut < 20 || cut > 60+8+4+124 || !bytes.Equal(out[:l2len-2], in[:l2len-2]) || !bytes.Equal(out[l2len:], in[l2len+cut:]) {
			t.Fatalf("unexpected rewrite\n in % x\nout % x", in, out)
		}
	})
}

// BenchmarkDecap measures the pass path (plain TCP) and the drop path
// (a spoofed IPIP packet: two map lookups). The decapsulation itself cannot
// be benchmarked this way: a repeated BPF_PROG_TEST_RUN keeps the frame the
// previous run left, so every run after the first would see an already
// decapsulated packet.
func BenchmarkDecap(b *testing.B) {
	objs := loadTestDecap(b, DefaultGUEPort)
	for _, bc := range []struct {
		name  string
		frame []byte
	}{
		{"plain", plain(b, inner(b, client, backend, layers.IPProtocolTCP, 80))},
		{"spoofed", readdress(encap(b, innerTCP4(b), layers.IPProtocolIPv4, 5, false), stranger, backend)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			_, per, err := objs.XlbDecap.Benchmark(bc.frame, b.N, b.ResetTimer)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
		})
	}
}
