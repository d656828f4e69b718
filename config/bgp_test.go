package config

import (
	"slices"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/bgp"
)

// withBGP is minimal with a [bgp] table of one peer before its VIP:
// line 4 is [bgp], 5 asn, 6 router_id, then extra, [[bgp.peer]], address, asn.
func withBGP(extra string) string {
	return strings.Replace(minimal, "\n[[vip]]", `
[bgp]
asn = 65001
router_id = "198.18.0.2"`+extra+`
[[bgp.peer]]
address = "198.18.0.1"
asn = 65000

[[vip]]`, 1)
}

func TestBGPDefaults(t *testing.T) {
	c, err := Parse("f.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if c.BGP.Enabled() || c.VIPs[0].BGP.Communities != nil || c.VIPs[0].BGP.MED != 0 {
		t.Errorf("no [bgp]: %+v, vip %+v", c.BGP, c.VIPs[0].BGP)
	}
	c, err = Parse("f.toml", []byte(withBGP("\ncommunities = [\"65001:1\"]\nmed = 3")+"[vip.bgp]\nmed = 4\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.BGP.Enabled() || c.BGP.Drain != DefaultBGPDrain || len(c.BGP.Speaker.Peers) != 1 {
		t.Errorf("bgp = %+v", c.BGP)
	}
	// [vip.bgp] sets med only: communities come from [bgp].
	if v := c.VIPs[0].BGP; !slices.Equal(v.Communities, []bgp.Community{65001<<16 | 1}) || v.MED != 4 {
		t.Errorf("vip bgp = %+v", v)
	}
}

func TestBGPErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"missing asn", strings.Replace(withBGP(""), "asn = 65001\n", "", 1),
			`f.toml:4: bgp.asn: required key is missing`},
		{"reserved asn", strings.Replace(withBGP(""), "asn = 65001", "asn = 23456", 1),
			`f.toml:5: bgp.asn: 23456 is reserved: want 1 to 4294967294 except 23456`},
		{"ipv6 router id", strings.Replace(withBGP(""), `"198.18.0.2"`, `"2001:db8::2"`, 1),
			`f.toml:6: bgp.router_id: 2001:db8::2: want a non-zero IPv4 address`},
		{"bad router id", strings.Replace(withBGP(""), `"198.18.0.2"`, `"x"`, 1),
			`f.toml:6: bgp.router_id: "x" is not an IPv4 address`},
		{"unknown key", withBGP("\nhold = 3"),
			`f.toml:7: bgp.hold: unknown key`},
		{"bad drain", withBGP("\ndrain = \"1h\""),
			`f.toml:7: bgp.drain: drain out of range: 1h (must be 0s..10m)`},
		{"bad community", withBGP("\ncommunities = [\"65001:1\", \"70000:1\"]"),
			`f.toml:7: bgp.communities[1]: "70000:1": want ASN:VALUE with both from 0 to 65535`},
		{"community twice", withBGP("\ncommunities = [\"1:1\", \"1:1\"]"),
			`f.toml:7: bgp.communities[1]: community 1:1 listed twice`},
		{"peer hold time", withBGP("") + "", // replaced below
			``},
		{"peer wrong type", strings.Replace(withBGP(""), "asn = 65000", "asn = \"65000\"", 1),
			`f.toml:9: bgp.peer[0].asn: expected an integer, got string "65000"`},
		{"peer missing asn", strings.Replace(withBGP(""), "asn = 65000\n", "", 1),
			`f.toml:7: bgp.peer[0].asn: required key is missing`},
		{"peer twice", strings.Replace(withBGP(""), "\n[[vip]]", "[[bgp.peer]]\naddress = \"198.18.0.1\"\nasn = 65000\n\n[[vip]]", 1),
			`f.toml:11: bgp.peer[1].address: 198.18.0.1 already used by peer[0]`},
		{"vip bgp without bgp", minimal + "[vip.bgp]\nmed = 1\n",
			`f.toml:10: vip[0].bgp: [vip.bgp] needs a [bgp] table: nothing is announced without one`},
		{"same address disagrees", withBGP("") + "[vip.bgp]\nmed = 1\n[[vip]]\naddress = \"198.18.100.1\"\nport = 81\n[[vip.backend]]\naddress = \"198.18.0.11\"\n",
			`f.toml:19: vip[1]: vip[0] has the same address, so the same route: its communities and med must agree`},
		{"next hop family", strings.Replace(withBGP(""), "asn = 65000", "asn = 65000\nnext_hop = \"2001:db8::2\"", 1),
			`f.toml:10: bgp.peer[0].next_hop: 2001:db8::2 is not an IPv4 address (an IPv6 next hop is next_hop6)`},
		{"bgp not a table", "bgp = 1\n" + minimal,
			`f.toml:1: bgp: expected a table, got integer 1`},
	}
	tests[8].src = strings.Replace(withBGP(""), "asn = 65000", "asn = 65000\nhold_time = \"2s\"", 1)
	tests[8].want = `f.toml:10: bgp.peer[0].hold_time: 2s: want whole seconds from 3s to 65535s (0 means 1m30s)`
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkParseError(t, tt.src, tt.want) })
	}
}

func TestBGPRestartKeys(t *testing.T) {
	parse := func(src string) *Config {
		t.Helper()
		c, err := Parse("f.toml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	base := parse(withBGP(""))
	tests := []struct {
		src  string
		want []string
	}{
		// Peers, their settings, communities, med and drain are reloadable.
		{strings.Replace(withBGP("\ndrain = \"1s\"\nmed = 5"), "asn = 65000", "asn = 65009\nhold_time = \"3s\"", 1), nil},
		{strings.Replace(withBGP(""), "asn = 65001", "asn = 65002", 1), []string{"bgp.asn"}},
		{strings.Replace(withBGP("\nlisten_port = 179"), `"198.18.0.2"`, `"198.18.0.3"`, 1), []string{"bgp.router_id", "bgp.listen_port"}},
		{minimal, []string{"bgp.asn", "bgp.router_id"}},
	}
	for _, tt := range tests {
		if got := base.RestartKeys(parse(tt.src)); !slices.Equal(got, tt.want) {
			t.Errorf("RestartKeys(%q) = %q, want %q", tt.src, got, tt.want)
		}
	}
}
