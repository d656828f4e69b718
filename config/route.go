package config

import (
	"net"
	"net/netip"
	"time"

	"github.com/xlbproject/xlb/sni"
)

// Splice VIPs: forward = "splice" routes each TCP connection by the server
// name of its TLS ClientHello to the backends of one of the VIP's
// [[vip.route]]s. The balancer's kernel stack accepts the connection on the
// VIP (the steering program leaves the VIP's packets to it), xlb reads the
// ClientHello, connects to the backend the route's Maglev table picks and
// copies both directions.

// Route is one [[vip.route]] of a splice VIP.
type Route struct {
	// SNI is the server names the route takes: an exact name or a
	// one-level wildcard. Zero for the default route.
	SNI sni.Pattern
	// Default: the route takes connections whose server name no other
	// route matches, or that send none. At most one per VIP.
	Default bool
	// Backends as a VIP's: weights, drain state, health (over the
	// route's [vip.route.health], over the VIP's), one Maglev table of
	// the VIP's table_size. Static MACs do not apply: the kernel routes
	// the proxy's connections.
	Backends []Backend
}

// Name is how messages and counters name the route: its pattern, or
// "default".
func (r Route) Name() string {
	if r.Default {
		return "default"
	}
	return r.SNI.String()
}

// SpliceSettings are the settings of a splice VIP's proxy, defaults filled in.
type SpliceSettings struct {
	// HelloTimeout bounds the wait for the whole ClientHello after the
	// connection is accepted; a client that sends nothing is reset and
	// counted as timeout.
	HelloTimeout time.Duration
	// HelloMaxBytes bounds the ClientHello's records, headers included;
	// a larger one is reset and counted as too_large.
	HelloMaxBytes int
	// ConnectTimeout bounds the connection to the backend.
	ConnectTimeout time.Duration
	// IdleTimeout resets a proxied connection that moved no byte in either
	// direction for that long.
	IdleTimeout time.Duration
}

// Defaults and bounds of the splice keys.
const (
	DefaultHelloTimeout   = 5 * time.Second
	DefaultHelloMaxBytes  = sni.RecordHeader + sni.MaxRecord // one full record
	DefaultConnectTimeout = 5 * time.Second
	DefaultIdleTimeout    = 5 * time.Minute

	MinHelloMaxBytes = 512 // smaller than any real ClientHello with a name
	MaxHelloMaxBytes = 1 << 16
	MinSpliceTimeout = 10 * time.Millisecond
	MaxHelloTimeout  = time.Minute
	MaxIdleTimeout   = 24 * time.Hour
)

// DefaultSpliceSettings returns the splice settings of a VIP whose file sets none.
func DefaultSpliceSettings() SpliceSettings {
	return SpliceSettings{
		HelloTimeout:   DefaultHelloTimeout,
		HelloMaxBytes:  DefaultHelloMaxBytes,
		ConnectTimeout: DefaultConnectTimeout,
		IdleTimeout:    DefaultIdleTimeout,
	}
}

// spliceKeys are the [[vip]] keys only a splice VIP takes.
var spliceKeys = []string{"route", "hello_timeout", "hello_max_bytes", "connect_timeout", "idle_timeout"}

var routeKeys = []string{"sni", "default", "health", "backend"}

// spliceKey decodes one of spliceKeys of the VIP at path.
func (d *decoder) spliceKey(v *VIP, path, name, key string, val any) {
	switch name {
	case "route":
		if ts, ok := d.tables(key, val); ok {
			for i, t := range ts {
				v.Routes = append(v.Routes, d.route(indexKey(key, i), t))
			}
		}
	case "hello_timeout":
		if t, ok := d.duration(key, val, "hello timeout", MinSpliceTimeout, MaxHelloTimeout); ok {
			v.Splice.HelloTimeout = t
		}
	case "hello_max_bytes":
		if n, ok := d.integer(key, val, "hello size", MinHelloMaxBytes, MaxHelloMaxBytes); ok {
			v.Splice.HelloMaxBytes = int(n)
		}
	case "connect_timeout":
		if t, ok := d.duration(key, val, "connect timeout", MinSpliceTimeout, MaxHelloTimeout); ok {
			v.Splice.ConnectTimeout = t
		}
	case "idle_timeout":
		if t, ok := d.duration(key, val, "idle timeout", time.Second, MaxIdleTimeout); ok {
			v.Splice.IdleTimeout = t
		}
	}
}

func (d *decoder) route(path string, t map[string]any) Route {
	var r Route
	d.fields(path, t, routeKeys, func(name, key string, v any) {
		switch name {
		case "sni":
			if s, ok := d.str(key, v); ok {
				p, err := sni.ParsePattern(s)
				if err != nil {
					d.errorf(key, "%v", err)
					return
				}
				r.SNI = p
			}
		case "default":
			r.Default, _ = d.boolean(key, v)
		case "health", "backend":
			d.healthOrBackends(path, name, key, v, &r.Backends)
		}
	})
	return r
}

// validateSplice checks the splice keys of c.VIPs[i] and resolves its
// routes' health checks.
func (d *decoder) validateSplice(c *Config, i int) {
	v := &c.VIPs[i]
	key := indexKey("vip", i)
	if v.Forward != Splice {
		for _, k := range spliceKeys {
			if d.idx.has(key + "." + k) {
				d.errorf(key+"."+k, "%s is only used with forward = \"splice\" (forward is %q)", k, v.Forward)
			}
		}
		return
	}
	switch {
	case v.Protocol != TCP:
		d.errorf(d.blame(key+".protocol", key+".forward"), "forward = \"splice\" routes TLS over TCP: protocol must be \"tcp\"")
	case v.Port == 0:
		d.errorf(key+".port", "forward = \"splice\" needs a port to accept connections on (port = 0 serves every port)")
	}
	if len(v.Backends) > 0 {
		d.errorf(indexKey(key+".backend", 0), "a splice VIP's backends belong to its routes: write them as [[vip.route.backend]]")
	}
	if len(v.Routes) == 0 {
		d.errorf(key, "splice vip has no route: add [[vip.route]] with sni = \"NAME\" (or default = true) and its backends")
	}
	// A port-0 VIP on the same address and protocol is steered into the
	// datapath, and would take this VIP's packets with it.
	for j, o := range c.VIPs {
		if j != i && o.Address == v.Address && o.Protocol == v.Protocol && o.Port == 0 {
			d.errorf(key+".address", "vip[%d] (%s) takes every port of %s into the datapath, this splice VIP's too: give it a port or another address", j, o, v.Address)
		}
	}
	patterns := map[sni.Pattern]int{}
	def := -1
	for j := range v.Routes {
		r := &v.Routes[j]
		rk := indexKey(key+".route", j)
		switch {
		case r.Default && d.idx.has(rk+".sni"):
			d.errorf(rk+".sni", "a default route takes every server name no other route matches: it has no sni")
		case r.Default && def >= 0:
			d.errorf(rk+".default", "%s.route[%d] is already the default route", key, def)
		case r.Default:
			def = j
		case !d.idx.has(rk + ".sni"):
			d.errorf(d.blame(rk+".default", rk), "route has no sni: set sni = \"NAME\" or \"*.DOMAIN\", or default = true")
		case r.SNI.Name != "": // else the pattern was refused already
			if k, dup := patterns[r.SNI]; dup {
				d.errorf(rk+".sni", "%s is already %s.route[%d]", r.SNI, key, k)
			}
			patterns[r.SNI] = j
		}
		if len(r.Backends) == 0 {
			d.errorf(rk, "route has no backend")
		}
		if uint32(len(r.Backends)) > v.TableSize {
			d.errorf(rk, "%d backends do not fit a Maglev table of %d slots", len(r.Backends), v.TableSize)
		}
		backends := make(map[netip.Addr]int, len(r.Backends))
		rh := d.health[rk]
		routeHealth := rh.apply(v.Health)
		if rh != nil {
			d.checkHealth(rh, routeHealth)
		}
		for k := range r.Backends {
			b := &r.Backends[k]
			bk := indexKey(rk+".backend", k)
			if o, dup := backends[b.Address]; dup {
				d.errorf(bk+".address", "%s is already %s", b.Address, indexKey(rk+".backend", o))
			}
			backends[b.Address] = k
			if b.Address == v.Address {
				d.errorf(bk+".address", "%s is the VIP's own address: the proxy would connect to itself", b.Address)
			}
			if b.HasMAC {
				d.errorf(bk+".mac", "forward = \"splice\" connects to backends through the kernel's routes: a static next hop does not apply")
			}
			bh := d.health[bk]
			b.Health = bh.apply(routeHealth)
			if bh != nil {
				d.checkHealth(bh, b.Health)
			}
		}
	}
}

// checkSpliceLocal checks that every splice VIP is an address of this
// network namespace: the kernel's TCP stack accepts its connections, and
// it does so only for a local address. xlb does not add the address
// itself: where and how it is configured (lo, the interface, a
// netplan/networkd file) is the operator's, as it is for a DSR backend's
// VIP, and an address xlb added would outlive a crashed xlb.
func (c *Config) checkSpliceLocal() error {
	var local map[netip.Addr]bool
	for i, v := range c.VIPs {
		if v.Forward != Splice {
			continue
		}
		if local == nil {
			addrs, err := net.InterfaceAddrs()
			if err != nil {
				return c.Errorf(indexKey("vip", i)+".address", "list this host's addresses: %v", err)
			}
			local = map[netip.Addr]bool{}
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok {
					if ip, ok := netip.AddrFromSlice(n.IP); ok {
						local[ip.Unmap()] = true
					}
				}
			}
		}
		if !local[v.Address] {
			bits := 32
			if v.Address.Is6() {
				bits = 128
			}
			return c.Errorf(indexKey("vip", i)+".address",
				"%s is not an address of this host: a splice VIP's connections are accepted by the balancer's own TCP stack; add it, e.g. ip address add %s/%d dev lo",
				v.Address, v.Address, bits)
		}
	}
	return nil
}

// healthOrBackends decodes the two keys a VIP and a splice route share: the
// health table of what is at path, or its backend tables, appended to
// backends.
func (d *decoder) healthOrBackends(path, name, key string, val any, backends *[]Backend) {
	if name == "health" {
		if ht, ok := d.table(key, val); ok {
			d.health[path] = d.healthTable(key, ht)
		}
		return
	}
	if ts, ok := d.tables(key, val); ok {
		for i, bt := range ts {
			*backends = append(*backends, d.backend(indexKey(key, i), bt))
		}
	}
}
