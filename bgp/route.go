package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// Route is one announcement: a prefix (a VIP as /32 or /128) with its
// optional path attributes.
type Route struct {
	Prefix netip.Prefix
	// Communities are attached in this order; duplicates are refused.
	Communities []Community
	// MED is the MULTI_EXIT_DISC; zero sends none, which routers compare
	// as zero anyway (RFC 4271 9.1.2.2).
	MED uint32
}

// check reports why r cannot be announced.
func (r Route) check() error {
	p := r.Prefix
	if !p.IsValid() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
		return fmt.Errorf("bgp: route %v: want an IPv4 or IPv6 prefix", p)
	}
	if p.Masked() != p {
		return fmt.Errorf("bgp: route %v: host bits set (want %v)", p, p.Masked())
	}
	for i, c := range r.Communities {
		if slices.Contains(r.Communities[:i], c) {
			return fmt.Errorf("bgp: route %v: community %v listed twice", p, c)
		}
	}
	return nil
}

// equal reports whether r and o announce the same thing.
func (r Route) equal(o Route) bool {
	return r.Prefix == o.Prefix && r.MED == o.MED && slices.Equal(r.Communities, o.Communities)
}

// routeSet is what is announced, by prefix.
type routeSet map[netip.Prefix]Route

// newRouteSet checks routes and indexes them; a prefix may appear once.
func newRouteSet(routes []Route) (routeSet, error) {
	set := make(routeSet, len(routes))
	var errs []error
	for _, r := range routes {
		if err := r.check(); err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := set[r.Prefix]; dup {
			errs = append(errs, fmt.Errorf("bgp: route %v listed twice", r.Prefix))
			continue
		}
		r.Communities = slices.Clone(r.Communities)
		set[r.Prefix] = r
	}
	return set, errors.Join(errs...)
}

// diff returns what turns from into to: the routes to announce (new, or
// with changed attributes: re-announcing replaces the old path, so no
// withdraw goes first and the route never flaps) and the prefixes to
// withdraw. Both are sorted, so the order of updates is reproducible.
func diff(from, to routeSet) (announce []Route, withdraw []netip.Prefix) {
	for p, r := range to {
		if old, ok := from[p]; !ok || !old.equal(r) {
			announce = append(announce, r)
		}
	}
	for p := range from {
		if _, ok := to[p]; !ok {
			withdraw = append(withdraw, p)
		}
	}
	slices.SortFunc(announce, func(a, b Route) int { return comparePrefix(a.Prefix, b.Prefix) })
	slices.SortFunc(withdraw, comparePrefix)
	return announce, withdraw
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
