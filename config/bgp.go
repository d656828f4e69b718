package config

import (
	"errors"
	"math"
	"net/netip"
	"slices"
	"time"

	"github.com/xlbproject/xlb/bgp"
)

// BGP is the [bgp] table: the speaker that announces the VIPs to the
// routers (package bgp). Its zero value, a file without [bgp], announces
// nothing and opens no session.
type BGP struct {
	// Speaker is asn, router_id, listen_port and the [[bgp.peer]] tables,
	// as package bgp takes them (defaults left zero: bgp applies them).
	Speaker bgp.Config
	// Drain is how long a stopping xlb keeps forwarding after it has
	// withdrawn every route, while the routers move flows away.
	Drain time.Duration
	// Communities and MED are every VIP's route attributes unless its
	// [vip.bgp] sets them; VIP.BGP holds the resolved ones.
	Communities []bgp.Community
	MED         uint32
}

// Enabled reports whether the file has a [bgp] table.
func (b BGP) Enabled() bool { return b.Speaker.ASN != 0 }

// VIPBGP is a VIP's route attributes: its [vip.bgp] over [bgp]'s defaults.
// Always resolved after Parse; VIPs with the same address (one route) have
// the same.
type VIPBGP struct {
	Communities []bgp.Community
	MED         uint32
}

// DefaultBGPDrain is bgp.drain's default: long enough for routers a hop
// away to process a withdrawal, short enough for a rolling restart.
const DefaultBGPDrain = 5 * time.Second

// MaxBGPDrain bounds bgp.drain: a stop must not hang for ever.
const MaxBGPDrain = 10 * time.Minute

var bgpKeys = []string{"asn", "router_id", "listen_port", "drain", "communities", "med", "peer"}

var bgpPeerKeys = []string{"address", "asn", "port", "hold_time", "connect_retry", "password", "next_hop", "next_hop6"}

var vipBGPKeys = []string{"communities", "med"}

// vipBGPDecl is what a [vip.bgp] table sets; resolved in validateBGP.
type vipBGPDecl struct {
	communities    []bgp.Community
	hasCommunities bool
	med            uint32
	hasMED         bool
}

// bgp decodes [bgp]. Only types and plain ranges are checked here; what
// the speaker needs is bgp.Config.Validate's job (see validateBGP).
func (d *decoder) bgp(b *BGP, path string, t map[string]any) {
	b.Drain = DefaultBGPDrain
	d.required(t, path, "asn", "router_id")
	d.fields(path, t, bgpKeys, func(name, key string, v any) {
		switch name {
		case "asn":
			d.u32(&b.Speaker.ASN, key, v, "ASN", 0, math.MaxUint32)
		case "router_id":
			if s, ok := d.str(key, v); ok {
				a, err := netip.ParseAddr(s)
				if err != nil {
					d.errorf(key, "%q is not an IPv4 address", s)
					return
				}
				b.Speaker.RouterID = a
			}
		case "listen_port":
			if n, ok := d.integer(key, v, "port", 0, math.MaxUint16); ok {
				b.Speaker.ListenPort = uint16(n)
			}
		case "drain":
			if t, ok := d.duration(key, v, "drain", 0, MaxBGPDrain); ok {
				b.Drain = t
			}
		case "communities":
			b.Communities, _ = d.communities(key, v)
		case "med":
			d.u32(&b.MED, key, v, "MED", 0, math.MaxUint32)
		case "peer":
			if ts, ok := d.tables(key, v); ok {
				for i, pt := range ts {
					b.Speaker.Peers = append(b.Speaker.Peers, d.bgpPeer(indexKey(key, i), pt))
				}
			}
		}
	})
}

func (d *decoder) bgpPeer(path string, t map[string]any) bgp.Peer {
	var p bgp.Peer
	d.required(t, path, "address", "asn")
	d.fields(path, t, bgpPeerKeys, func(name, key string, v any) {
		switch name {
		case "address":
			p.Address, _ = d.addr(key, v)
		case "asn":
			d.u32(&p.ASN, key, v, "ASN", 0, math.MaxUint32)
		case "port":
			if n, ok := d.integer(key, v, "port", 1, math.MaxUint16); ok {
				p.Port = uint16(n)
			}
		case "hold_time":
			p.HoldTime, _ = d.duration(key, v, "hold time", 0, math.MaxInt64)
		case "connect_retry":
			p.ConnectRetry, _ = d.duration(key, v, "connect retry", 0, math.MaxInt64)
		case "password":
			p.Password, _ = d.str(key, v)
		case "next_hop":
			p.NextHop, _ = d.nextHop(key, v, true)
		case "next_hop6":
			p.NextHop6, _ = d.nextHop(key, v, false)
		}
	})
	return p
}

// nextHop parses a peer's next hop of one family (want4: IPv4).
func (d *decoder) nextHop(key string, v any, want4 bool) (netip.Addr, bool) {
	a, ok := d.addr(key, v)
	if !ok {
		return a, false
	}
	if a.Is4() != want4 {
		want, other := "IPv4", "next_hop6"
		if !want4 {
			want, other = "IPv6", "next_hop"
		}
		d.errorf(key, "%s is not an %s address (an %s next hop is %s)", a, want, family(a), other)
		return netip.Addr{}, false
	}
	return a, true
}

func (d *decoder) vipBGP(path string, t map[string]any) *vipBGPDecl {
	var decl vipBGPDecl
	d.fields(path, t, vipBGPKeys, func(name, key string, v any) {
		switch name {
		case "communities":
			decl.communities, decl.hasCommunities = d.communities(key, v)
		case "med":
			if n, ok := d.integer(key, v, "MED", 0, math.MaxUint32); ok {
				decl.med, decl.hasMED = uint32(n), true
			}
		}
	})
	return &decl
}

// communities parses ["65001:100", ...]; a community listed twice is
// refused, as the speaker would refuse the route.
func (d *decoder) communities(key string, v any) ([]bgp.Community, bool) {
	a, ok := v.([]any)
	if !ok {
		d.errorf(key, "expected an array of \"ASN:VALUE\" strings, got %s", typeName(v))
		return nil, false
	}
	out := make([]bgp.Community, 0, len(a))
	for i, e := range a {
		ek := indexKey(key, i)
		s, ok := d.str(ek, e)
		if !ok {
			return nil, false
		}
		c, err := bgp.ParseCommunity(s)
		if err != nil {
			d.errorf(ek, "%q: want ASN:VALUE with both from 0 to 65535", s)
			return nil, false
		}
		if slices.Contains(out, c) {
			d.errorf(ek, "community %s listed twice", c)
			return nil, false
		}
		out = append(out, c)
	}
	return out, true
}

// validateBGP checks the speaker's settings with bgp.Config.Validate (its
// FieldError keys are those under [bgp]) and resolves every VIP's route
// attributes.
func (d *decoder) validateBGP(c *Config) {
	if d.hasBGP {
		var fe *bgp.FieldError
		for _, err := range unjoin(c.BGP.Speaker.Validate()) {
			if errors.As(err, &fe) {
				d.errorf("bgp."+fe.Key, "%s", fe.Msg)
			} else {
				d.errorf("bgp", "%v", err)
			}
		}
	}
	routes := map[netip.Addr]int{} // address -> first VIP index
	for i := range c.VIPs {
		v := &c.VIPs[i]
		key := indexKey("vip", i)
		v.BGP = VIPBGP{Communities: c.BGP.Communities, MED: c.BGP.MED}
		if decl := d.vipBGPs[key]; decl != nil {
			if !d.hasBGP {
				d.errorf(key+".bgp", "[vip.bgp] needs a [bgp] table: nothing is announced without one")
				continue
			}
			if decl.hasCommunities {
				v.BGP.Communities = decl.communities
			}
			if decl.hasMED {
				v.BGP.MED = decl.med
			}
		}
		if j, seen := routes[v.Address]; seen {
			o := c.VIPs[j].BGP
			if o.MED != v.BGP.MED || !slices.Equal(o.Communities, v.BGP.Communities) {
				d.errorf(d.blame(key+".bgp", key), "vip[%d] has the same address, so the same route: its communities and med must agree", j)
			}
			continue
		}
		routes[v.Address] = i
	}
}

// unjoin splits an errors.Join result into its errors.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}
