package config

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/firewall"
)

func TestFirewallErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src, want string
	}{
		{"bad prefix", edit("port", "port = 80\ndeny = [\"198.18.0.0/33\"]"), "x.toml:7: vip[0].deny[0]: prefix \"198.18.0.0/33\""},
		{"host bits", edit("port", "port = 80\nallow = [\"198.18.1.0/16\"]"), "x.toml:7: vip[0].allow[0]: prefix \"198.18.1.0/16\" has host bits set (the prefix is 198.18.0.0/16)"},
		{"duplicate", edit("port", "port = 80\nallow = [\"198.18.0.0/16\"]\ndeny = [\n  \"198.18.1.0/24\",\n  \"198.18.0.0/16\",\n]"),
			"x.toml:10: vip[0].deny[1]: 198.18.0.0/16 is already in vip[0].allow[0]: one rule per prefix"},
		{"family", edit("port", "port = 80\ndeny = [\"2001:db8::/32\"]"), "x.toml:7: vip[0].deny[0]: 2001:db8::/32 is not of the VIP's address family (IPv4)"},
		{"syn on udp", edit("port", "port = 80\nprotocol = \"udp\"\nsyn_rate_limit = 5"), "x.toml:8: vip[0].syn_rate_limit: a SYN rate limit needs protocol = \"tcp\""},
		{"syn range", edit("port", "port = 80\nsyn_rate_limit = 2000000"), "x.toml:7: vip[0].syn_rate_limit: SYN rate limit out of range"},
		{"global duplicate", minimal + "[firewall]\ndeny = [\"198.18.0.0/16\", \"198.18.0.0/16\"]\n", "x.toml:11: firewall.deny[1]: 198.18.0.0/16 is already in firewall.deny[0]"},
		{"global type", minimal + "[firewall]\ndeny = \"198.18.0.0/16\"\n", "x.toml:11: firewall.deny: expected an array of prefixes, got string"},
		{"global unknown key", minimal + "[firewall]\nallow = []\n", "x.toml:11: firewall.allow: unknown key"},
		{"splice", strings.Replace(spliceFile, "port = 443\n", "port = 443\ndeny = [\"198.18.66.0/24\"]\n", 1), "x.toml:7: vip[0].deny: the firewall runs in XDP, which a splice VIP's traffic does not pass through"},
	} {
		_, err := Parse("x.toml", []byte(tc.src))
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: error\n got %v\nwant %s...", tc.name, err, tc.want)
		}
	}
}

func TestFirewallRules(t *testing.T) {
	src := edit("port", "port = 80\nallow = [\"198.18.0.0/16\"]\ndeny = [\"198.18.1.0/24\"]\nsyn_rate_limit = 100") +
		"[firewall]\ndeny = [\"198.18.66.0/24\", \"2001:db8:bad::/48\"]\n"
	c, err := Parse("x.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	v := firewall.VIP{Addr: netip.MustParseAddr("198.18.100.1"), Port: 80, Proto: firewall.TCP}
	p := netip.MustParsePrefix
	want := []firewall.Rule{
		{Prefix: p("198.18.66.0/24"), Action: firewall.Deny, Origin: firewall.File},
		{Prefix: p("2001:db8:bad::/48"), Action: firewall.Deny, Origin: firewall.File},
		{VIP: v, Prefix: p("198.18.0.0/16"), Action: firewall.Allow, Origin: firewall.File},
		{VIP: v, Prefix: p("198.18.1.0/24"), Action: firewall.Deny, Origin: firewall.File},
	}
	got := c.FirewallRules()
	if len(got) != len(want) {
		t.Fatalf("rules %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("rule %d: %v, want %v", i, got[i], want[i])
		}
	}
	if pol := c.FirewallPolicies(); len(pol) != 1 || pol[0] != (firewall.Policy{VIP: v, SYNRate: 100}) {
		t.Errorf("policies %v", pol)
	}
	// A splice VIP has no firewall: its traffic never meets XDP's.
	c, err = Parse("x.toml", []byte(spliceFile))
	if err != nil {
		t.Fatal(err)
	}
	if pol := c.FirewallPolicies(); len(pol) != 0 {
		t.Errorf("splice VIP policies %v", pol)
	}
}
