package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/firewall"
	"github.com/xlbproject/xlb/internal/frametest"
)

// fwFrame is a TCP frame from src:sport to dst:dport; syn without ack is a
// new connection.
func fwFrame(t testing.TB, src, dst netip.Addr, sport, dport uint16, syn bool) []byte {
	t.Helper()
	tc := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), SYN: syn, ACK: !syn, Seq: 1, Window: 1024}
	var ip gopacket.NetworkLayer
	var l3 gopacket.SerializableLayer
	et := layers.EthernetTypeIPv4
	if src.Is4() {
		v := frametest.IPv4(src, dst, layers.IPProtocolTCP)
		ip, l3 = v, v
	} else {
		v := frametest.IPv6(src, dst, layers.IPProtocolTCP)
		ip, l3, et = v, v, layers.EthernetTypeIPv6
	}
	_ = tc.SetNetworkLayerForChecksum(ip)
	return frametest.Serialize(t, eth(et), l3, tc, payload)
}

var (
	fwVIP4 = NewVIPKey(vipTCP, 80, 6)
	fwVIP6 = NewVIPKey(vip6, 443, 6)
)

// fwTestEntries is what package firewall compiles for: global deny
// 198.18.66.0/24 (rule 1); vipTCP:80 allow 198.18.0.0/16 (rule 3), deny
// 198.18.1.0/24 (rule 2), allow 198.18.1.128/25 (rule 4), the implicit
// deny of its allow list (rule 0); vip6:443 deny 2001:db8:bad::/48 (rule 5)
// and global deny 2001:db8:66::/48 (rule 6).
func fwTestEntries() map[FirewallPrefix]FirewallEntry {
	p := netip.MustParsePrefix
	return map[FirewallPrefix]FirewallEntry{
		{fwVIP4, p("0.0.0.0/0")}:            {Deny: true, Rule: 0, Slot: 1},
		{fwVIP4, p("198.18.66.0/24")}:       {Deny: true, Rule: 1, Slot: 1},
		{fwVIP4, p("198.18.0.0/16")}:        {Rule: 3, Slot: 1},
		{fwVIP4, p("198.18.1.0/24")}:        {Deny: true, Rule: 2, Slot: 1},
		{fwVIP4, p("198.18.1.128/25")}:      {Rule: 4, Slot: 1},
		{fwVIP6, p("2001:db8:bad::/48")}:    {Deny: true, Rule: 5, Slot: 2},
		{fwVIP6, p("2001:db8:66::/48")}:     {Deny: true, Rule: 6, Slot: 2},
		{fwVIP6, p("2001:db8:66:1::/64")}:   {Rule: 7, Slot: 2},
		{fwVIP6, p("2001:db8:66:1:1::/80")}: {Deny: true, Rule: 8, Slot: 2},
	}
}

type fwCase struct {
	src  string
	vip  netip.Addr
	port uint16
	rule int // -1: allowed
	slot uint32
}

var fwCases = []fwCase{
	{"198.18.2.1", vipTCP, 80, -1, 1},       // in the allow list
	{"198.18.1.1", vipTCP, 80, 2, 1},        // deny inside the allowed /16
	{"198.18.1.200", vipTCP, 80, -1, 1},     // allow inside that deny
	{"198.19.0.1", vipTCP, 80, 0, 1},        // outside the allow list
	{"198.18.66.7", vipTCP, 80, 1, 1},       // global deny, more specific
	{"2001:db8:1::1", vip6, 443, -1, 2},     // no allow list: allowed
	{"2001:db8:bad::1", vip6, 443, 5, 2},    // denied
	{"2001:db8:66::1", vip6, 443, 6, 2},     // global deny
	{"2001:db8:66:1::1", vip6, 443, -1, 2},  // allow inside it
	{"2001:db8:66:1:1::9", vip6, 443, 8, 2}, // deny inside that allow
	{"2001:db8:66:2:1::9", vip6, 443, 6, 2}, // beside it: the /48
	{"198.18.1.1", vipUDP, 53, -1, 0},       // another VIP: no rules
}

// fwRun runs prog on frame and returns the verdict.
func fwRun(t testing.TB, prog *ebpf.Program, frame []byte) uint32 {
	t.Helper()
	opts := ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+256)}
	v, err := prog.Run(&opts)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return v
}

// testFirewallVerdicts checks every case against one program: allow is
// that program's verdict for an allowed frame.
func testFirewallVerdicts(t *testing.T, prog *ebpf.Program, fw *Firewall, allow uint32) {
	// Without rules the outer map's element is empty: the programs skip
	// the trie.
	installed := func() bool {
		t.Helper()
		var id ebpf.MapID
		err := fw.outer.Lookup(uint32(0), &id)
		if err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			t.Fatal(err)
		}
		return err == nil
	}
	if installed() {
		t.Fatal("a trie is installed before any rule")
	}
	if err := fw.Set(fwTestEntries()); err != nil {
		t.Fatal(err)
	}
	if !installed() {
		t.Fatal("no trie installed with rules")
	}
	for i, c := range fwCases {
		t.Run(fmt.Sprintf("%s to %v:%d", c.src, c.vip, c.port), func(t *testing.T) {
			src := netip.MustParseAddr(c.src)
			var frame []byte
			if c.vip == vipUDP {
				ip := frametest.IPv4(src, c.vip, layers.IPProtocolUDP)
				frame = frametest.Serialize(t, eth(layers.EthernetTypeIPv4), ip, l4(layers.IPProtocolUDP, 53, ip), payload)
			} else {
				frame = fwFrame(t, src, c.vip, uint16(40000+i), c.port, true)
			}
			var rules []uint32
			if c.rule >= 0 {
				rules = []uint32{uint32(c.rule)}
			}
			rb, _ := fw.RuleCounters(rules)
			vb, _ := fw.VIPCounters([]uint32{c.slot})
			v := fwRun(t, prog, frame)
			ra, _ := fw.RuleCounters(rules)
			va, _ := fw.VIPCounters([]uint32{c.slot})
			if c.rule < 0 {
				if v != allow {
					t.Fatalf("verdict %d, want %d (allowed)", v, allow)
				}
				if va[0] != vb[0] {
					t.Errorf("VIP counters moved: %+v -> %+v", vb[0], va[0])
				}
				return
			}
			if v != xdpDrop {
				t.Fatalf("verdict %d, want XDP_DROP (rule %d)", v, c.rule)
			}
			want := FirewallCounter{Packets: 1, Bytes: uint64(len(frame))}
			if d := (FirewallCounter{ra[0].Packets - rb[0].Packets, ra[0].Bytes - rb[0].Bytes}); d != want {
				t.Errorf("rule %d counter delta %+v, want %+v", c.rule, d, want)
			}
			if d := (FirewallCounter{va[0].Denied.Packets - vb[0].Denied.Packets, va[0].Denied.Bytes - vb[0].Denied.Bytes}); d != want {
				t.Errorf("VIP slot %d denied delta %+v, want %+v", c.slot, d, want)
			}
		})
	}
	// Emptied, every frame goes through.
	if err := fw.Set(nil); err != nil {
		t.Fatal(err)
	}
	if fw.Len() != 0 {
		t.Fatalf("Len %d after Set(nil)", fw.Len())
	}
	if v := fwRun(t, prog, fwFrame(t, netip.MustParseAddr("198.19.0.1"), vipTCP, 40000, 80, true)); v != allow {
		t.Errorf("no rules: verdict %d, want %d", v, allow)
	}
	if installed() {
		t.Error("a trie is still installed without rules")
	}
	// And back: the rules hold again.
	if err := fw.Set(fwTestEntries()); err != nil {
		t.Fatal(err)
	}
	if v := fwRun(t, prog, fwFrame(t, netip.MustParseAddr("198.19.0.1"), vipTCP, 40001, 80, true)); v != xdpDrop {
		t.Errorf("rules set again: verdict %d, want XDP_DROP", v)
	}
}

func TestFirewallSteer(t *testing.T) {
	s := loadTestSteer(t)
	testFirewallVerdicts(t, s.Program(), s.Firewall(), xdpPass)
}

func TestFirewallLB(t *testing.T) {
	lb := loadTestLB(t)
	testFirewallVerdicts(t, lb.Program(), lb.Firewall(), xdpTX)
}

// testSYNLimit: a source gets rate SYNs in a burst, then drops; another
// source is not affected; a non-SYN of the limited source still passes.
func testSYNLimit(t *testing.T, prog *ebpf.Program, fw *Firewall, allow uint32) {
	const rate = 5
	p := netip.MustParsePrefix
	if err := fw.Set(map[FirewallPrefix]FirewallEntry{
		{fwVIP4, p("0.0.0.0/0")}: {Rule: 0, Slot: 3, SYNRate: rate},
		{fwVIP6, p("::/0")}:      {Rule: 0, Slot: 4, SYNRate: rate},
	}); err != nil {
		t.Fatal(err)
	}
	for _, vip := range []struct {
		addr       netip.Addr
		port       uint16
		slot       uint32
		a, b, same string // two sources, and one in a's /32 or /64
	}{
		{vipTCP, 80, 3, "198.18.5.1", "198.18.5.2", "198.18.5.1"},
		{vip6, 443, 4, "2001:db8:5::1", "2001:db8:6::1", "2001:db8:5::2"},
	} {
		a, b, same := netip.MustParseAddr(vip.a), netip.MustParseAddr(vip.b), netip.MustParseAddr(vip.same)
		before, _ := fw.VIPCounters([]uint32{vip.slot})
		passed := 0
		for i := range 2 * rate {
			if fwRun(t, prog, fwFrame(t, a, vip.addr, uint16(41000+i), vip.port, true)) == allow {
				passed++
			}
		}
		// A burst well inside a second: exactly the rate (on a loaded
		// machine a little more may have refilled).
		if passed < rate || passed > rate+1 {
			t.Errorf("%v: %d of %d SYNs passed, want %d", a, passed, 2*rate, rate)
		}
		if v := fwRun(t, prog, fwFrame(t, same, vip.addr, 42000, vip.port, true)); v != xdpDrop {
			t.Errorf("%v (same bucket as %v): verdict %d, want XDP_DROP", same, a, v)
		}
		if v := fwRun(t, prog, fwFrame(t, a, vip.addr, 41000, vip.port, false)); v != allow {
			t.Errorf("%v: ACK verdict %d, want %d (established flows are never limited)", a, v, allow)
		}
		if v := fwRun(t, prog, fwFrame(t, b, vip.addr, 41000, vip.port, true)); v != allow {
			t.Errorf("%v: SYN verdict %d, want %d (another source)", b, v, allow)
		}
		after, _ := fw.VIPCounters([]uint32{vip.slot})
		if d := after[0].SYNLimited.Packets - before[0].SYNLimited.Packets; d != uint64(2*rate-passed+1) {
			t.Errorf("%v: syn_limited delta %d, want %d", a, d, 2*rate-passed+1)
		}
	}
}

func TestFirewallSYNLimitSteer(t *testing.T) {
	s := loadTestSteer(t)
	testSYNLimit(t, s.Program(), s.Firewall(), xdpPass)
}

func TestFirewallSYNLimitLB(t *testing.T) {
	lb := loadTestLB(t)
	testSYNLimit(t, lb.Program(), lb.Firewall(), xdpTX)
}

func TestFirewallSetErrors(t *testing.T) {
	s := loadTestSteer(t)
	fw := s.Firewall()
	if err := fw.Set(fwTestEntries()); err != nil {
		t.Fatal(err)
	}
	p := netip.MustParsePrefix
	for name, bad := range map[string]map[FirewallPrefix]FirewallEntry{
		"family":    {{fwVIP4, p("2001:db8::/32")}: {Deny: true}},
		"rule":      {{fwVIP4, p("198.18.0.0/16")}: {Rule: FirewallMaxRules}},
		"slot":      {{fwVIP4, p("198.18.0.0/16")}: {Slot: FirewallMaxVIPs}},
		"no prefix": {{fwVIP4, netip.Prefix{}}: {}},
	} {
		if err := fw.Set(bad); err == nil {
			t.Errorf("%s: Set accepted %v", name, bad)
		}
	}
	if got, want := fw.Len(), len(fwTestEntries()); got != want {
		t.Errorf("after refused Sets: %d entries, want %d", got, want)
	}
	if v := fwRun(t, s.Program(), fwFrame(t, netip.MustParseAddr("198.18.1.1"), vipTCP, 40000, 80, true)); v != xdpDrop {
		t.Errorf("after refused Sets: denied source verdict %d, want XDP_DROP", v)
	}
}

// fwBenchEntries: an allow list 198.18.0.0/16 for vipTCP:80 (with its
// implicit deny) and n-2 denied prefixes in 198.19.0.0/16: /32s, then /31s,
// then /30s.
func fwBenchEntries(n int) map[FirewallPrefix]FirewallEntry {
	p := netip.MustParsePrefix
	out := map[FirewallPrefix]FirewallEntry{
		{fwVIP4, p("0.0.0.0/0")}:     {Deny: true, Slot: 1},
		{fwVIP4, p("198.18.0.0/16")}: {Rule: 1, Slot: 1},
	}
	for i := 0; len(out) < n; i++ {
		bits, j := 32, i
		for j >= 1<<(bits-16) {
			j -= 1 << (bits - 16)
			bits--
		}
		a := netip.AddrFrom4([4]byte{198, 19, byte(j >> (bits - 24)), byte(j << (32 - bits))})
		out[FirewallPrefix{fwVIP4, netip.PrefixFrom(a, bits)}] = FirewallEntry{Deny: true, Rule: uint32(2 + i%(FirewallMaxRules-2)), Slot: 1}
	}
	return out
}

// BenchmarkFirewall is the per-packet cost of the firewall on allowed
// traffic (an established TCP frame from 198.18.1.1 to vipTCP:80) with 0,
// 10, 1,000 and 100,000 entries, in the steer program (no socket: the
// verdict is XDP_PASS after the lookup) and the lb program (a forwarded
// frame through xlb_lb_bench), and of a denied frame (the lookup and the
// drop), beside the XDP drop ceiling (a program that only drops).
func BenchmarkFirewall(b *testing.B) {
	s := loadTestSteer(b)
	lb := loadTestLB(b)
	bench := loadLBBench(b, lb)
	// The XDP drop ceiling: a program that only returns XDP_DROP.
	ceiling, err := ebpf.NewProgram(&ebpf.ProgramSpec{Type: ebpf.XDP, License: "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, xdpDrop), asm.Return()}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { ceiling.Close() })
	b.Run("xdp-drop-ceiling", func(b *testing.B) {
		_, per, err := ceiling.Benchmark(fwFrame(b, client, vipTCP, 43000, 80, false), b.N, b.ResetTimer)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
	})
	steerFrame := fwFrame(b, client, vipTCP, 43000, 80, false)
	lbFrame := tcpFrame(b, vipTCP, 43000, 80, "A", 0, false, 64)
	for _, n := range []int{0, 10, 1000, 100000} {
		entries := map[FirewallPrefix]FirewallEntry{}
		if n > 0 {
			entries = fwBenchEntries(n)
		}
		for _, prog := range []struct {
			name  string
			fw    *Firewall
			run   *ebpf.Program
			frame []byte
			want  uint32
		}{
			{"steer", s.Firewall(), s.Program(), steerFrame, xdpPass},
			{"lb", lb.Firewall(), bench, lbFrame, xdpTX},
		} {
			b.Run(fmt.Sprintf("%s-rules-%d", prog.name, n), func(b *testing.B) {
				if err := prog.fw.Set(entries); err != nil {
					b.Fatal(err)
				}
				verdict, per, err := prog.run.Benchmark(prog.frame, b.N, b.ResetTimer)
				if err != nil {
					b.Fatal(err)
				}
				if verdict != prog.want {
					b.Fatalf("verdict %d, want %d", verdict, prog.want)
				}
				b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
			})
			if n == 0 {
				continue
			}
			// A denied source (198.19.0.1/32, one of the entries): the
			// lookup and an XDP_DROP.
			b.Run(fmt.Sprintf("%s-rules-%d-denied", prog.name, n), func(b *testing.B) {
				frame := fwFrame(b, netip.MustParseAddr("198.19.0.1"), vipTCP, 43000, 80, false)
				verdict, per, err := prog.run.Benchmark(frame, b.N, b.ResetTimer)
				if err != nil {
					b.Fatal(err)
				}
				if verdict != xdpDrop {
					b.Fatalf("verdict %d, want XDP_DROP", verdict)
				}
				b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
			})
		}
	}
}

// TestFirewallCapacities: package firewall checks rule sets against the
// capacities of the maps loaded here.
func TestFirewallCapacities(t *testing.T) {
	s := loadTestSteer(t)
	for _, c := range []struct {
		name      string
		m         *ebpf.Map
		pkg, here int
	}{
		{"entries", s.objs.FwTrieA, firewall.MaxEntries, FirewallMaxEntries},
		{"rules", s.objs.FwRuleStats, firewall.MaxRules, FirewallMaxRules},
		{"VIPs", s.objs.FwVipStats, firewall.MaxVIPs, FirewallMaxVIPs},
		{"SYN buckets", s.objs.FwSyn, FirewallSYNBuckets, FirewallSYNBuckets},
	} {
		if got := int(c.m.MaxEntries()); got != c.pkg || got != c.here {
			t.Errorf("%s: map holds %d, package firewall says %d, package bpf %d", c.name, got, c.pkg, c.here)
		}
	}
}
