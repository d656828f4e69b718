package bgp

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	return Config{
		ASN:      65001,
		RouterID: netip.MustParseAddr("198.18.0.11"),
		Peers: []Peer{
			{Address: netip.MustParseAddr("198.18.0.1"), ASN: 65000},
			{Address: netip.MustParseAddr("2001:db8::1"), ASN: 65000, HoldTime: 9 * time.Second, NextHop: netip.MustParseAddr("198.18.0.11")},
		},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		keys   []string // FieldError keys expected, in order
		msg    string   // a substring of the first message
	}{
		{"valid", func(*Config) {}, nil, ""},
		{"no peers", func(c *Config) { c.Peers = nil }, nil, ""},
		{"listen", func(c *Config) { c.ListenPort = 1179 }, nil, ""},
		{"asn zero", func(c *Config) { c.ASN = 0 }, []string{"asn"}, "reserved"},
		{"asn trans", func(c *Config) { c.ASN = 23456 }, []string{"asn"}, "reserved"},
		{"asn max", func(c *Config) { c.ASN = 4294967295 }, []string{"asn"}, "reserved"},
		{"asn 4-byte", func(c *Config) { c.ASN = 4200000000 }, nil, ""},
		{"router id missing", func(c *Config) { c.RouterID = netip.Addr{} }, []string{"router_id"}, "missing"},
		{"router id v6", func(c *Config) { c.RouterID = netip.MustParseAddr("2001:db8::1") }, []string{"router_id"}, "IPv4"},
		{"router id zero", func(c *Config) { c.RouterID = netip.IPv4Unspecified() }, []string{"router_id"}, "non-zero"},
		{"peer address missing", func(c *Config) { c.Peers[0].Address = netip.Addr{} }, []string{"peer[0].address"}, "missing"},
		{"peer address multicast", func(c *Config) { c.Peers[0].Address = netip.MustParseAddr("224.0.0.5") }, []string{"peer[0].address"}, "unicast"},
		{"peer address mapped", func(c *Config) { c.Peers[0].Address = netip.MustParseAddr("::ffff:198.18.0.1") }, []string{"peer[0].address"}, "unicast"},
		{"peer address zone", func(c *Config) { c.Peers[1].Address = netip.MustParseAddr("fe80::1%eth0") }, []string{"peer[1].address"}, "link-local"},
		{"peer address link-local", func(c *Config) { c.Peers[1].Address = netip.MustParseAddr("fe80::1") }, []string{"peer[1].address"}, "link-local"},
		{"next hop6 link-local", func(c *Config) { c.Peers[0].NextHop6 = netip.MustParseAddr("fe80::11") }, []string{"peer[0].next_hop6"}, "global"},
		{"peer duplicate", func(c *Config) { c.Peers[1].Address = c.Peers[0].Address }, []string{"peer[1].address"}, "peer[0]"},
		{"peer asn", func(c *Config) { c.Peers[1].ASN = 0 }, []string{"peer[1].asn"}, "reserved"},
		{"ibgp", func(c *Config) { c.Peers[0].ASN = c.ASN }, nil, ""},
		{"hold too short", func(c *Config) { c.Peers[0].HoldTime = 2 * time.Second }, []string{"peer[0].hold_time"}, "3s"},
		{"hold fraction", func(c *Config) { c.Peers[0].HoldTime = 3500 * time.Millisecond }, []string{"peer[0].hold_time"}, "whole seconds"},
		{"hold too long", func(c *Config) { c.Peers[0].HoldTime = 65536 * time.Second }, []string{"peer[0].hold_time"}, "65535s"},
		{"hold min", func(c *Config) { c.Peers[0].HoldTime = 3 * time.Second }, nil, ""},
		{"retry fraction", func(c *Config) { c.Peers[0].ConnectRetry = 1500 * time.Millisecond }, []string{"peer[0].connect_retry"}, "whole seconds"},
		{"password long", func(c *Config) { c.Peers[0].Password = strings.Repeat("x", 81) }, []string{"peer[0].password"}, "80"},
		{"password max", func(c *Config) { c.Peers[0].Password = strings.Repeat("x", 80) }, nil, ""},
		{"next hop v6 in v4", func(c *Config) { c.Peers[0].NextHop = netip.MustParseAddr("2001:db8::11") }, []string{"peer[0].next_hop"}, "IPv4"},
		{"next hop6 v4", func(c *Config) { c.Peers[0].NextHop6 = netip.MustParseAddr("198.18.0.11") }, []string{"peer[0].next_hop6"}, "IPv6"},
		{"next hop6 mapped", func(c *Config) { c.Peers[0].NextHop6 = netip.MustParseAddr("::ffff:198.18.0.11") }, []string{"peer[0].next_hop6"}, "IPv6"},
		{"every error", func(c *Config) {
			c.ASN = 0
			c.Peers[0].ASN = 0
			c.Peers[1].HoldTime = time.Second
		}, []string{"asn", "peer[0].asn", "peer[1].hold_time"}, "reserved"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.change(&c)
			err := c.Validate()
			var got []string
			if err != nil {
				for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
					var fe *FieldError
					if !errors.As(e, &fe) {
						t.Fatalf("error %v is not a *FieldError", e)
					}
					got = append(got, fe.Key)
				}
			}
			if strings.Join(got, ",") != strings.Join(tt.keys, ",") {
				t.Fatalf("keys %q, want %q (error: %v)", got, tt.keys, err)
			}
			if tt.msg != "" && !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %q does not mention %q", err, tt.msg)
			}
		})
	}
}

func TestPeerFamilies(t *testing.T) {
	v4, v6 := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("2001:db8::1")
	tests := []struct {
		p            Peer
		want4, want6 bool
	}{
		{Peer{Address: v4}, true, false},
		{Peer{Address: v4, NextHop6: netip.MustParseAddr("2001:db8::11")}, true, true},
		{Peer{Address: v6}, false, true},
		{Peer{Address: v6, NextHop: netip.MustParseAddr("198.18.0.11")}, true, true},
	}
	for _, tt := range tests {
		if got4, got6 := tt.p.carries4(), tt.p.carries6(); got4 != tt.want4 || got6 != tt.want6 {
			t.Errorf("%+v: carries %v/%v, want %v/%v", tt.p, got4, got6, tt.want4, tt.want6)
		}
	}
}

func TestParseCommunity(t *testing.T) {
	tests := []struct {
		in   string
		want Community
		ok   bool
	}{
		{"65000:100", 65000<<16 | 100, true},
		{"0:0", 0, true},
		{"65535:65535", 0xffffffff, true},
		{"65536:1", 0, false},
		{"1:65536", 0, false},
		{"100", 0, false},
		{"a:b", 0, false},
		{":1", 0, false},
		{"-1:1", 0, false},
		{"1:2:3", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseCommunity(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseCommunity(%q) = %v, %v; want %v, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
		if tt.ok && got.String() != tt.in {
			t.Errorf("%q round-trips as %q", tt.in, got)
		}
	}
}

func FuzzParseCommunity(f *testing.F) {
	for _, s := range []string{"65000:100", "0:0", "65535:65535", "1:2:3", ":", "+1:1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCommunity(s)
		if err != nil {
			return
		}
		back, err := ParseCommunity(c.String())
		if err != nil || back != c {
			t.Fatalf("%q parsed as %v, which reparses as %v, %v", s, c, back, err)
		}
	})
}
