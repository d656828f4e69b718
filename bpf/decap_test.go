package bpf

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

var (
	balancer = netip.MustParseAddr("198.18.0.1")
	backend  = netip.MustParseAddr("198.18.0.50")
)

func loadTestDecap(t testing.TB) *decapObjects {
	t.Helper()
	requireRoot(t)
	if err := memlockOnce(); err != nil {
		t.Fatal(err)
	}
	var objs decapObjects
	if err := loadDecapObjects(&objs, nil); err != nil {
		t.Fatalf("load decap: %v", err)
	}
	t.Cleanup(func() { objs.Close() })
	return &objs
}

// innerTCP4 is the client's packet as the backend must see it (from the IP
// header on).
func innerTCP4(t testing.TB) []byte {
	ip := ipv4(client, vipTCP, layers.IPProtocolTCP)
	return serialize(t, ip, l4(layers.IPProtocolTCP, 80, ip), payload)
}

func innerTCP6(t testing.TB) []byte {
	ip := ipv6(client6, vip6, layers.IPProtocolTCP)
	return serialize(t, ip, l4(layers.IPProtocolTCP, 443, ip), payload)
}

// encap prepends an outer IPv4 header (balancer -> backend) of ihl words
// carrying proto, and an Ethernet header with an optional VLAN tag.
func encap(t testing.TB, inner []byte, proto layers.IPProtocol, ihl int, vlan bool) []byte {
	outer := ipv4(balancer, backend, proto)
	for range 4 * (ihl - 5) {
		outer.Options = append(outer.Options, layers.IPv4Option{OptionType: 1, OptionLength: 1})
	}
	return l2(t, vlan, layers.EthernetTypeIPv4, outer, gopacket.Payload(inner))
}

// l2 prepends an Ethernet header (and VLAN tag) with ethertype to ls.
func l2(t testing.TB, vlan bool, ethertype layers.EthernetType, ls ...gopacket.SerializableLayer) []byte {
	if vlan {
		return serialize(t, append([]gopacket.SerializableLayer{eth(layers.EthernetTypeDot1Q),
			&layers.Dot1Q{Priority: 3, VLANIdentifier: 100, Type: ethertype}}, ls...)...)
	}
	return serialize(t, append([]gopacket.SerializableLayer{eth(ethertype)}, ls...)...)
}

type decapCase struct {
	name string
	in   []byte
	out  []byte // nil: the frame must come out untouched
	want DecapCounters
}

func decapCases(t testing.TB) []decapCase {
	in4, in6 := innerTCP4(t), innerTCP6(t)
	ipip := encap(t, in4, layers.IPProtocolIPv4, 5, false)
	decapped := DecapCounters{Decapsulated: 1}
	passed := DecapCounters{Passed: 1}
	malformed := DecapCounters{Malformed: 1}
	fragment := encap(t, in4, layers.IPProtocolIPv4, 5, false)
	fragment[14+6] |= 0x20 // MF
	cases := []decapCase{
		{"ipip", ipip, l2(t, false, layers.EthernetTypeIPv4, gopacket.Payload(in4)), decapped},
		{"ipip outer ihl 7", encap(t, in4, layers.IPProtocolIPv4, 7, false), l2(t, false, layers.EthernetTypeIPv4, gopacket.Payload(in4)), decapped},
		{"ipip outer ihl 15", encap(t, in4, layers.IPProtocolIPv4, 15, false), l2(t, false, layers.EthernetTypeIPv4, gopacket.Payload(in4)), decapped},
		{"ipip vlan", encap(t, in4, layers.IPProtocolIPv4, 5, true), l2(t, true, layers.EthernetTypeIPv4, gopacket.Payload(in4)), decapped},
		{"6in4", encap(t, in6, layers.IPProtocolIPv6, 5, false), l2(t, false, layers.EthernetTypeIPv6, gopacket.Payload(in6)), decapped},
		{"6in4 vlan", encap(t, in6, layers.IPProtocolIPv6, 5, true), l2(t, true, layers.EthernetTypeIPv6, gopacket.Payload(in6)), decapped},
		{"plain tcp", frame4(t, backend, layers.IPProtocolTCP, 80), nil, passed},
		{"plain ipv6", frame6(t, vip6, layers.IPProtocolTCP, 443), nil, passed},
		{"arp", arp(t), nil, passed},
		{"ipip fragment", fragment, nil, passed},
		{"ipip outer ihl 4", withIHL(ipip, 14, 4), nil, malformed},
		{"ipip no inner", ipip[:34], nil, malformed},
		{"ipip inner version mismatch", encap(t, in6, layers.IPProtocolIPv4, 5, false), nil, malformed},
		{"6in4 inner version mismatch", encap(t, in4, layers.IPProtocolIPv6, 5, false), nil, malformed},
		{"ipip vlan truncated tag", encap(t, in4, layers.IPProtocolIPv4, 5, true)[:16], nil, malformed},
		{"ipip ihl 15 truncated options", encap(t, in4, layers.IPProtocolIPv4, 15, false)[:60], nil, malformed},
	}
	for n := 14; n < 34; n++ {
		cases = append(cases, decapCase{"ipip outer cut", ipip[:n], nil, malformed})
	}
	return cases
}

func TestDecapFrames(t *testing.T) {
	objs := loadTestDecap(t)
	for _, tc := range decapCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			before, err := readDecapCounters(objs.DecapCounters)
			if err != nil {
				t.Fatal(err)
			}
			opts := ebpf.RunOptions{Data: tc.in, DataOut: make([]byte, len(tc.in)+256)}
			verdict, err := objs.XlbDecap.Run(&opts)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if verdict != xdpPass {
				t.Errorf("verdict %d, want XDP_PASS", verdict)
			}
			want := tc.out
			if want == nil {
				want = tc.in
			}
			if !bytes.Equal(opts.DataOut, want) {
				t.Errorf("output frame\n got % x\nwant % x", opts.DataOut, want)
			}
			after, err := readDecapCounters(objs.DecapCounters)
			if err != nil {
				t.Fatal(err)
			}
			got := DecapCounters{after.Decapsulated - before.Decapsulated, after.Passed - before.Passed, after.Malformed - before.Malformed}
			if got != tc.want {
				t.Errorf("counter delta %+v, want %+v", got, tc.want)
			}
		})
	}
}

// FuzzDecap: every frame passes, and comes out either untouched or with
// exactly the outer IPv4 header removed from behind its L2 header.
func FuzzDecap(f *testing.F) {
	for _, tc := range decapCases(f) {
		f.Add(tc.in)
	}
	objs := loadTestDecap(f)
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
		if cut < 20 || cut > 60 || !bytes.Equal(out[:l2len-2], in[:l2len-2]) || !bytes.Equal(out[l2len:], in[l2len+cut:]) {
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
	frame := frame4(b, backend, layers.IPProtocolTCP, 80)
	_, per, err := objs.XlbDecap.Benchmark(frame, b.N, b.ResetTimer)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
}
