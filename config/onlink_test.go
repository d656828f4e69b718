package config

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/lab"
	"github.com/xlbproject/xlb/lab/labtest"
)

// The outer sources a VIP needs, on lo: it has 127.0.0.1 and no global
// IPv6 address. No root needed.
func TestCheckHostSources(t *testing.T) {
	tests := []struct {
		name    string
		src     string
		want    string // "" for success
		source6 netip.Addr
	}{
		{"ipv6 backends need source6", oneVIP("198.18.100.1", "ipip", "2001:db8::11"),
			"r.toml:1: datapath.source6: lo has no global IPv6 address; set source6 (vip[0] encapsulates to IPv6 backends)", netip.Addr{}},
		{"gue too", oneVIP("2001:db8::1", "gue", "2001:db8::11"),
			"r.toml:1: datapath.source6: lo has no global IPv6 address; set source6 (vip[0] encapsulates to IPv6 backends)", netip.Addr{}},
		{"source6 given", strings.Replace(oneVIP("2001:db8::1", "ipip", "2001:db8::11"), "\n\n", "\nsource6 = \"2001:db8::2\"\n\n", 1),
			"", netip.MustParseAddr("2001:db8::2")},
		{"ipv4 backends need none", oneVIP("198.18.100.1", "ipip", "198.18.0.11"), "", netip.Addr{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("r.toml", []byte(strings.Replace(tt.src, `"eth0"`, `"lo"`, 1)))
			if err != nil {
				t.Fatal(err)
			}
			err = c.CheckHost()
			if tt.want != "" {
				if err == nil || err.Error() != tt.want {
					t.Fatalf("error:\n got %v\nwant %s", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.Datapath.Source6 != tt.source6 || !c.Datapath.Source.IsLoopback() {
				t.Errorf("source %v, source6 %v", c.Datapath.Source, c.Datapath.Source6)
			}
		})
	}
}

// onlinkNetns moves the test's goroutine, locked to its thread, into a fresh
// network namespace with an up veth pair: a has 198.18.5.1/24 and
// 2001:db8:5::1/64 and routes 198.18.9.0/24 and 2001:db8:9::/64 through
// gateways on its link; b has 2001:db8:6::1/64 only. When the test ends
// the thread goes back and the namespace, with the pair, is deleted.
func onlinkNetns(t *testing.T) (a, b string) {
	t.Helper()
	a, b = "xlbcfga", "xlbcfgb"
	p, ip := netip.MustParsePrefix, netip.MustParseAddr
	l := labtest.New(t, lab.Spec{
		Prefix: labtest.Prefix("xlbcfg"),
		Hosts:  []lab.HostSpec{{Name: "h", NoSwitch: true}},
		Pairs: []lab.PairSpec{{
			A: lab.EndSpec{Host: "h", Name: a, Addrs: []netip.Prefix{p("198.18.5.1/24"), p("2001:db8:5::1/64")}, Routes: []lab.Route{
				{Dst: p("198.18.9.0/24"), Via: ip("198.18.5.254")},
				{Dst: p("2001:db8:9::/64"), Via: ip("2001:db8:5::fe")},
			}},
			B:                   lab.EndSpec{Host: "h", Name: b, Addrs: []netip.Prefix{p("2001:db8:6::1/64")}},
			KeepChecksumOffload: true,
		}},
	})
	labtest.Enter(t, l.Hosts["h"])
	return a, b
}

func TestCheckHostOnLink(t *testing.T) {
	a, b := onlinkNetns(t)
	// No subtests: they would run on other threads, outside the namespace.
	// queues = [0] puts the first backend on line 10.
	tests := []struct {
		name          string
		iface         string
		vip, forward  string
		backends      []string
		want          string
		source6       string
		sourceIsValid bool
	}{
		{"dsr on-link", a, "198.18.100.1", "dsr", []string{"198.18.5.10", "198.18.5.11"}, "", "2001:db8:5::1", true},
		{"dsr ipv6 on-link", a, "2001:db8:100::1", "dsr", []string{"2001:db8:5::10"}, "", "2001:db8:5::1", true},
		{"dsr via a gateway", a, "198.18.100.1", "dsr", []string{"198.18.5.10", "198.18.9.10"},
			"r.toml:12: vip[0].backend[1].address: 198.18.9.10 is not on-link on " + a + " (the route goes via the gateway 198.18.5.254): dsr backends must share the interface's link", "", false},
		{"dsr ipv6 via a gateway and through another interface", a, "2001:db8:100::1", "dsr", []string{"2001:db8:9::10", "2001:db8:6::10"},
			"r.toml:10: vip[0].backend[0].address: 2001:db8:9::10 is not on-link on " + a + " (the route goes via the gateway 2001:db8:5::fe): dsr backends must share the interface's link\n" +
				"r.toml:12: vip[0].backend[1].address: 2001:db8:6::10 is not on-link on " + a + " (the route leaves through " + b + "): dsr backends must share the interface's link", "", false},
		{"dsr to the balancer's own address", a, "198.18.100.1", "dsr", []string{"198.18.5.1"},
			"r.toml:10: vip[0].backend[0].address: 198.18.5.1 is not on-link on " + a + " (the route leaves through lo): dsr backends must share the interface's link", "", false},
		{"dsr without a route", a, "198.18.100.1", "dsr", []string{"198.19.0.1"},
			"r.toml:10: vip[0].backend[0].address: 198.19.0.1 is not on-link on " + a + " (no route: network is unreachable): dsr backends must share the interface's link", "", false},
		{"ipip through a gateway is fine", a, "198.18.100.1", "ipip", []string{"198.18.9.10"}, "", "2001:db8:5::1", true},
		{"ipv6 only interface, ipv6 vip", b, "2001:db8:100::1", "ipip", []string{"2001:db8:9::10"}, "", "2001:db8:6::1", false},
		{"ipv6 only interface, ipv4 backends", b, "198.18.100.1", "gue", []string{"198.18.9.10"},
			"r.toml:1: datapath.source: " + b + " has no IPv4 address; set source (vip[0] encapsulates to IPv4 backends)", "", false},
	}
	for _, tt := range tests {
		src := strings.Replace(oneVIP(tt.vip, tt.forward, tt.backends...), `"eth0"`, fmt.Sprintf("%q\nqueues = [0]", tt.iface), 1)
		c, err := Parse("r.toml", []byte(src))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		err = c.CheckHost()
		if tt.want != "" {
			if err == nil || err.Error() != tt.want {
				t.Errorf("%s: error:\n got %v\nwant %s", tt.name, err, tt.want)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.name, err)
			continue
		}
		if c.Datapath.Source6 != netip.MustParseAddr(tt.source6) || c.Datapath.Source.IsValid() != tt.sourceIsValid {
			t.Errorf("%s: source %v, source6 %v", tt.name, c.Datapath.Source, c.Datapath.Source6)
		}
	}
}
