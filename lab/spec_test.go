package lab

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func validHost(name, addr string) HostSpec {
	return HostSpec{Name: name, Addr: netip.MustParsePrefix(addr)}
}

func TestSpecNormalize(t *testing.T) {
	ok := func(s *Spec) {}
	tests := []struct {
		name    string
		edit    func(*Spec)
		wantErr string // substring; "" means valid
	}{
		{"valid", ok, ""},
		{"empty prefix", func(s *Spec) { s.Prefix = "" }, "prefix"},
		{"prefix with slash", func(s *Spec) { s.Prefix = "a/b" }, "prefix"},
		{"prefix starting with dash", func(s *Spec) { s.Prefix = "-x" }, "prefix"},
		{"prefix too long", func(s *Spec) { s.Prefix = strings.Repeat("x", 65) }, "prefix"},
		{"no hosts", func(s *Spec) { s.Hosts = nil }, "no hosts"},
		{"host name with dash", func(s *Spec) { s.Hosts[0].Name = "a-b" }, "host name"},
		{"host name too long", func(s *Spec) { s.Hosts[0].Name = "abcdefghijklmnop" }, "host name"},
		{"host named switch", func(s *Spec) { s.Hosts[0].Name = "switch" }, "reserved"},
		{"host named br0", func(s *Spec) { s.Hosts[0].Name = "br0" }, "reserved"},
		{"duplicate name", func(s *Spec) { s.Hosts[1].Name = "a" }, "used twice"},
		{"duplicate address", func(s *Spec) { s.Hosts[1].Addr = netip.MustParsePrefix("198.18.0.1/24") }, "share address"},
		{"missing address", func(s *Spec) { s.Hosts[0].Addr = netip.Prefix{} }, "IPv4"},
		{"IPv6 as Addr", func(s *Spec) { s.Hosts[0].Addr = netip.MustParsePrefix("2001:db8::1/64") }, "IPv4"},
		{"host prefix /32", func(s *Spec) { s.Hosts[0].Addr = netip.MustParsePrefix("198.18.0.1/32") }, "IPv4"},
		{"IPv4 as Addr6", func(s *Spec) { s.Hosts[0].Addr6 = netip.MustParsePrefix("198.18.0.9/24") }, "IPv6"},
		{"MTU too small", func(s *Spec) { s.Hosts[0].MTU = 60 }, "MTU"},
		{"MTU too small for IPv6", func(s *Spec) {
			s.Hosts[0].Addr6 = netip.MustParsePrefix("2001:db8::1/64")
			s.Hosts[0].MTU = 1200
		}, "MTU"},
		{"bridge MTU below host", func(s *Spec) { s.Hosts[0].MTU = 1600; s.BridgeMTU = 1500 }, "bridge MTU"},
		{"route families differ", func(s *Spec) {
			s.Hosts[0].Routes = []Route{{Dst: netip.MustParsePrefix("198.18.1.1/32"), Via: netip.MustParseAddr("2001:db8::2")}}
		}, "route"},
		{"IPv6 route without Addr6", func(s *Spec) {
			s.Hosts[0].Routes = []Route{{Dst: netip.MustParsePrefix("2001:db8:1::/64"), Via: netip.MustParseAddr("2001:db8::2")}}
		}, "IPv6 route"},
		{"route without gateway", func(s *Spec) {
			s.Hosts[0].Routes = []Route{{Dst: netip.MustParsePrefix("198.18.1.1/32")}}
		}, "route"},
		{"global sysctl", func(s *Spec) { s.Hosts[0].Sysctls = map[string]string{"kernel.panic": "1"} }, "sysctl"},
		{"sysctl path escape", func(s *Spec) { s.Hosts[0].Sysctls = map[string]string{"net../../kernel/panic": "1"} }, "sysctl"},
		{"net sysctl", func(s *Spec) { s.Hosts[0].Sysctls = map[string]string{"net.ipv4.ip_forward": "1"} }, ""},
		{"pair", func(s *Spec) { s.Pairs = []PairSpec{pairAB()} }, ""},
		{"pair within a host", func(s *Spec) {
			s.Pairs = []PairSpec{{A: EndSpec{Host: "a", Name: "x0"}, B: EndSpec{Host: "a", Name: "x1"}}}
		}, ""},
		{"pair to no host", func(s *Spec) { p := pairAB(); p.B.Host = "c"; s.Pairs = []PairSpec{p} }, `no host "c"`},
		{"pair end named eth0", func(s *Spec) { p := pairAB(); p.A.Name = HostLink; s.Pairs = []PairSpec{p} }, "reserved"},
		{"pair end named eth0 on a NoSwitch host", func(s *Spec) {
			s.Hosts[0] = HostSpec{Name: "a", NoSwitch: true}
			p := pairAB()
			p.A.Name = HostLink
			s.Pairs = []PairSpec{p}
		}, ""},
		{"pair end named lo", func(s *Spec) { p := pairAB(); p.B.Name = "lo"; s.Pairs = []PairSpec{p} }, "reserved"},
		{"pair end name too long", func(s *Spec) { p := pairAB(); p.B.Name = "abcdefghijklmnop"; s.Pairs = []PairSpec{p} }, "interface"},
		{"interface used twice", func(s *Spec) { s.Pairs = []PairSpec{pairAB(), pairAB()} }, "used twice"},
		{"pair address taken by a host", func(s *Spec) {
			p := pairAB()
			p.B.Addrs = []netip.Prefix{netip.MustParsePrefix("198.18.0.1/24")}
			s.Pairs = []PairSpec{p}
		}, "share address"},
		{"pair MTU too small for IPv6", func(s *Spec) {
			p := pairAB()
			p.MTU = 1200
			p.A.Addrs = []netip.Prefix{netip.MustParsePrefix("2001:db8:7::1/64")}
			s.Pairs = []PairSpec{p}
		}, "MTU"},
		{"pair queues", func(s *Spec) { p := pairAB(); p.Queues = 1000; s.Pairs = []PairSpec{p} }, "queues"},
		{"IPv6 route through an end without IPv6", func(s *Spec) {
			p := pairAB()
			p.A.Routes = []Route{{Dst: netip.MustParsePrefix("2001:db8:1::/64"), Via: netip.MustParseAddr("2001:db8::2")}}
			s.Pairs = []PairSpec{p}
		}, "IPv6 route"},
		{"NoSwitch with an address", func(s *Spec) { s.Hosts[0].NoSwitch = true }, "NoSwitch"},
		{"NoSwitch only", func(s *Spec) {
			s.Hosts = []HostSpec{{Name: "a", NoSwitch: true}, {Name: "b", NoSwitch: true}}
			s.Pairs = []PairSpec{pairAB()}
		}, ""},
		{"NoSwitch only with a bridge MTU", func(s *Spec) {
			s.Hosts = []HostSpec{{Name: "a", NoSwitch: true}}
			s.BridgeMTU = 1500
		}, "bridge MTU"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Spec{Prefix: "xlblabunit", Hosts: []HostSpec{validHost("a", "198.18.0.1/24"), validHost("b", "198.18.0.2/24")}}
			tt.edit(&s)
			_, err := s.normalize()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("normalize: %v", err)
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("normalize: got %v, want ErrInvalidSpec mentioning %q", err, tt.wantErr)
			}
		})
	}
}

// pairAB is a valid pair between the hosts a and b of TestSpecNormalize.
func pairAB() PairSpec {
	return PairSpec{A: EndSpec{Host: "a", Name: "d0"}, B: EndSpec{Host: "b", Name: "d0"}}
}

func TestSpecDefaults(t *testing.T) {
	s := Spec{Prefix: "p", Hosts: []HostSpec{validHost("c", "198.18.0.1/24"), validHost("lb", "198.18.0.2/24")}}
	s.Hosts[1].MTU = 1600
	got, err := s.normalize()
	if err != nil {
		t.Fatal(err)
	}
	if got.Hosts[0].MTU != 1500 || got.Hosts[1].MTU != 1600 || got.BridgeMTU != 1600 {
		t.Fatalf("MTUs %d %d bridge %d, want 1500 1600 bridge 1600", got.Hosts[0].MTU, got.Hosts[1].MTU, got.BridgeMTU)
	}
	if s.Hosts[0].MTU != 0 {
		t.Fatal("normalize changed the caller's spec")
	}

	s = Spec{Prefix: "p", Hosts: []HostSpec{{Name: "a", NoSwitch: true}}, Pairs: []PairSpec{{A: EndSpec{Host: "a", Name: "x"}, B: EndSpec{Host: "a", Name: "y"}}}}
	if got, err = s.normalize(); err != nil {
		t.Fatal(err)
	}
	if got.BridgeMTU != 0 || got.Hosts[0].MTU != 0 || got.Pairs[0].MTU != 1500 || got.Pairs[0].Queues != 1 {
		t.Fatalf("bridge MTU %d host MTU %d pair MTU %d queues %d, want 0 0 1500 1", got.BridgeMTU, got.Hosts[0].MTU, got.Pairs[0].MTU, got.Pairs[0].Queues)
	}
	if s.Pairs[0].MTU != 0 {
		t.Fatal("normalize changed the caller's pairs")
	}
}

func TestOwnedBy(t *testing.T) {
	tests := []struct {
		prefix, ns string
		want       bool
	}{
		{"xlbt1", "xlbt1-switch", true},
		{"xlbt1", "xlbt1-client", true},
		{"xlbt1", "xlbt1-b_2", true},
		{"xlbt1", "xlbt12-client", false},
		{"xlbt1", "xlbt1", false},
		{"xlbt1", "xlbt1-", false},
		{"xlb", "xlb-demo-client", false}, // belongs to prefix "xlb-demo"
		{"xlb-demo", "xlb-demo-client", true},
		{"xlbt1", "other", false},
		{"xlbt1", "xlbt1-abcdefghijklmnop", false},
	}
	for _, tt := range tests {
		if got := ownedBy(tt.prefix, tt.ns); got != tt.want {
			t.Errorf("ownedBy(%q, %q) = %v, want %v", tt.prefix, tt.ns, got, tt.want)
		}
	}
}

func TestHostMAC(t *testing.T) {
	tests := []struct {
		index int
		want  [6]byte
	}{
		{0, [6]byte{2, 0, 0, 0, 0, 1}},
		{9, [6]byte{2, 0, 0, 0, 0, 10}},
		{255, [6]byte{2, 0, 0, 0, 1, 0}},
	}
	for _, tt := range tests {
		got := hostMAC(tt.index)
		if got != tt.want {
			t.Errorf("hostMAC(%d) = % x, want % x", tt.index, got, tt.want)
		}
		if got[0]&1 != 0 || got[0]&2 == 0 {
			t.Errorf("hostMAC(%d) = % x is not a locally administered unicast MAC", tt.index, got)
		}
	}
}

func TestCheckLiteral(t *testing.T) {
	tests := []struct {
		addr string
		ok   bool
	}{
		{"198.18.0.1:80", true},
		{":80", true},
		{"[2001:db8::1]:80", true},
		{"localhost:80", false},
		{"198.18.0.1", false},
	}
	for _, tt := range tests {
		if err := checkLiteral(tt.addr); (err == nil) != tt.ok {
			t.Errorf("checkLiteral(%q) = %v, want ok=%v", tt.addr, err, tt.ok)
		}
	}
}

func FuzzOwnedBy(f *testing.F) {
	f.Add("xlbt1", "xlbt1-client")
	f.Add("xlb", "xlb-demo-switch")
	f.Add("a", "a-switch")
	f.Fuzz(func(t *testing.T, prefix, ns string) {
		if !ownedBy(prefix, ns) {
			return
		}
		// Whatever Cleanup would delete is a name New could have made.
		rest := strings.TrimPrefix(ns, prefix+"-")
		if ns != nsName(prefix, rest) || (rest != switchName && checkHostName(rest) != nil) {
			t.Fatalf("ownedBy(%q, %q) but %q is no name of that lab", prefix, ns, rest)
		}
	})
}

func TestBalancerSpec(t *testing.T) {
	vip := netip.MustParseAddr("198.18.100.1")
	s, err := BalancerSpec("p", vip, 3).normalize()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, h := range s.Hosts {
		names = append(names, h.Name)
	}
	if strings.Join(names, " ") != "client lb be1 be2 be3" {
		t.Fatalf("hosts %v", names)
	}
	client, lb, be3 := s.Hosts[0], s.Hosts[1], s.Hosts[4]
	if client.MTU != ClientMTU || lb.MTU != FabricMTU || !lb.PortXDP || be3.MTU != FabricMTU || s.BridgeMTU != FabricMTU {
		t.Errorf("MTUs client %d lb %d be3 %d bridge %d, lb PortXDP %v", client.MTU, lb.MTU, be3.MTU, s.BridgeMTU, lb.PortXDP)
	}
	if r := client.Routes; len(r) != 1 || r[0].Dst != netip.PrefixFrom(vip, 32) || r[0].Via != BalancerLB.Addr() {
		t.Errorf("client routes %v", r)
	}
	if be3.Addr != netip.MustParsePrefix("198.18.0.13/24") || len(be3.LoAddrs) != 1 || be3.LoAddrs[0].Addr() != vip {
		t.Errorf("be3 %s lo %v", be3.Addr, be3.LoAddrs)
	}
	if n := len(BalancerSpec("p", vip, 1000).Hosts); n != 202 {
		t.Errorf("1000 backends: %d hosts, want 2 + 200", n)
	}
}
