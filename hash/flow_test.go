package hash

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/xlbproject/xlb/hash/hashtest"
)

// le4 is an IPv4 address as a BPF program on a little-endian machine loads
// it from the packet: *(__u32 *)&iph->saddr.
func le4(s string) uint32 {
	a := netip.MustParseAddr(s).As4()
	return binary.LittleEndian.Uint32(a[:])
}

// lePorts is the first four bytes of a TCP or UDP header (source port then
// destination port, network order) loaded as a little-endian word.
func lePorts(sport, dport uint16) uint32 {
	var b [4]byte
	binary.BigEndian.PutUint16(b[0:], sport)
	binary.BigEndian.PutUint16(b[2:], dport)
	return binary.LittleEndian.Uint32(b[:])
}

func TestFlow4Golden(t *testing.T) {
	for _, g := range hashtest.Flow4 {
		got := Flow4(le4(g.Src), le4(g.Dst), lePorts(g.Sport, g.Dport), g.Proto)
		if got != g.Want {
			t.Errorf("Flow4(%s:%d -> %s:%d proto %d) = %#08x, want %#08x",
				g.Src, g.Sport, g.Dst, g.Dport, g.Proto, got, g.Want)
		}
	}
}

func TestFlow6Golden(t *testing.T) {
	for _, g := range hashtest.Flow6 {
		s, d := netip.MustParseAddr(g.Src).As16(), netip.MustParseAddr(g.Dst).As16()
		got := Flow6(&s, &d, lePorts(g.Sport, g.Dport), g.Proto)
		if got != g.Want {
			t.Errorf("Flow6([%s]:%d -> [%s]:%d proto %d) = %#08x, want %#08x",
				g.Src, g.Sport, g.Dst, g.Dport, g.Proto, got, g.Want)
		}
	}
}

// FlowOf hashes addresses and ports as Flow4 and Flow6 hash the packet
// bytes: the golden vectors again, from netip values.
func TestFlowOfGolden(t *testing.T) {
	ap := func(a string, p uint16) netip.AddrPort { return netip.AddrPortFrom(netip.MustParseAddr(a), p) }
	for _, g := range append(hashtest.Flow4, hashtest.Flow6...) {
		if got, ok := FlowOf(g.Proto, ap(g.Src, g.Sport), ap(g.Dst, g.Dport)); !ok || got != g.Want {
			t.Errorf("FlowOf(%s:%d -> %s:%d proto %d) = %#08x, %v; want %#08x", g.Src, g.Sport, g.Dst, g.Dport, g.Proto, got, ok, g.Want)
		}
	}
	g := hashtest.Flow4[0]
	mapped := netip.AddrPortFrom(netip.AddrFrom16(netip.MustParseAddr(g.Src).As16()), g.Sport)
	if got, ok := FlowOf(g.Proto, mapped, ap(g.Dst, g.Dport)); !ok || got != g.Want {
		t.Errorf("FlowOf with an IPv4-mapped source = %#08x, %v; want %#08x", got, ok, g.Want)
	}
	if _, ok := FlowOf(6, ap("198.18.0.1", 1), ap("2001:db8::1", 2)); ok {
		t.Error("FlowOf hashed a mixed-family flow")
	}
}

// TestFlowDirection documents that the flow hash is not symmetric: the
// reply direction of a flow generally hashes elsewhere (see the golden rows
// with swapped addresses and ports).
func TestFlowDirection(t *testing.T) {
	if hashtest.Flow4[0].Want == hashtest.Flow4[1].Want || hashtest.Flow6[0].Want == hashtest.Flow6[1].Want {
		t.Fatal("swapped 5-tuples hash alike; the golden rows were meant to show they do not")
	}
}

// Package-level sinks keep the compiler from dropping the measured work.
var (
	sinkHash  uint32
	sinkIndex int32
)

func TestFlowAllocs(t *testing.T) {
	s := netip.MustParseAddr("2001:db8::1").As16()
	d := netip.MustParseAddr("2001:db8:ffff::10").As16()
	tests := []struct {
		name string
		f    func()
	}{
		{"Flow4", func() { sinkHash = Flow4(0x011212c6, 0x0a0013c6, 0x5000409c, 6) }},
		{"Flow6", func() { sinkHash = Flow6(&s, &d, 0x5000409c, 6) }},
	}
	for _, tt := range tests {
		if n := testing.AllocsPerRun(1000, tt.f); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", tt.name, n)
		}
	}
}

func BenchmarkFlow4(b *testing.B) {
	saddr, daddr, ports := le4("198.18.0.1"), le4("198.19.0.10"), lePorts(40000, 80)
	var h uint32
	for i := 0; b.Loop(); i++ {
		h += Flow4(saddr+uint32(i), daddr, ports, 6)
	}
	sinkHash = h
}

func BenchmarkFlow6(b *testing.B) {
	s := netip.MustParseAddr("2001:db8::1").As16()
	d := netip.MustParseAddr("2001:db8:ffff::10").As16()
	ports := lePorts(40000, 80)
	var h uint32
	for i := 0; b.Loop(); i++ {
		s[15] = byte(i)
		h += Flow6(&s, &d, ports, 6)
	}
	sinkHash = h
}
