package perf

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/firewall"
)

// TestFirewallRules checks the rule sets the xlb datapaths run with: the
// config xlbConfig writes parses, each VIP gets exactly the entries asked
// for, and the generator's sources are denied in the drop scenario and
// allowed otherwise, by the most specific entry.
func TestFirewallRules(t *testing.T) {
	pl := configLab()
	for _, tc := range []struct {
		n int
		s Scenario
	}{
		{0, ScenarioForward}, {1, ScenarioForward}, {2, ScenarioForward}, {3, ScenarioForward},
		{10, ScenarioForward}, {1000, ScenarioForward}, {maxRules, ScenarioForward},
		{1, ScenarioDrop}, {2, ScenarioDrop}, {3, ScenarioDrop}, {10, ScenarioDrop}, {1000, ScenarioDrop},
	} {
		t.Run(fmt.Sprintf("%s-%d", tc.s, tc.n), func(t *testing.T) {
			o, err := Options{Scenario: tc.s, Datapaths: []string{"xlb-native"}}.withDefaults()
			if err != nil {
				t.Fatal(err)
			}
			text := xlbConfig(pl, o, tc.n, "/run/xlb-test.sock", config.ModeNative)
			c, err := config.Parse("perf.toml", []byte(text))
			if err != nil {
				t.Fatal(err)
			}
			compiled, err := firewall.Compile(c.FirewallPolicies(), c.FirewallRules(), firewall.NewIndex())
			if err != nil {
				t.Fatal(err)
			}
			perVIP := map[firewall.VIP]int{}
			for k := range compiled {
				perVIP[k.VIP]++
			}
			if tc.n > 0 && len(perVIP) != 2 {
				t.Fatalf("entries for %d VIPs, want the lab's 2", len(perVIP))
			}
			for v, got := range perVIP {
				if got != tc.n {
					t.Errorf("%s: %d entries, want %d", v, got, tc.n)
				}
			}
			for v := range perVIP {
				for _, src := range []netip.Addr{flowSource, netip.MustParseAddr("198.18.1.63")} {
					if got, want := denied(compiled, v, src), tc.s == ScenarioDrop; got != want {
						t.Errorf("%s from %s: denied %t, want %t", v, src, got, want)
					}
				}
			}
		})
	}
}

// denied is the verdict of the longest matching entry of v for src, by
// brute force; no entry allows.
func denied(c firewall.Compiled, v firewall.VIP, src netip.Addr) bool {
	best, deny := -1, false
	for k, e := range c {
		if k.VIP == v && k.Prefix.Contains(src) && k.Prefix.Bits() > best {
			best, deny = k.Prefix.Bits(), e.Deny
		}
	}
	return deny
}

func TestPadPrefix(t *testing.T) {
	for _, tc := range []struct {
		i    int
		want string
	}{
		{0, "198.19.0.0/32"},
		{1, "198.19.0.1/32"},
		{65535, "198.19.255.255/32"},
		{65536, "198.19.0.0/31"},
		{65537, "198.19.0.2/31"},
		{65536 + 32768, "198.19.0.0/30"},
	} {
		if got := padPrefix(tc.i); got.String() != tc.want {
			t.Errorf("padPrefix(%d) = %s, want %s", tc.i, got, tc.want)
		}
	}
	seen := map[netip.Prefix]bool{}
	for i := range maxRules - 2 {
		p := padPrefix(i)
		if p != p.Masked() || seen[p] || p.Contains(flowSource) {
			t.Fatalf("padPrefix(%d) = %s: host bits, repeated, or holding the traffic's sources", i, p)
		}
		seen[p] = true
	}
}

func TestNFTCounter(t *testing.T) {
	out := []byte(`{"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"counter": {"family": "netdev", "name": "drops", "table": "xlbperf", "handle": 1, "packets": 1234567, "bytes": 74074020}}]}`)
	if n, err := nftCounter(out); err != nil || n != 1234567 {
		t.Errorf("nftCounter = %d, %v; want 1234567", n, err)
	}
	for _, bad := range []string{``, `{"nftables": [{"metainfo": {}}]}`, `not json`} {
		if _, err := nftCounter([]byte(bad)); err == nil {
			t.Errorf("nftCounter(%q): no error", bad)
		}
	}
}

// TestMarkdownFirewall checks the two tables the firewall runs add: the
// drop table against the XDP drop ceiling, and the forward table with the
// firewall's size and the ratio to the same datapath without one.
func TestMarkdownFirewall(t *testing.T) {
	rec := func(name, kind string, rules int, mpps float64) Record {
		return Record{Datapath: name, Kind: kind, Traffic: UDP, FrameSize: 64, Rules: rules,
			PPS: Summary{Min: mpps * 1e6, Median: mpps * 1e6, Max: mpps * 1e6}, Runs: []Run{{Seconds: 1, Sent: 4e6, LBReceived: 3e6}}}
	}
	drop := Report{Setup: ReportSetup{Scenario: ScenarioDrop}, Records: []Record{
		rec("xlb-native", KindXLB, 1, 4), rec("nft-ingress", KindBaseline, 0, 2), rec("xdp-drop", KindCeiling, 0, 5),
	}}
	var b strings.Builder
	if err := drop.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| Mpps dropped | vs xdp-drop | ns/frame over xdp-drop |",
		"| xlb-native | xlb | udp | 64 | 1 | 4.000 (4.000-4.000) | 0.80 | 50 |",
		"| nft-ingress | baseline | udp | 64 | 1 rule (nft) | 2.000 (2.000-2.000) | 0.40 | 300 |",
		"| xdp-drop | ceiling | udp | 64 | – | 5.000 (5.000-5.000) | 1.00 | 0 |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("drop table lacks %q:\n%s", want, b.String())
		}
	}
	fwd := Report{Records: []Record{rec("xlb-native", KindXLB, 0, 4), rec("xlb-native", KindXLB, 1000, 3), rec("xdp-tx", KindCeiling, 0, 5)}}
	b.Reset()
	if err := fwd.WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| firewall entries | Mpps delivered | vs no firewall |",
		"| xlb-native | xlb | udp | 64 | 1000 | 3.000 (3.000-3.000) | 0.75 | 0.60 xdp-tx |",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("forward table lacks %q:\n%s", want, b.String())
		}
	}
}
