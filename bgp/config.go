package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// Config is the whole speaker: who it is and whom it peers with. The zero
// values of the optional fields are the defaults documented on each.
type Config struct {
	// ASN is the local autonomous system number (1 to 4294967294; 4-byte
	// ASNs are sent with the RFC 6793 capability).
	ASN uint32
	// RouterID is the BGP identifier, an IPv4 address unique among the
	// peers' neighbours (usually the balancer's IPv4 address).
	RouterID netip.Addr
	// ListenPort makes the speaker accept sessions on that TCP port too.
	// Zero (the default) means it does not listen at all and only dials its
	// peers: a balancer needs no inbound BGP, binding 179 would clash with a
	// routing daemon on the same host, and a closed port is no attack
	// surface. The router must then accept the balancer's connections.
	ListenPort uint16
	// Peers are the routers. Each Address appears once.
	Peers []Peer
}

// Peer is one BGP neighbour, normally a datacenter router (a top-of-rack
// switch) that installs the balancers' routes as ECMP next hops.
type Peer struct {
	// Address is the router's address on the shared segment; the session
	// is direct (TTL 1 for eBGP), as between a host and its ToR.
	Address netip.Addr
	// ASN is the router's AS; equal to Config.ASN makes the session iBGP.
	ASN uint32
	// Port is the router's TCP port; zero means 179.
	Port uint16
	// HoldTime is proposed in the OPEN message; the session uses the
	// smaller of both sides. Zero means 90s; otherwise whole seconds from
	// 3s to 65535s (RFC 4271 allows no values from 1s to 2s).
	HoldTime time.Duration
	// ConnectRetry is the pause between connection attempts; zero means
	// 5s (whole seconds, 1s to 65535s). A short pause matters because a
	// balancer that starts before its router should not stay dark for
	// gobgp's default of two minutes.
	ConnectRetry time.Duration
	// Password enables TCP MD5 signatures (RFC 2385) on the session.
	Password string
	// NextHop and NextHop6 are the next hops advertised to this peer for
	// IPv4 and IPv6 routes. An unset next hop of the session's own family
	// is the local address of the session (what ECMP on a shared segment
	// needs); a session carries routes of the other family only when that
	// family's next hop is set, since it has no local address of it.
	NextHop, NextHop6 netip.Addr
}

// Defaults applied to a Peer's zero values.
const (
	DefaultPort         = 179
	DefaultHoldTime     = 90 * time.Second
	DefaultConnectRetry = 5 * time.Second
	minHoldTime         = 3 * time.Second
	maxTimer            = 65535 * time.Second
)

// FieldError is one invalid setting. Key names it as the [bgp] table of
// the TOML file does ("peer[1].hold_time"), so the config package can turn
// it into FILE:LINE: KEY.
type FieldError struct {
	Key string
	Msg string
}

func (e *FieldError) Error() string { return "bgp: " + e.Key + ": " + e.Msg }

// Validate checks c and returns every problem, each a *FieldError, joined
// with errors.Join (nil when c is usable).
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, &FieldError{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	if err := checkASN(c.ASN); err != nil {
		bad("asn", "%v", err)
	}
	if !c.RouterID.Is4() || c.RouterID.IsUnspecified() {
		bad("router_id", "%v: want a non-zero IPv4 address", addrText(c.RouterID))
	}
	seen := make(map[netip.Addr]int, len(c.Peers))
	for i, p := range c.Peers {
		key := func(k string) string { return "peer[" + strconv.Itoa(i) + "]." + k }
		switch {
		case !p.Address.IsValid() || p.Address.IsUnspecified() || p.Address.IsMulticast() || p.Address.Is4In6():
			bad(key("address"), "%v: want a unicast IPv4 or IPv6 address", addrText(p.Address))
		case p.Address.Zone() != "" || p.Address.Is6() && p.Address.IsLinkLocalUnicast():
			bad(key("address"), "%v: link-local peers are not supported", p.Address)
		default:
			if j, dup := seen[p.Address]; dup {
				bad(key("address"), "%v already used by peer[%d]", p.Address, j)
			}
			seen[p.Address] = i
		}
		if err := checkASN(p.ASN); err != nil {
			bad(key("asn"), "%v", err)
		}
		if p.HoldTime != 0 && (p.HoldTime < minHoldTime || p.HoldTime > maxTimer || p.HoldTime%time.Second != 0) {
			bad(key("hold_time"), "%v: want whole seconds from 3s to 65535s (0 means %v)", p.HoldTime, DefaultHoldTime)
		}
		if p.ConnectRetry != 0 && (p.ConnectRetry < time.Second || p.ConnectRetry > maxTimer || p.ConnectRetry%time.Second != 0) {
			bad(key("connect_retry"), "%v: want whole seconds from 1s to 65535s (0 means %v)", p.ConnectRetry, DefaultConnectRetry)
		}
		if len(p.Password) > 80 { // TCP_MD5SIG_MAXKEYLEN
			bad(key("password"), "%d bytes, at most 80", len(p.Password))
		}
		if p.NextHop.IsValid() && (!p.NextHop.Is4() || p.NextHop.IsUnspecified() || p.NextHop.IsMulticast()) {
			bad(key("next_hop"), "%v: want a unicast IPv4 address", p.NextHop)
		}
		if p.NextHop6.IsValid() && (!p.NextHop6.Is6() || p.NextHop6.Is4In6() || p.NextHop6.IsUnspecified() || p.NextHop6.IsMulticast() || p.NextHop6.IsLinkLocalUnicast() || p.NextHop6.Zone() != "") {
			bad(key("next_hop6"), "%v: want a global unicast IPv6 address", p.NextHop6)
		}
	}
	return errors.Join(errs...)
}

func checkASN(asn uint32) error {
	// 0 is reserved (RFC 7607), 4294967295 too (RFC 7300); AS_TRANS
	// 23456 is only a placeholder for 4-byte ASNs in 2-byte fields.
	if asn == 0 || asn == 23456 || asn == 4294967295 {
		return fmt.Errorf("%d is reserved: want 1 to 4294967294 except 23456", asn)
	}
	return nil
}

func addrText(a netip.Addr) string {
	if !a.IsValid() {
		return "missing"
	}
	return a.String()
}

// withDefaults returns p with its zero values replaced by the defaults.
func (p Peer) withDefaults() Peer {
	if p.Port == 0 {
		p.Port = DefaultPort
	}
	if p.HoldTime == 0 {
		p.HoldTime = DefaultHoldTime
	}
	if p.ConnectRetry == 0 {
		p.ConnectRetry = DefaultConnectRetry
	}
	return p
}

// carries4 and carries6 say which families the session negotiates: its
// own, and the other one only with a next hop of that family to give.
func (p Peer) carries4() bool { return p.Address.Is4() || p.NextHop.IsValid() }
func (p Peer) carries6() bool { return p.Address.Is6() || p.NextHop6.IsValid() }

// Community is a standard BGP community (RFC 1997), written "ASN:VALUE"
// with two 16-bit halves.
type Community uint32

// ParseCommunity parses "65000:100".
func ParseCommunity(s string) (Community, error) {
	hi, lo, ok := strings.Cut(s, ":")
	if ok {
		h, err1 := strconv.ParseUint(hi, 10, 16)
		l, err2 := strconv.ParseUint(lo, 10, 16)
		if err1 == nil && err2 == nil {
			return Community(h<<16 | l), nil
		}
	}
	return 0, fmt.Errorf("bgp: community %q: want ASN:VALUE with both from 0 to 65535", s)
}

func (c Community) String() string {
	return strconv.Itoa(int(c>>16)) + ":" + strconv.Itoa(int(c&0xffff))
}

// MarshalText and UnmarshalText use the "ASN:VALUE" form, for TOML and JSON.
func (c Community) MarshalText() ([]byte, error) { return []byte(c.String()), nil }

func (c *Community) UnmarshalText(b []byte) error {
	v, err := ParseCommunity(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}
