package firewall

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// covering is the semantics Compile implements, written the slow way: the
// rule that decides for src to v (the most specific prefix; the VIP's rule
// before a global one), false if none covers src.
func covering(rules []Rule, v VIP, src netip.Addr) (Rule, bool) {
	var best Rule
	found := false
	for _, r := range rules {
		if (!r.VIP.Global() && r.VIP != v) || !r.Prefix.Contains(src) {
			continue
		}
		if !found || r.Prefix.Bits() > best.Prefix.Bits() ||
			(r.Prefix.Bits() == best.Prefix.Bits() && best.VIP.Global() && !r.VIP.Global()) {
			best, found = r, true
		}
	}
	return best, found
}

// lookup is the datapath's longest-prefix match over compiled entries.
func lookup(c Compiled, v VIP, src netip.Addr) (Entry, bool) {
	for bits := src.BitLen(); bits >= 0; bits-- {
		p, _ := src.Prefix(bits)
		if e, ok := c[Key{v, p}]; ok {
			return e, true
		}
	}
	return Entry{}, false
}

func mustVIP(s string) VIP {
	v, err := ParseVIP(s)
	if err != nil {
		panic(err)
	}
	return v
}

func rule(vip, prefix, action string) Rule {
	r, err := ParseRule(vip, prefix, action, "", time.Time{})
	if err != nil {
		panic(err)
	}
	r.Origin = File
	return r
}

var (
	v4  = mustVIP("198.18.100.1:80/tcp")
	v4b = mustVIP("198.18.100.2:0/udp")
	v6  = mustVIP("[2001:db8::100]:443/tcp")
)

func TestCompile(t *testing.T) {
	vips := []Policy{{VIP: v4}, {VIP: v4b, SYNRate: 10}, {VIP: v6}}
	rules := []Rule{
		rule("", "198.18.66.0/24", "deny"),
		rule("", "2001:db8:66::/48", "deny"),
		rule(v4.String(), "198.18.0.0/16", "allow"),
		rule(v4.String(), "198.18.1.0/24", "deny"),
		rule(v4.String(), "198.18.1.128/25", "allow"),
		rule(v4.String(), "198.18.66.128/25", "allow"),
		rule(v6.String(), "2001:db8:bad::/48", "deny"),
		rule(v6.String(), "2001:db8:66:1::/64", "allow"),
	}
	for _, tc := range []struct {
		vip   VIP
		src   string
		allow bool
	}{
		{v4, "198.18.2.1", true},     // allow list
		{v4, "198.18.1.1", false},    // deny inside it
		{v4, "198.18.1.200", true},   // allow inside that
		{v4, "198.19.0.1", false},    // outside the allow list
		{v4, "198.18.66.7", false},   // global deny, more specific than the /16
		{v4, "198.18.66.200", true},  // the VIP's allow inside the global deny
		{v4b, "198.18.66.7", false},  // global deny on another VIP
		{v4b, "198.19.0.1", true},    // no allow list there
		{v6, "2001:db8:1::1", false}, // outside its allow list (the /64)
		{v6, "2001:db8:bad::1", false},
		{v6, "2001:db8:66::1", false},  // global
		{v6, "2001:db8:66:1::1", true}, // the VIP's allow inside it
	} {
		c, err := Compile(vips, rules, NewIndex())
		if err != nil {
			t.Fatal(err)
		}
		src := netip.MustParseAddr(tc.src)
		e, ok := lookup(c, tc.vip, src)
		if got := !ok || !e.Deny; got != tc.allow {
			t.Errorf("%v from %v: allowed %v, want %v (entry %+v)", tc.vip, src, got, tc.allow, e)
		}
	}
	c, _ := Compile(vips, rules, NewIndex())
	// v4b: the global rule and the SYN limit's default; every entry
	// carries the limit.
	if e, ok := c[Key{v4b, netip.MustParsePrefix("0.0.0.0/0")}]; !ok || e.Deny || e.SYNRate != 10 {
		t.Errorf("v4b default entry %+v %v, want allow with SYN rate 10", e, ok)
	}
	if e := c[Key{v4b, netip.MustParsePrefix("198.18.66.0/24")}]; e.SYNRate != 10 || !e.Deny {
		t.Errorf("v4b global entry %+v", e)
	}
	// The global rule has one counter index on every VIP.
	if a, b := c[Key{v4, netip.MustParsePrefix("198.18.66.0/24")}], c[Key{v4b, netip.MustParsePrefix("198.18.66.0/24")}]; a.Rule != b.Rule || a.Slot == b.Slot {
		t.Errorf("global rule: entries %+v and %+v: want one rule index, two slots", a, b)
	}
}

// TestCompileOracle checks Compile against covering for every source in a
// grid around the rules' edges.
func TestCompileOracle(t *testing.T) {
	vips := []Policy{{VIP: v4}, {VIP: v4b}}
	rules := []Rule{
		rule("", "198.18.0.0/15", "deny"),
		rule("", "198.18.7.0/24", "deny"),
		rule(v4.String(), "198.18.0.0/20", "allow"),
		rule(v4.String(), "198.18.4.0/22", "deny"),
		rule(v4.String(), "198.18.6.0/23", "allow"),
		rule(v4.String(), "198.18.7.0/24", "allow"), // beats the global /24
		rule(v4b.String(), "198.18.3.0/24", "allow"),
	}
	c, err := Compile(vips, rules, NewIndex())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range vips {
		hasAllow := p.VIP == v4 || p.VIP == v4b
		for i := range 32 * 256 {
			src := netip.AddrFrom4([4]byte{198, 18, byte(i / 256), byte(i)})
			r, ok := covering(rules, p.VIP, src)
			want := ok && r.Action == Allow || !ok && !hasAllow
			e, hit := lookup(c, p.VIP, src)
			if got := !hit || !e.Deny; got != want {
				t.Fatalf("%v from %v: allowed %v, want %v (deciding rule %v)", p.VIP, src, got, want, r)
			}
		}
	}
}

func TestCompileErrors(t *testing.T) {
	vips := []Policy{{VIP: v4}, {VIP: v6}}
	for _, tc := range []struct {
		name  string
		rules []Rule
		want  string
	}{
		{"duplicate", []Rule{rule(v4.String(), "198.18.0.0/16", "allow"), rule(v4.String(), "198.18.0.0/16", "deny")}, "already"},
		{"family", []Rule{{VIP: v6, Prefix: netip.MustParsePrefix("198.18.0.0/16"), Action: Deny}}, "family"},
		{"global allow", []Rule{{Prefix: netip.MustParsePrefix("198.18.0.0/16"), Action: Allow}}, "global rules deny"},
		{"unknown VIP", []Rule{rule("198.18.200.1:80/tcp", "198.18.0.0/16", "deny")}, "no such VIP"},
	} {
		if _, err := Compile(vips, tc.rules, NewIndex()); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one with %q", tc.name, err, tc.want)
		}
	}
}

func TestCompileCapacity(t *testing.T) {
	// Global rules count once per VIP of their family: 2 VIPs x 2^17 + 1
	// rules exceed the entries.
	vips := []Policy{{VIP: v4}, {VIP: v4b}}
	var rules []Rule
	for i := range MaxEntries/2 + 1 {
		a := netip.AddrFrom4([4]byte{198, 18 + byte(i>>16), byte(i >> 8), byte(i)})
		rules = append(rules, Rule{Prefix: netip.PrefixFrom(a, 32), Action: Deny})
	}
	if _, err := Compile(vips, rules, NewIndex()); err == nil || !strings.Contains(err.Error(), "the maps hold") {
		t.Errorf("error %v, want one saying what the maps hold", err)
	}
}

func TestIndexStable(t *testing.T) {
	vips := []Policy{{VIP: v4}, {VIP: v6}}
	a, b := rule(v4.String(), "198.18.1.0/24", "deny"), rule(v4.String(), "198.18.2.0/24", "deny")
	idx := NewIndex()
	c1, err := Compile(vips, []Rule{a, b}, idx)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := Compile(vips, []Rule{b}, idx)
	if err != nil {
		t.Fatal(err)
	}
	if c1[b.Key()].Rule != c2[b.Key()].Rule {
		t.Errorf("b's index moved: %d -> %d", c1[b.Key()].Rule, c2[b.Key()].Rule)
	}
	if r, s := idx.TakeFresh(); len(r)+len(s) != 0 {
		t.Errorf("fresh %v %v before any reuse", r, s)
	}
	c := rule(v4.String(), "198.18.3.0/24", "deny")
	c3, err := Compile(vips, []Rule{b, c}, idx)
	if err != nil {
		t.Fatal(err)
	}
	if c3[c.Key()].Rule != c1[a.Key()].Rule {
		t.Errorf("c got %d, want a's freed %d", c3[c.Key()].Rule, c1[a.Key()].Rule)
	}
	if r, _ := idx.TakeFresh(); len(r) != 1 || r[0] != c3[c.Key()].Rule {
		t.Errorf("fresh rules %v, want [%d]", r, c3[c.Key()].Rule)
	}
}
