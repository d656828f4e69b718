package proxy

import (
	"sync/atomic"

	"github.com/xlbproject/xlb/health"
)

// Reason is why a connection was refused (reset before it reached a
// backend).
type Reason uint8

// The reasons, as counters name them.
const (
	NotTLS               Reason = iota // the first record is not a TLS handshake record
	Malformed                          // a handshake record that is not a well-formed ClientHello
	TooLarge                           // the ClientHello exceeds hello_max_bytes
	Timeout                            // no whole ClientHello within hello_timeout
	ClientClosed                       // the client closed or reset before its ClientHello was whole
	NoSNI                              // no server_name, and no default route
	UnknownSNI                         // no route matches the server name, and no default route
	NoBackend                          // the route has no backend up with a weight
	BackendConnectFailed               // the backend refused or did not answer within connect_timeout
	numReasons
)

var reasonNames = [numReasons]string{
	"not_tls", "malformed", "too_large", "timeout", "client_closed",
	"no_sni", "unknown_sni", "no_backend", "backend_connect_failed",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// activeCounters are what routes and backends both count.
type activeCounters struct {
	Connections atomic.Uint64 // proxied (connected to a backend)
	Active      atomic.Int64
	BytesUp     atomic.Uint64 // copied client to backend, added when a connection ends
	BytesDown   atomic.Uint64 // copied backend to client, likewise

	// Phase 2: pairs handed to the datapath, and why the others stayed
	// copied. Packets and bytes (whole frames) the datapath forwarded are
	// added when a spliced pair ends.
	SplicedConns       atomic.Uint64
	Spliced            atomic.Int64 // spliced now
	SplicedPacketsUp   atomic.Uint64
	SplicedPacketsDown atomic.Uint64
	SplicedBytesUp     atomic.Uint64
	SplicedBytesDown   atomic.Uint64
	Kept               [numKept]atomic.Uint64
}

// RouteCounters are one route's counters.
type RouteCounters struct {
	activeCounters
	NoBackend     atomic.Uint64
	ConnectFailed atomic.Uint64
	IdleTimeouts  atomic.Uint64 // pairs reset after idle_timeout
	ClientResets  atomic.Uint64 // clients that reset: the backend was reset too
	BackendResets atomic.Uint64 // backends that reset: the client was reset too
	SplicedResets atomic.Uint64 // spliced pairs a peer reset (the datapath passed the reset on)
}

// BackendCounters are one route backend's counters.
type BackendCounters struct {
	activeCounters
	ConnectFailed atomic.Uint64
}

// VIPStats are one splice VIP's counters.
type VIPStats struct {
	Address string            `json:"address"`
	Port    uint16            `json:"port"`
	Active  int64             `json:"active"` // accepted, routed or not yet
	Refused map[string]uint64 `json:"refused"`
	Routes  []RouteStats      `json:"routes"`
}

// SpliceStats are the phase 2 counters of a route or a backend.
type SpliceStats struct {
	Spliced            uint64 `json:"spliced"`        // connections handed to the datapath
	SplicedActive      int64  `json:"spliced_active"` // spliced now
	SplicedPacketsUp   uint64 `json:"spliced_packets_up"`
	SplicedPacketsDown uint64 `json:"spliced_packets_down"`
	SplicedBytesUp     uint64 `json:"spliced_bytes_up"` // frames the datapath forwarded, client to backend
	SplicedBytesDown   uint64 `json:"spliced_bytes_down"`
	// StayedCopied counts the connections that were not handed over, by
	// reason (Kept).
	StayedCopied map[string]uint64 `json:"stayed_copied"`
}

func (a *activeCounters) spliceStats() SpliceStats {
	s := SpliceStats{
		Spliced: a.SplicedConns.Load(), SplicedActive: a.Spliced.Load(),
		SplicedPacketsUp: a.SplicedPacketsUp.Load(), SplicedPacketsDown: a.SplicedPacketsDown.Load(),
		SplicedBytesUp: a.SplicedBytesUp.Load(), SplicedBytesDown: a.SplicedBytesDown.Load(),
		StayedCopied: make(map[string]uint64, numKept),
	}
	for k := range numKept {
		s.StayedCopied[k.String()] = a.Kept[k].Load()
	}
	return s
}

// RouteStats are one route's counters.
type RouteStats struct {
	SNI           string `json:"sni"` // the pattern, or "default"
	Connections   uint64 `json:"connections"`
	Active        int64  `json:"active"`
	BytesUp       uint64 `json:"bytes_up"`   // client to backend
	BytesDown     uint64 `json:"bytes_down"` // backend to client
	NoBackend     uint64 `json:"no_backend"`
	ConnectFailed uint64 `json:"backend_connect_failed"`
	IdleTimeouts  uint64 `json:"idle_timeouts"`
	ClientResets  uint64 `json:"client_resets"`
	BackendResets uint64 `json:"backend_resets"`
	SplicedResets uint64 `json:"spliced_resets"`
	SpliceStats
	Backends []BackendStats `json:"backends"`
}

// BackendStats are one route backend's counters.
type BackendStats struct {
	Address string `json:"address"`
	Weight  uint32 `json:"weight"`
	State   string `json:"state"`
	// Health is "up" or "down" for a checked backend, empty without checks.
	Health        string `json:"health,omitempty"`
	HealthError   string `json:"health_error,omitempty"`
	Connections   uint64 `json:"connections"`
	Active        int64  `json:"active"`
	BytesUp       uint64 `json:"bytes_up"`
	BytesDown     uint64 `json:"bytes_down"`
	ConnectFailed uint64 `json:"connect_failed"`
	SpliceStats
}

// Stats reads the counters of every splice VIP, in the config's order.
func (p *Proxy) Stats() []VIPStats {
	checks := map[string]health.Status{}
	for _, s := range p.health.Status() {
		checks[s.ID] = s
	}
	p.mu.Lock()
	vips := p.vips
	p.mu.Unlock()
	out := make([]VIPStats, 0, len(vips))
	for _, l := range vips {
		st := l.state.Load()
		vs := VIPStats{Address: l.addr.Addr().String(), Port: l.addr.Port(), Active: l.active.Load(), Refused: map[string]uint64{}}
		for r := range numReasons {
			vs.Refused[r.String()] = l.refused[r].Load()
		}
		for _, rs := range st.routes {
			c := rs.counters
			rst := RouteStats{
				SNI: rs.cfg.Name(), Connections: c.Connections.Load(), Active: c.Active.Load(),
				BytesUp: c.BytesUp.Load(), BytesDown: c.BytesDown.Load(),
				NoBackend: c.NoBackend.Load(), ConnectFailed: c.ConnectFailed.Load(), IdleTimeouts: c.IdleTimeouts.Load(),
				ClientResets: c.ClientResets.Load(), BackendResets: c.BackendResets.Load(),
				SplicedResets: c.SplicedResets.Load(), SpliceStats: c.spliceStats(),
			}
			for j, b := range rs.cfg.Backends {
				bc := rs.backends[j]
				bs := BackendStats{
					Address: b.Address.String(), Weight: b.Weight, State: b.State,
					Connections: bc.Connections.Load(), Active: bc.Active.Load(),
					BytesUp: bc.BytesUp.Load(), BytesDown: bc.BytesDown.Load(), ConnectFailed: bc.ConnectFailed.Load(),
					SpliceStats: bc.spliceStats(),
				}
				if s, ok := checks[healthID(st.cfg, rs.cfg, b)]; ok {
					bs.Health, bs.HealthError = s.State.String(), s.LastError
				}
				rst.Backends = append(rst.Backends, bs)
			}
			vs.Routes = append(vs.Routes, rst)
		}
		out = append(out, vs)
	}
	return out
}
