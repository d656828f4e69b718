package config

import (
	"math"
	"time"

	"github.com/xlbproject/xlb/health"
)

var healthKeys = []string{"kind", "port", "path", "host", "expect", "interval", "timeout", "rise", "fall"}

// healthDecl is one health table as the file writes it: the keys it sets
// with a valid value, and those values. A VIP's table applies over the
// defaults, a backend's over its VIP's resolved check.
type healthDecl struct {
	path string          // "vip[0].health", "vip[0].backend[1].health"
	set  map[string]bool // keys set with a valid value
	hc   HealthCheck     // their values; the other fields are zero
}

func (d *decoder) healthTable(path string, t map[string]any) *healthDecl {
	h := &healthDecl{path: path, set: make(map[string]bool)}
	d.fields(path, t, healthKeys, func(name, key string, v any) {
		var ok bool
		switch name {
		case "kind":
			h.hc.Kind, ok = d.oneOf(key, v, HealthNone, HealthTCP, HealthHTTP)
		case "port":
			var n int64
			if n, ok = d.integer(key, v, "port", 1, math.MaxUint16); ok {
				h.hc.Port = uint16(n)
			}
		case "path":
			if h.hc.Path, ok = d.str(key, v); ok {
				if health.CheckPath(h.hc.Path) != nil {
					d.errorf(key, "%q is not an absolute path of at most %d printable ASCII characters without spaces", h.hc.Path, health.MaxPath)
					ok = false
				}
			}
		case "host":
			if h.hc.Host, ok = d.str(key, v); ok && !health.ValidHost(h.hc.Host) {
				d.errorf(key, "%q is not a host name or address with an optional port", h.hc.Host)
				ok = false
			}
		case "expect":
			var n int64
			if n, ok = d.integer(key, v, "HTTP status", 100, 599); ok {
				h.hc.Expect = int(n)
			}
		case "interval":
			h.hc.Interval, ok = d.duration(key, v, "interval", MinHealthInterval, MaxHealthInterval)
		case "timeout":
			h.hc.Timeout, ok = d.duration(key, v, "timeout", time.Millisecond, MaxHealthInterval)
		case "rise", "fall":
			var n int64
			if n, ok = d.integer(key, v, name, 1, MaxHealthThreshold); ok {
				if name == "rise" {
					h.hc.Rise = int(n)
				} else {
					h.hc.Fall = int(n)
				}
			}
		}
		if ok {
			h.set[name] = true
		}
	})
	return h
}

// apply returns base with the keys h sets replaced (h may be nil: base as
// is), normalised: an HTTP check gets the default path and status if it has
// none, and the other kinds carry no HTTP fields, so that two checks that
// probe the same way compare equal.
func (h *healthDecl) apply(base HealthCheck) HealthCheck {
	hc := base
	if h != nil {
		for name := range h.set {
			switch name {
			case "kind":
				hc.Kind = h.hc.Kind
			case "port":
				hc.Port = h.hc.Port
			case "path":
				hc.Path = h.hc.Path
			case "host":
				hc.Host = h.hc.Host
			case "expect":
				hc.Expect = h.hc.Expect
			case "interval":
				hc.Interval = h.hc.Interval
			case "timeout":
				hc.Timeout = h.hc.Timeout
			case "rise":
				hc.Rise = h.hc.Rise
			case "fall":
				hc.Fall = h.hc.Fall
			}
		}
	}
	if hc.Kind == HealthHTTP {
		if hc.Path == "" {
			hc.Path = DefaultHealthPath
		}
		if hc.Expect == 0 {
			hc.Expect = DefaultHealthExpect
		}
	} else {
		hc.Path, hc.Host, hc.Expect = "", "", 0
	}
	return hc
}

// checkHealth checks the resolved check hc of table h for what its keys
// cannot tell alone. A disagreement is reported only by a table that sets
// one of the keys involved: one inherited from the VIP is the VIP's error.
func (d *decoder) checkHealth(h *healthDecl, hc HealthCheck) {
	sets := func(names ...string) bool {
		for _, n := range names {
			if h.set[n] {
				return true
			}
		}
		return false
	}
	if hc.Kind != HealthNone && hc.Port == 0 && sets("kind", "port") {
		d.errorf(h.path+".port", "a %s check needs a port: the VIP serves every port (port = 0)", hc.Kind)
	}
	if hc.Kind != HealthHTTP {
		for _, n := range []string{"path", "host", "expect"} {
			if h.set[n] {
				d.errorf(h.path+"."+n, "%s is only used by http checks (kind is %q)", n, hc.Kind)
			}
		}
	}
	if hc.Timeout >= hc.Interval && sets("timeout", "interval") {
		d.errorf(d.blame(h.path+".timeout", h.path+".interval"),
			"timeout (%s) must be shorter than interval (%s): probes of a backend must not overlap",
			fmtDuration(hc.Timeout), fmtDuration(hc.Interval))
	}
}

// Spec is the check as the health package runs it.
func (h HealthCheck) Spec() health.Spec {
	return health.Spec{
		Kind: health.Kind(h.Kind), Port: h.Port, Path: h.Path, Host: h.Host, Expect: h.Expect,
		Interval: h.Interval, Timeout: h.Timeout, Rise: h.Rise, Fall: h.Fall,
	}
}
