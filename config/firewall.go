package config

import (
	"math"
	"net/netip"

	"github.com/xlbproject/xlb/firewall"
)

// Firewall is the [firewall] table: rules for every VIP.
type Firewall struct {
	// Deny lists source prefixes no VIP of their family takes traffic
	// from (a VIP's own allow rule for the same or a longer prefix wins).
	Deny []netip.Prefix
}

// VIPFirewall is a VIP's firewall keys (package firewall has the
// semantics: the most specific prefix wins).
type VIPFirewall struct {
	// Allow, when not empty, is the VIP's allow list: only these sources
	// (and longer prefixes no deny rule covers) reach it.
	Allow []netip.Prefix
	// Deny lists sources that may not reach the VIP.
	Deny []netip.Prefix
	// SYNRateLimit is the most new TCP connections (SYN without ACK) per
	// second each source /32 (IPv4) or /64 (IPv6) may open to the VIP;
	// 0: no limit.
	SYNRateLimit uint32
}

// MaxSYNRateLimit bounds syn_rate_limit: the datapath counts in
// nanoseconds per SYN.
const MaxSYNRateLimit = 1_000_000

var firewallKeys = []string{"deny"}

func (d *decoder) firewall(fw *Firewall, path string, t map[string]any) {
	d.fields(path, t, firewallKeys, func(name, key string, v any) {
		fw.Deny = d.prefixes(key, v)
	})
}

// vipFirewall decodes the VIP keys allow, deny and syn_rate_limit.
func (d *decoder) vipFirewall(fw *VIPFirewall, name, key string, v any) {
	switch name {
	case "allow":
		fw.Allow = d.prefixes(key, v)
	case "deny":
		fw.Deny = d.prefixes(key, v)
	case "syn_rate_limit":
		if n, ok := d.integer(key, v, "SYN rate limit", 0, MaxSYNRateLimit); ok && n <= math.MaxUint32 {
			fw.SYNRateLimit = uint32(n)
		}
	}
}

func (d *decoder) prefixes(key string, v any) []netip.Prefix {
	a, ok := v.([]any)
	if !ok {
		d.errorf(key, "expected an array of prefixes, got %s", typeName(v))
		return nil
	}
	out := make([]netip.Prefix, 0, len(a))
	for i, e := range a {
		s, ok := d.str(indexKey(key, i), e)
		if !ok {
			continue
		}
		p, err := firewall.ParsePrefix(s)
		if err != nil {
			d.errorf(indexKey(key, i), "%v", err)
			continue
		}
		out = append(out, p)
	}
	return out
}

// FirewallVIP is the VIP's name in package firewall.
func (v VIP) FirewallVIP() firewall.VIP {
	return firewall.VIP{Addr: v.Address, Port: v.Port, Proto: firewall.Proto(v.Protocol)}
}

// FirewallRules returns the file's firewall rules: the global deny rules,
// then every VIP's allow and deny rules.
func (c *Config) FirewallRules() []firewall.Rule {
	var out []firewall.Rule
	for _, p := range c.Firewall.Deny {
		out = append(out, firewall.Rule{Prefix: p, Action: firewall.Deny, Origin: firewall.File})
	}
	for _, v := range c.VIPs {
		if v.Forward == Splice {
			continue
		}
		fv := v.FirewallVIP()
		for _, p := range v.Firewall.Allow {
			out = append(out, firewall.Rule{VIP: fv, Prefix: p, Action: firewall.Allow, Origin: firewall.File})
		}
		for _, p := range v.Firewall.Deny {
			out = append(out, firewall.Rule{VIP: fv, Prefix: p, Action: firewall.Deny, Origin: firewall.File})
		}
	}
	return out
}

// FirewallPolicies returns the firewall policy (its SYN limit) of every
// VIP the XDP programs see: not the splice VIPs, whose traffic goes on to
// the kernel's stack and the proxy, so no rule applies to them.
func (c *Config) FirewallPolicies() []firewall.Policy {
	out := make([]firewall.Policy, 0, len(c.VIPs))
	for _, v := range c.VIPs {
		if v.Forward != Splice {
			out = append(out, firewall.Policy{VIP: v.FirewallVIP(), SYNRate: v.Firewall.SYNRateLimit})
		}
	}
	return out
}

// validateFirewall checks each rule against its scope: the VIP's family,
// one rule per prefix and scope, a SYN limit on TCP only; then that the
// whole set fits the datapath's maps.
func (d *decoder) validateFirewall(c *Config) {
	seen := map[netip.Prefix]string{}
	check := func(key string, p netip.Prefix) {
		if first, ok := seen[p]; ok {
			d.errorf(key, "%v is already in %s: one rule per prefix", p, first)
		}
		seen[p] = key
	}
	for i, p := range c.Firewall.Deny {
		check(indexKey("firewall.deny", i), p)
	}
	for i, v := range c.VIPs {
		vk := indexKey("vip", i)
		clear(seen)
		for _, list := range []struct {
			name string
			ps   []netip.Prefix
		}{{"allow", v.Firewall.Allow}, {"deny", v.Firewall.Deny}} {
			for j, p := range list.ps {
				key := indexKey(vk+"."+list.name, j)
				if p.Addr().Is4() != v.Address.Is4() {
					d.errorf(key, "%v is not of the VIP's address family (%s)", p, family(v.Address))
					continue
				}
				check(key, p)
			}
		}
		if v.Firewall.SYNRateLimit > 0 && v.Protocol != TCP {
			d.errorf(vk+".syn_rate_limit", "a SYN rate limit needs protocol = \"tcp\"")
		}
		if v.Forward == Splice {
			for _, k := range []string{"allow", "deny", "syn_rate_limit"} {
				if d.idx.has(vk + "." + k) {
					d.errorf(vk+"."+k, "the firewall runs in XDP, which a splice VIP's traffic does not pass through: filter it in the host's firewall")
				}
			}
		}
	}
	if len(d.errs) > 0 {
		return
	}
	if _, err := firewall.Compile(c.FirewallPolicies(), c.FirewallRules(), firewall.NewIndex()); err != nil {
		key := "firewall.deny"
		if !d.idx.has(key) {
			key = "vip"
		}
		d.errorf(key, "%v", err)
	}
}
