package proxy

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/hash"
	"github.com/xlbproject/xlb/sni"
)

// routing is how a splice VIP picks a connection's backend: the route of
// the server name in its name table, then the backend of the connection's
// flow hash in that route's Maglev table.
type routing struct {
	table  *sni.Table
	maglev []*hash.Table // parallel to the VIP's Routes
}

// newRouting builds v's routing; down says which route backends health
// checks hold down (they get no slots, like drained ones).
func newRouting(v config.VIP, down func(config.Route, config.Backend) bool) (routing, error) {
	rt := routing{maglev: make([]*hash.Table, len(v.Routes))}
	patterns := make([]sni.Pattern, len(v.Routes))
	def := -1
	for i, r := range v.Routes {
		if r.Default {
			def = i // its SNI is the zero Pattern: it matches no name
		}
		patterns[i] = r.SNI
		t, err := config.BuildTable(r.Backends, v.TableSize, func(b config.Backend) bool { return down(r, b) })
		if err != nil {
			return routing{}, fmt.Errorf("route %s: maglev table: %w", r.Name(), err)
		}
		rt.maglev[i] = t
	}
	t, err := sni.NewTable(patterns, def)
	if err != nil {
		return routing{}, err
	}
	rt.table = t
	return rt, nil
}

// pick returns the route of name (-1 if none matches and there is no
// default) and the backend of the connection from client to vip in it (-1
// if the route has no backend up with a weight).
func (rt routing) pick(name []byte, client, vip netip.AddrPort) (route, backend int) {
	ri, _ := rt.table.Match(name)
	if ri < 0 {
		return -1, -1
	}
	h, _ := hash.FlowOf(uint8(config.TCP), client, vip)
	return ri, int(rt.maglev[ri].Lookup(h))
}

// ErrNoRoute is Lookup's error for a name no route of the VIP matches
// (and it has no default route).
var ErrNoRoute = errors.New("no route for the server name")

// Lookup returns the route and backend a connection from src to the splice
// VIP v, whose ClientHello names name ("" for none), is sent to, with every
// backend up as far as health checks go (what `xlb lookup` shows).
func Lookup(v config.VIP, src netip.AddrPort, name string) (config.Route, config.Backend, error) {
	if v.Forward != config.Splice {
		return config.Route{}, config.Backend{}, fmt.Errorf("proxy: lookup: %s is not a splice VIP", v)
	}
	rt, err := newRouting(v, func(config.Route, config.Backend) bool { return false })
	if err != nil {
		return config.Route{}, config.Backend{}, fmt.Errorf("proxy: lookup: vip %s: %w", v, err)
	}
	ri, bi := rt.pick([]byte(name), src, netip.AddrPortFrom(v.Address, v.Port))
	switch {
	case ri < 0:
		return config.Route{}, config.Backend{}, fmt.Errorf("proxy: lookup: vip %s, server name %q: %w (the connection is reset)", v, name, ErrNoRoute)
	case bi < 0:
		r := v.Routes[ri]
		return r, config.Backend{}, fmt.Errorf("proxy: lookup: vip %s route %s: no backend with a weight", v, r.Name())
	}
	return v.Routes[ri], v.Routes[ri].Backends[bi], nil
}
