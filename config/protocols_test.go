package config

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// dp adds lines to minimal's [datapath] table.
func dp(lines string) string { return edit("interface", "interface = \"eth0\"\n"+lines) }

// vipLines adds lines to minimal's [[vip]] table, from line 7.
func vipLines(lines string) string { return edit("port", "port = 80\n"+lines) }

// oneVIP builds a file with one VIP at vip, forwarded by forward, and
// backends at the addresses given; the first backend's address is on line 9.
func oneVIP(vip, forward string, backends ...string) string {
	s := "[datapath]\ninterface = \"eth0\"\n\n[[vip]]\naddress = \"" + vip + "\"\nport = 80\nforward = \"" + forward + "\"\n"
	for _, b := range backends {
		s += "[[vip.backend]]\naddress = \"" + b + "\"\n"
	}
	return s
}

func TestParseErrorsFlowsAndSources(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"flow table not a power of two", dp("flow_table_size = 100000"),
			`f.toml:3: datapath.flow_table_size: flow table size 100000 is not a power of two`},
		{"flow table too small", dp("flow_table_size = 512"),
			`f.toml:3: datapath.flow_table_size: flow table size out of range: 512 (must be 1024..16777216)`},
		{"flow table disabled", dp("flow_table_size = 0"),
			`f.toml:3: datapath.flow_table_size: flow table size out of range: 0 (must be 1024..16777216)`},
		{"flow table too large", dp("flow_table_size = 33554432"),
			`f.toml:3: datapath.flow_table_size: flow table size out of range: 33554432 (must be 1024..16777216)`},
		{"splice table too large", dp("splice_table_size = 2097152"),
			`f.toml:3: datapath.splice_table_size: splice table size out of range: 2097152 (must be 0..1048576)`},
		{"splice table negative", dp("splice_table_size = -1"),
			`f.toml:3: datapath.splice_table_size: splice table size out of range: -1 (must be 0..1048576)`},
		{"timeout not a duration", dp(`flow_tcp_timeout = "5 minutes"`),
			`f.toml:3: datapath.flow_tcp_timeout: "5 minutes" is not a duration (such as "500ms" or "5m")`},
		{"timeout as integer", dp(`flow_tcp_timeout = 300`),
			`f.toml:3: datapath.flow_tcp_timeout: expected a duration such as "500ms" or "5m", got integer 300`},
		{"timeout zero", dp(`flow_udp_timeout = "0s"`),
			`f.toml:3: datapath.flow_udp_timeout: flow timeout out of range: 0s (must be 1s..24h)`},
		{"timeout negative", dp(`flow_udp_timeout = "-5s"`),
			`f.toml:3: datapath.flow_udp_timeout: flow timeout out of range: -5s (must be 1s..24h)`},
		{"timeout too long", dp(`flow_tcp_timeout = "48h"`),
			`f.toml:3: datapath.flow_tcp_timeout: flow timeout out of range: 48h (must be 1s..24h)`},
		{"ipv4 source6", dp(`source6 = "198.18.0.1"`),
			`f.toml:3: datapath.source6: 198.18.0.1 is not an IPv6 address (an IPv4 outer source is datapath.source)`},
		{"link-local source6", dp(`source6 = "fe80::1"`),
			`f.toml:3: datapath.source6: fe80::1 is not a global unicast address`},
		{"zoned source6", dp(`source6 = "2001:db8::1%eth0"`),
			`f.toml:3: datapath.source6: 2001:db8::1%eth0: an address with a zone is link-local to one interface, not a service address`},
		{"ipv4-mapped backend", edit(`address = "198.18.0.11"`, `  address = "::ffff:198.18.0.11"`),
			`f.toml:9: vip[0].backend[0].address: ::ffff:198.18.0.11 is an IPv4-mapped IPv6 address: write it as 198.18.0.11`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkParseError(t, tt.src, tt.want) })
	}
}

func TestParseErrorsForwarding(t *testing.T) {
	tests := []struct{ name, src, want string }{
		{"ipv6 vip, ipv4 backends", oneVIP("2001:db8::1", "ipip", "198.18.0.11"),
			`f.toml:9: vip[0].backend[0].address: IPv4 backend for IPv6 VIP 2001:db8::1: ipip does not carry IPv6 in IPv4 (6in4); use IPv6 backends`},
		{"ipv6 vip, gue to ipv4", oneVIP("2001:db8::1", "gue", "198.18.0.11"),
			`f.toml:9: vip[0].backend[0].address: IPv4 backend for IPv6 VIP 2001:db8::1: gue does not carry IPv6 in IPv4 (6in4); use IPv6 backends`},
		{"mixed families", oneVIP("198.18.100.1", "ipip", "198.18.0.11", "2001:db8::12", "198.18.0.13"),
			`f.toml:11: vip[0].backend[1].address: 2001:db8::12 is IPv6 but vip[0].backend[0] is IPv4: a VIP's backends must be of one family`},
		{"dsr ipv4 vip, ipv6 backend", oneVIP("198.18.100.1", "dsr", "2001:db8::11"),
			`f.toml:9: vip[0].backend[0].address: IPv6 backend for IPv4 VIP 198.18.100.1: dsr forwards the client's packet unchanged, so backends must be of the VIP's family`},
		{"dsr ipv6 vip, ipv4 backend", oneVIP("2001:db8::1", "dsr", "198.18.0.11"),
			`f.toml:9: vip[0].backend[0].address: IPv4 backend for IPv6 VIP 2001:db8::1: dsr forwards the client's packet unchanged, so backends must be of the VIP's family`},
		{"gue_port with ipip", vipLines("gue_port = 6080"),
			`f.toml:7: vip[0].gue_port: gue_port is only used with forward = "gue" (forward is "ipip")`},
		{"gue_port with dsr", vipLines("forward = \"dsr\"\ngue_port = 6080"),
			`f.toml:8: vip[0].gue_port: gue_port is only used with forward = "gue" (forward is "dsr")`},
		{"gue_port zero", vipLines("forward = \"gue\"\ngue_port = 0"),
			`f.toml:8: vip[0].gue_port: GUE port out of range: 0 (must be 1..65535)`},
		{"gue_port too large", vipLines("forward = \"gue\"\ngue_port = 65536"),
			`f.toml:8: vip[0].gue_port: GUE port out of range: 65536 (must be 1..65535)`},
		{"icmp_echo not a bool", vipLines(`icmp_echo = "yes"`),
			`f.toml:7: vip[0].icmp_echo: expected true or false, got string "yes"`},
		{"bad fragments", vipLines(`fragments = "reassemble"`),
			`f.toml:7: vip[0].fragments: "reassemble" is not one of ["drop" "pass"]`},
		{"bad state", edit("", `  state = "drained"`),
			`f.toml:10: vip[0].backend[0].state: "drained" is not one of ["active" "drain"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkParseError(t, tt.src, tt.want) })
	}
}

func TestParseFamilies(t *testing.T) {
	tests := []struct {
		name                  string
		vip, forward, backend string
	}{
		{"ipip", "198.18.100.1", "ipip", "198.18.0.11"},
		{"4in6", "198.18.100.1", "ipip", "2001:db8::11"},
		{"ip6ip6", "2001:db8::1", "ipip", "2001:db8::11"},
		{"gue 4in4", "198.18.100.1", "gue", "198.18.0.11"},
		{"gue 4in6", "198.18.100.1", "gue", "2001:db8::11"},
		{"gue 6in6", "2001:db8::1", "gue", "2001:db8::11"},
		{"dsr 4", "198.18.100.1", "dsr", "198.18.0.11"},
		{"dsr 6", "2001:db8::1", "dsr", "2001:db8::11"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("f.toml", []byte(oneVIP(tt.vip, tt.forward, tt.backend)))
			if err != nil {
				t.Fatal(err)
			}
			v := c.VIPs[0]
			if v.Address != netip.MustParseAddr(tt.vip) || v.Forward.String() != tt.forward || v.Backends[0].Address != netip.MustParseAddr(tt.backend) {
				t.Errorf("vip = %+v", v)
			}
			if want := uint16(0); tt.forward == "gue" && v.GUEPort != DefaultGUEPort || tt.forward != "gue" && v.GUEPort != want {
				t.Errorf("gue port = %d", v.GUEPort)
			}
		})
	}
}

func TestParseErrorsHealth(t *testing.T) {
	port0 := edit("port", "port = 0")
	tests := []struct{ name, src, want string }{
		{"health not a table", vipLines(`health = "tcp"`),
			`f.toml:7: vip[0].health: expected a table, got string "tcp"`},
		{"unknown health key", minimal + "[vip.health]\nintervall = \"1s\"\n",
			`f.toml:11: vip[0].health.intervall: unknown key (did you mean "interval"?)`},
		{"bad kind", minimal + "[vip.health]\nkind = \"icmp\"\n",
			`f.toml:11: vip[0].health.kind: "icmp" is not one of ["none" "tcp" "http"]`},
		{"port zero", minimal + "[vip.health]\nkind = \"tcp\"\nport = 0\n",
			`f.toml:12: vip[0].health.port: port out of range: 0 (must be 1..65535)`},
		{"port-0 vip without health port", port0 + "[vip.health]\nkind = \"tcp\"\n",
			`f.toml:10: vip[0].health.port: a tcp check needs a port: the VIP serves every port (port = 0)`},
		{"port-0 vip, backend check without port", port0 + "  [vip.backend.health]\n  kind = \"http\"\n",
			`f.toml:10: vip[0].backend[0].health.port: a http check needs a port: the VIP serves every port (port = 0)`},
		{"path with tcp", minimal + "[vip.health]\nkind = \"tcp\"\npath = \"/x\"\n",
			`f.toml:12: vip[0].health.path: path is only used by http checks (kind is "tcp")`},
		{"expect with default kind", minimal + "[vip.health]\nexpect = 204\nhost = \"a\"\n",
			"f.toml:11: vip[0].health.expect: expect is only used by http checks (kind is \"none\")\n" +
				`f.toml:12: vip[0].health.host: host is only used by http checks (kind is "none")`},
		{"backend path over a tcp vip", minimal + "  [vip.backend.health]\n  path = \"/x\"\n[vip.health]\nkind = \"tcp\"\n",
			`f.toml:11: vip[0].backend[0].health.path: path is only used by http checks (kind is "tcp")`},
		{"relative path", minimal + "[vip.health]\nkind = \"http\"\npath = \"healthz\"\n",
			`f.toml:12: vip[0].health.path: "healthz" is not an absolute path of at most 1024 printable ASCII characters without spaces`},
		{"path with a space", minimal + "[vip.health]\nkind = \"http\"\npath = \"/a b\"\n",
			`f.toml:12: vip[0].health.path: "/a b" is not an absolute path of at most 1024 printable ASCII characters without spaces`},
		{"path too long", minimal + "[vip.health]\nkind = \"http\"\npath = \"/" + strings.Repeat("a", 1024) + "\"\n",
			`f.toml:12: vip[0].health.path: "/` + strings.Repeat("a", 1024) + `" is not an absolute path of at most 1024 printable ASCII characters without spaces`},
		{"bad host", minimal + "[vip.health]\nkind = \"http\"\nhost = \"a b\"\n",
			`f.toml:12: vip[0].health.host: "a b" is not a host name or address with an optional port`},
		{"expect out of range", minimal + "[vip.health]\nkind = \"http\"\nexpect = 600\n",
			`f.toml:12: vip[0].health.expect: HTTP status out of range: 600 (must be 100..599)`},
		{"interval too short", minimal + "[vip.health]\ninterval = \"5ms\"\n",
			`f.toml:11: vip[0].health.interval: interval out of range: 5ms (must be 10ms..1h)`},
		{"interval not a string", minimal + "[vip.health]\ninterval = 1\n",
			`f.toml:11: vip[0].health.interval: expected a duration such as "500ms" or "5m", got integer 1`},
		{"timeout zero", minimal + "[vip.health]\ntimeout = \"0s\"\n",
			`f.toml:11: vip[0].health.timeout: timeout out of range: 0s (must be 1ms..1h)`},
		{"timeout equals default interval", minimal + "[vip.health]\ntimeout = \"1s\"\n",
			`f.toml:11: vip[0].health.timeout: timeout (1s) must be shorter than interval (1s): probes of a backend must not overlap`},
		{"interval below default timeout", minimal + "[vip.health]\ninterval = \"300ms\"\n",
			`f.toml:11: vip[0].health.interval: timeout (500ms) must be shorter than interval (300ms): probes of a backend must not overlap`},
		{"backend interval below vip timeout", minimal + "  [vip.backend.health]\n  interval = \"200ms\"\n[vip.health]\ntimeout = \"250ms\"\n",
			`f.toml:11: vip[0].backend[0].health.interval: timeout (250ms) must be shorter than interval (200ms): probes of a backend must not overlap`},
		{"vip error not repeated by its backends", minimal + "  [vip.backend.health]\n  rise = 3\n[vip.health]\ntimeout = \"2s\"\n",
			`f.toml:13: vip[0].health.timeout: timeout (2s) must be shorter than interval (1s): probes of a backend must not overlap`},
		{"rise zero", minimal + "[vip.health]\nrise = 0\n",
			`f.toml:11: vip[0].health.rise: rise out of range: 0 (must be 1..100)`},
		{"fall too large", edit("", "  health = {fall = 101}"),
			`f.toml:10: vip[0].backend[0].health.fall: fall out of range: 101 (must be 1..100)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkParseError(t, tt.src, tt.want) })
	}
}

func TestHealthResolution(t *testing.T) {
	none80 := DefaultHealth(80)
	tcp80 := none80
	tcp80.Kind = HealthTCP
	http80 := none80
	http80.Kind, http80.Path, http80.Expect = HealthHTTP, "/", 200
	tests := []struct {
		name        string
		src         string
		vip, backnd HealthCheck
	}{
		{"no health anywhere", minimal, none80, none80},
		{"vip check inherited", minimal + "[vip.health]\nkind = \"tcp\"\n", tcp80, tcp80},
		{"backend check over the default", edit("", "  health = {kind = \"http\"}"), none80, http80},
		{"http fields dropped for tcp", minimal + "  health = {kind = \"tcp\"}\n[vip.health]\nkind = \"http\"\npath = \"/x\"\nhost = \"h\"\nexpect = 204\n",
			HealthCheck{Kind: HealthHTTP, Port: 80, Path: "/x", Host: "h", Expect: 204, Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 3},
			tcp80},
		{"port-0 vip takes the health port", strings.Replace(minimal, "port = 80", "port = 0", 1) + "  health = {interval = \"2s\"}\n[vip.health]\nkind = \"tcp\"\nport = 80\n",
			tcp80, HealthCheck{Kind: HealthTCP, Port: 80, Interval: 2 * time.Second, Timeout: 500 * time.Millisecond, Rise: 2, Fall: 3}},
		{"port-0 vip without checks", strings.Replace(minimal, "port = 80", "port = 0", 1), DefaultHealth(0), DefaultHealth(0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("f.toml", []byte(tt.src))
			if err != nil {
				t.Fatal(err)
			}
			if got := c.VIPs[0].Health; got != tt.vip {
				t.Errorf("vip health:\n got %+v\nwant %+v", got, tt.vip)
			}
			if got := c.VIPs[0].Backends[0].Health; got != tt.backnd {
				t.Errorf("backend health:\n got %+v\nwant %+v", got, tt.backnd)
			}
		})
	}
}

func TestEffectiveWeight(t *testing.T) {
	tests := []struct {
		b    Backend
		want uint32
	}{
		{Backend{Weight: 5, State: StateActive}, 5},
		{Backend{Weight: 5, State: StateDrain}, 0},
		{Backend{Weight: 5}, 5}, // built by hand: active
		{Backend{Weight: 0, State: StateActive}, 0},
	}
	for _, tt := range tests {
		if got := tt.b.EffectiveWeight(); got != tt.want {
			t.Errorf("%+v: EffectiveWeight() = %d, want %d", tt.b, got, tt.want)
		}
	}
	// Undraining restores the configured weight.
	c, err := Parse("f.toml", []byte(edit("", "  weight = 7\n  state = \"drain\"")))
	if err != nil {
		t.Fatal(err)
	}
	b := c.VIPs[0].Backends[0]
	if b.Weight != 7 || b.EffectiveWeight() != 0 {
		t.Errorf("drained backend = %+v", b)
	}
	b.State = StateActive
	if b.EffectiveWeight() != 7 {
		t.Errorf("undrained weight = %d", b.EffectiveWeight())
	}
}

// Native mode accepts everything the lb program does per packet (IPv6 VIPs
// and backends, every forward mode, per-VIP table sizes, echo, the fragment
// policy, flow timeouts, the ICMP rate limit) and refuses, at the line, what
// it would ignore.
func TestParseErrorsNativeMode(t *testing.T) {
	native := func(vip, forward string, backends ...string) string {
		return strings.Replace(oneVIP(vip, forward, backends...), "interface = \"eth0\"\n", "interface = \"eth0\"\nmode = \"native\"\n", 1)
	}
	tests := []struct{ name, src, want string }{
		{"bad mode", dp(`mode = "dpdk"`), `f.toml:3: datapath.mode: "dpdk" is not one of ["afxdp" "native"]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { checkParseError(t, tt.src, tt.want) })
	}
	for _, src := range []string{
		native("198.18.100.1", "ipip", "198.18.0.11"),
		native("2001:db8::1", "ipip", "2001:db8::11"),
		native("198.18.100.1", "ipip", "2001:db8::11"),
		strings.Replace(native("198.18.100.1", "gue", "198.18.0.11"), "port = 80\n", "port = 80\ngue_port = 6080\n", 1),
		strings.Replace(native("2001:db8::1", "gue", "2001:db8::11"), "port = 80\n", "port = 80\ngue_port = 6080\n", 1),
		native("198.18.100.1", "dsr", "198.18.0.11"),
		native("2001:db8::1", "dsr", "2001:db8::11"),
		strings.Replace(native("198.18.100.1", "ipip", "198.18.0.11"), "port = 80\n", "port = 80\ntable_size = 257\nicmp_echo = false\nfragments = \"pass\"\n", 1),
		strings.Replace(native("198.18.100.1", "ipip", "198.18.0.11"), "mode = \"native\"\n", "mode = \"native\"\nicmp_rate_limit = 0\nflow_tcp_timeout = \"1m\"\nflow_udp_timeout = \"5s\"\n", 1),
	} {
		if _, err := Parse("f.toml", []byte(src)); err != nil {
			t.Errorf("a native-mode config: %v\n%s", err, src)
		}
	}
	// The ICMP rate limit: the AF_XDP defaults, or the keys' values.
	for _, tt := range []struct {
		keys        string
		rate, burst uint32
	}{
		{"", DefaultICMPRateLimit, DefaultICMPRateBurst},
		{"icmp_rate_limit = 10\n", 10, DefaultICMPRateBurst},
		{"icmp_rate_burst = 7\n", DefaultICMPRateLimit, 7},
		{"icmp_rate_limit = 10\nicmp_rate_burst = 7\n", 10, 7},
		{"icmp_rate_limit = 0\n", 0, DefaultICMPRateBurst},
	} {
		src := strings.Replace(native("198.18.100.1", "ipip", "198.18.0.11"), "mode = \"native\"\n", "mode = \"native\"\n"+tt.keys, 1)
		c, err := Parse("f.toml", []byte(src))
		if err != nil {
			t.Errorf("native mode with %q: %v", tt.keys, err)
			continue
		}
		if dp := c.Datapath; dp.ICMPRateLimit != tt.rate || dp.ICMPRateBurst != tt.burst {
			t.Errorf("native mode with %q: ICMP rate %d/s burst %d, want %d/s burst %d", tt.keys, dp.ICMPRateLimit, dp.ICMPRateBurst, tt.rate, tt.burst)
		}
	}
}
