package decap

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/internal/testenv"
)

func loadTestDecap(t testing.TB) *decapObjects {
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
	return &objs
}

type decapCase struct {
	name string
	in   []byte
	out  []byte // nil: the frame must come out untouched
	want Counters
	gue  bool // a whole GUE frame (passed untouched when GUE is disabled)
}

func subDecap(a, b Counters) Counters {
	return Counters{a.Decapsulated - b.Decapsulated, a.IPIP - b.IPIP, a.IP6in4 - b.IP6in4,
		a.IP4in6 - b.IP4in6, a.IP6in6 - b.IP6in6, a.GUE - b.GUE, a.Passed - b.Passed, a.Malformed - b.Malformed}
}

func decapCases(t testing.TB) []decapCase {
	in4, in6 := innerTCP4(t), innerTCP6(t)
	out4 := func(vlan bool) []byte { return l2(t, vlan, layers.EthernetTypeIPv4, gopacket.Payload(in4)) }
	out6 := func(vlan bool) []byte { return l2(t, vlan, layers.EthernetTypeIPv6, gopacket.Payload(in6)) }
	ipip := encap(t, in4, layers.IPProtocolIPv4, 5, false)
	var (
		ipipN   = Counters{Decapsulated: 1, IPIP: 1}
		sixIn4  = Counters{Decapsulated: 1, IP6in4: 1}
		fourIn6 = Counters{Decapsulated: 1, IP4in6: 1}
		sixIn6  = Counters{Decapsulated: 1, IP6in6: 1}
		gue     = Counters{Decapsulated: 1, GUE: 1}
		passed  = Counters{Passed: 1}
		bad     = Counters{Malformed: 1}
	)
	const port = DefaultGUEPort
	v4, v6 := byte(layers.IPProtocolIPv4), byte(layers.IPProtocolIPv6)
	fragment := encap(t, in4, layers.IPProtocolIPv4, 5, false)
	fragment[14+6] |= 0x20 // MF
	gueFragment := gueFrame(t, true, port, gueHdr(v4, 0, false), in4, false)
	gueFragment[14+6] |= 0x20
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
		{"udp to another port", gueFrame(t, true, port+1, gueHdr(v4, 0, false), in4, false), nil, passed, false},
		{"udp to another port over ipv6", gueFrame(t, false, port-1, gueHdr(v4, 0, false), in4, false), nil, passed, false},
		{"plain tcp", plain(t, inner(t, client, backend, layers.IPProtocolTCP, 80)), nil, passed, false},
		{"plain ipv6", plain(t, innerTCP6(t)), nil, passed, false},
		{"plain udp", plain(t, inner(t, client, backend, layers.IPProtocolUDP, 53)), nil, passed, false},
		{"arp", arp(t), nil, passed, false},
		{"ipip fragment", fragment, nil, passed, false},
		{"6in6 behind hop-by-hop", encap6(t, in6, layers.IPProtocolIPv6, false, layers.IPProtocolIPv6HopByHop), nil, passed, false},
		{"6in6 fragment", encap6(t, in6, layers.IPProtocolIPv6, false, layers.IPProtocolIPv6Fragment), nil, passed, false},
		{"ipip outer ihl 4", withIHL(ipip, 14, 4), nil, bad, false},
		{"ipip no inner", ipip[:34], nil, bad, false},
		{"ipip inner version mismatch", encap(t, in6, layers.IPProtocolIPv4, 5, false), nil, bad, false},
		{"6in4 inner version mismatch", encap(t, in4, layers.IPProtocolIPv6, 5, false), nil, bad, false},
		{"4in6 inner version mismatch", encap6(t, in6, layers.IPProtocolIPv4, false), nil, bad, false},
		{"6in6 inner version mismatch", encap6(t, in4, layers.IPProtocolIPv6, false), nil, bad, false},
		{"ipip vlan truncated tag", encap(t, in4, layers.IPProtocolIPv4, 5, true)[:16], nil, bad, false},
		{"ipip ihl 15 truncated options", encap(t, in4, layers.IPProtocolIPv4, 15, false)[:60], nil, bad, false},
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
	return verdict, opts.DataOut, subDecap(after, before)
}

func setGUEPort(t testing.TB, objs *decapObjects, port uint16) {
	t.Helper()
	if err := objs.GuePort.Update(uint32(0), uint32(port), ebpf.UpdateAny); err != nil {
		t.Fatal(err)
	}
}

func TestDecapFrames(t *testing.T) {
	objs := loadTestDecap(t)
	setGUEPort(t, objs, DefaultGUEPort)
	for _, tc := range decapCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			verdict, out, got := runDecap(t, objs, tc.in)
			if verdict != xdpPass {
				t.Errorf("verdict %d, want XDP_PASS", verdict)
			}
			want := tc.out
			if want == nil {
				want = tc.in
			}
			if !bytes.Equal(out, want) {
				t.Errorf("output frame\n got % x\nwant % x", out, want)
			}
			if got != tc.want {
				t.Errorf("counter delta %+v, want %+v", got, tc.want)
			}
		})
	}
}

// TestDecapGUEDisabled: with GUE port 0 (the map's value until the loader
// sets it) every GUE frame is passed untouched, and IP-in-IP still works.
func TestDecapGUEDisabled(t *testing.T) {
	objs := loadTestDecap(t)
	for _, tc := range decapCases(t) {
		if !tc.gue && tc.name != "ipip" {
			continue
		}
		want := Counters{Passed: 1}
		if !tc.gue {
			want = tc.want
		}
		_, out, got := runDecap(t, objs, tc.in)
		if got != want || (tc.gue && !bytes.Equal(out, tc.in)) {
			t.Errorf("%s: counter delta %+v (want %+v), frame changed %v", tc.name, got, want, !bytes.Equal(out, tc.in))
		}
	}
}

// FuzzDecap: every frame passes, and comes out either untouched or with
// exactly the outer headers (IPv4 with options or IPv6, then UDP and GUE
// with optional fields for GUE) removed from behind its L2 header.
func FuzzDecap(f *testing.F) {
	for _, tc := range decapCases(f) {
		f.Add(tc.in)
	}
	objs := loadTestDecap(f)
	setGUEPort(f, objs, DefaultGUEPort)
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
		if verdict != xdpPass {
			t.Fatalf("verdict %d", verdict)
		}
		if bytes.Equal(out, in) {
			return
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

// BenchmarkDecapPass measures the pass path (plain TCP). The decapsulation
// itself cannot be benchmarked this way: a repeated BPF_PROG_TEST_RUN keeps
// the frame the previous run left, so every run after the first would see an
// already decapsulated packet.
func BenchmarkDecapPass(b *testing.B) {
	objs := loadTestDecap(b)
	frame := plain(b, inner(b, client, backend, layers.IPProtocolTCP, 80))
	_, per, err := objs.XlbDecap.Benchmark(frame, b.N, b.ResetTimer)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
}

// testOptions are the options the attach tests use.
var testOptions = Options{GUEPort: DefaultGUEPort}
