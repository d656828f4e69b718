package firewall

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Proto is a VIP's IP protocol number (6 TCP, 17 UDP).
type Proto uint8

// The protocols a VIP may have.
const (
	TCP Proto = 6
	UDP Proto = 17
)

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return strconv.Itoa(int(p))
}

// VIP names a VIP as the config does: address, port (0: every port) and
// protocol. The zero VIP is the global scope.
type VIP struct {
	Addr  netip.Addr
	Port  uint16
	Proto Proto
}

// Global reports whether v is the global scope.
func (v VIP) Global() bool { return !v.Addr.IsValid() }

func (v VIP) String() string {
	if v.Global() {
		return "global"
	}
	return fmt.Sprintf("%s/%s", netip.AddrPortFrom(v.Addr, v.Port), v.Proto)
}

// ParseVIP parses "ADDR:PORT/PROTO" ("198.18.100.1:80/tcp",
// "[2001:db8::1]:443/udp"); the empty string is the global scope.
func ParseVIP(s string) (VIP, error) {
	if s == "" || s == "global" {
		return VIP{}, nil
	}
	ap, proto, ok := strings.Cut(s, "/")
	if !ok {
		return VIP{}, fmt.Errorf("VIP %q: want ADDR:PORT/PROTO, e.g. 198.18.100.1:80/tcp", s)
	}
	a, err := netip.ParseAddrPort(ap)
	if err != nil {
		return VIP{}, fmt.Errorf("VIP %q: %w", s, err)
	}
	if a.Addr().Zone() != "" {
		return VIP{}, fmt.Errorf("VIP %q: an address with a zone is no VIP", s)
	}
	v := VIP{Addr: a.Addr().Unmap(), Port: a.Port()}
	switch proto {
	case "tcp":
		v.Proto = TCP
	case "udp":
		v.Proto = UDP
	default:
		return VIP{}, fmt.Errorf("VIP %q: protocol %q: want tcp or udp", s, proto)
	}
	return v, nil
}

// Action is what a rule does with the sources it covers.
type Action uint8

// The actions.
const (
	Allow Action = iota + 1
	Deny
)

func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	}
	return "invalid"
}

// ParseAction parses "allow" or "deny".
func ParseAction(s string) (Action, error) {
	switch s {
	case "allow":
		return Allow, nil
	case "deny":
		return Deny, nil
	}
	return 0, fmt.Errorf("action %q: want allow or deny", s)
}

// Origin is where a rule came from.
type Origin uint8

// The origins.
const (
	File Origin = iota + 1
	Runtime
)

func (o Origin) String() string {
	switch o {
	case File:
		return "file"
	case Runtime:
		return "runtime"
	}
	return "invalid"
}

// ParsePrefix parses a source prefix: "198.18.0.0/16", "2001:db8::/32",
// or a bare address (a /32 or /128). Host bits must be zero, so a typo
// such as 198.18.1.0/16 is an error instead of a wider rule than meant.
func ParsePrefix(s string) (netip.Prefix, error) {
	if !strings.Contains(s, "/") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("prefix %q: %w", s, err)
		}
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("prefix %q: zones are not allowed", s)
		}
		a = a.Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("prefix %q: %w", s, err)
	}
	if p.Addr().Is4In6() {
		return netip.Prefix{}, fmt.Errorf("prefix %q: write an IPv4-mapped prefix as IPv4", s)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fmt.Errorf("prefix %q has host bits set (the prefix is %v)", s, m)
	}
	return p, nil
}

// Rule is one firewall rule.
type Rule struct {
	VIP    VIP // the zero VIP: global
	Prefix netip.Prefix
	Action Action
	Origin Origin
	// Expires is when a runtime rule ends; zero: never.
	Expires time.Time
}

// Key identifies a rule: one rule per scope and prefix.
type Key struct {
	VIP    VIP
	Prefix netip.Prefix
}

// Key returns the rule's key.
func (r Rule) Key() Key { return Key{r.VIP, r.Prefix} }

func (r Rule) String() string {
	s := fmt.Sprintf("%s %s %s", r.VIP, r.Prefix, r.Action)
	if !r.Expires.IsZero() {
		s += " until " + r.Expires.UTC().Format(time.RFC3339)
	}
	return s
}

// Check reports what is wrong with the rule on its own: a global allow, a
// prefix of the other family than its VIP.
func (r Rule) Check() error {
	switch {
	case !r.Prefix.IsValid():
		return fmt.Errorf("rule %v: no prefix", r)
	case r.Action != Allow && r.Action != Deny:
		return fmt.Errorf("rule %v: invalid action", r)
	case r.VIP.Global() && r.Action != Deny:
		return fmt.Errorf("rule %v: global rules deny; an allow rule belongs to a VIP (--vip)", r)
	case !r.VIP.Global() && r.VIP.Addr.Is4() != r.Prefix.Addr().Is4():
		return fmt.Errorf("rule %v: the prefix is not of the VIP's address family", r)
	}
	return nil
}

// MaxTTL bounds a runtime rule's time to live.
const MaxTTL = 365 * 24 * time.Hour

// ParseRule parses a rule from the control socket's words: vip ("" for
// global), prefix, action and ttl ("" or "0" for none, else a Go
// duration). now is the time the ttl counts from.
func ParseRule(vip, prefix, action, ttl string, now time.Time) (Rule, error) {
	v, err := ParseVIP(vip)
	if err != nil {
		return Rule{}, err
	}
	p, err := ParsePrefix(prefix)
	if err != nil {
		return Rule{}, err
	}
	a, err := ParseAction(action)
	if err != nil {
		return Rule{}, err
	}
	r := Rule{VIP: v, Prefix: p, Action: a, Origin: Runtime}
	if ttl != "" && ttl != "0" {
		d, err := time.ParseDuration(ttl)
		if err != nil {
			return Rule{}, fmt.Errorf("ttl %q: %w", ttl, err)
		}
		if d <= 0 || d > MaxTTL {
			return Rule{}, fmt.Errorf("ttl %q: want a duration above 0 and at most %v", ttl, MaxTTL)
		}
		r.Expires = now.Add(d)
	}
	return r, r.Check()
}
