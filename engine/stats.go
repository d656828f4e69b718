package engine

import (
	"net"
	"time"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/datapath"
	"github.com/xlbproject/xlb/health"
	"github.com/xlbproject/xlb/proxy"
	"github.com/xlbproject/xlb/ring"
)

// Stats is what `xlb stats` shows: a consistent-enough snapshot (each counter
// is read atomically; the set is not one instant).
type Stats struct {
	Interface string `json:"interface"`
	XDPMode   string `json:"xdp_mode"`
	Uptime    string `json:"uptime"`
	Mode      string `json:"mode"`
	// State is "running", or "failed" once the datapath has failed for
	// good (Error says why; xlb run then stops).
	State    string            `json:"state"`
	Error    string            `json:"error,omitempty"`
	Steer    bpf.SteerCounters `json:"steer"`            // afxdp mode
	Native   *bpf.LBCounters   `json:"native,omitempty"` // native mode
	SteerErr string            `json:"steer_error,omitempty"`
	Queues   []QueueStats      `json:"queues"`
	VIPs     []VIPStats        `json:"vips"`
	Drops    map[string]uint64 `json:"drops"`  // summed over queues
	Events   map[string]uint64 `json:"events"` // summed over queues
	// Splice is the splice VIPs' proxy (not the datapath's): `xlb run`
	// fills it in.
	Splice   []proxy.VIPStats `json:"splice,omitempty"`
	Firewall FirewallStats    `json:"firewall"`
}

// QueueStats are one worker's counters and its socket's XDP_STATISTICS.
type QueueStats struct {
	Queue        int               `json:"queue"`
	CPU          int               `json:"cpu"`
	ZeroCopy     bool              `json:"zero_copy"`
	RxPackets    uint64            `json:"rx_packets"`
	RxBytes      uint64            `json:"rx_bytes"`
	TxPackets    uint64            `json:"tx_packets"`
	TxBytes      uint64            `json:"tx_bytes"`
	Drops        map[string]uint64 `json:"drops"`
	Events       map[string]uint64 `json:"events"`
	Kicks        uint64            `json:"kicks"`
	KickFailures uint64            `json:"kick_failures"`
	TxRingFull   uint64            `json:"tx_ring_full"`
	Polls        uint64            `json:"polls"`
	RxWakeups    uint64            `json:"rx_wakeups"` // polls a spinning worker made for the fill ring
	Flows        FlowStats         `json:"flows"`
	Socket       ring.Stats        `json:"socket"`
	SocketErr    string            `json:"socket_error,omitempty"`
}

// FlowStats are one worker's flow table counters.
type FlowStats struct {
	Entries   uint64 `json:"entries"`
	Capacity  uint64 `json:"capacity"`
	Hits      uint64 `json:"hits"`
	Misses    uint64 `json:"misses"`
	Inserts   uint64 `json:"inserts"`
	Evictions uint64 `json:"evictions"` // live flows pushed out by a full bucket
	Expired   uint64 `json:"expired"`   // idle flows reclaimed
}

// VIPStats are the per-backend counters of one VIP.
type VIPStats struct {
	Address  string         `json:"address"`
	Port     uint16         `json:"port"`
	Protocol string         `json:"protocol"`
	Forward  string         `json:"forward"`
	Backends []BackendStats `json:"backends"`
}

// BackendStats are one backend's counters, summed over the workers.
type BackendStats struct {
	Address string `json:"address"`
	Weight  uint32 `json:"weight"`
	State   string `json:"state"`              // as configured: "active" or "drain"
	NextHop string `json:"next_hop,omitempty"` // empty while unresolved
	// Health is "up" or "down" for a checked backend, empty without checks.
	Health      string `json:"health,omitempty"`
	HealthSince string `json:"health_since,omitempty"`
	HealthError string `json:"health_error,omitempty"` // the last failed probe's error
	Packets     uint64 `json:"packets"`
	Bytes       uint64 `json:"bytes"`
	// HandshakeRTT is nil in native mode (see HandshakeRTT).
	HandshakeRTT *HandshakeRTT `json:"handshake_rtt,omitempty"`
}

// Stats reads every counter of the running engine.
func (e *Engine) Stats() Stats {
	s := Stats{
		Interface: e.ifname,
		XDPMode:   e.mode,
		Uptime:    time.Since(e.started).Round(time.Second).String(),
		State:     "running",
		Drops:     map[string]uint64{},
		Events:    map[string]uint64{},
	}
	if err := e.Err(); err != nil {
		s.State, s.Error = "failed", err.Error()
	}
	s.Firewall = e.FirewallStats()
	var err error
	var perBackend []bpf.LBBackendCounters
	if e.steer != nil {
		s.Mode = "afxdp"
		if s.Steer, err = e.steer.Counters(); err != nil {
			s.SteerErr = err.Error()
		}
	} else {
		s.Mode = "native"
		c, err := e.lb.Counters()
		if err != nil {
			s.SteerErr = err.Error()
		}
		s.Native = &c
		if perBackend, err = e.lb.BackendCounters(); err != nil {
			s.SteerErr = err.Error()
		}
	}
	for _, w := range e.workers {
		c := w.Counters()
		q := QueueStats{
			Queue:        w.Queue,
			CPU:          w.CPU,
			ZeroCopy:     w.Socket().ZeroCopy(),
			RxPackets:    c.RxPackets,
			RxBytes:      c.RxBytes,
			TxPackets:    c.TxPackets,
			TxBytes:      c.TxBytes,
			Drops:        map[string]uint64{},
			Events:       map[string]uint64{},
			Kicks:        c.Kicks,
			KickFailures: c.KickFailures,
			TxRingFull:   c.TxRingFull,
			Polls:        c.Polls,
			RxWakeups:    c.RxWakeups,
			Flows: FlowStats{
				Entries: c.Flows.Entries, Capacity: c.Flows.Capacity,
				Hits: c.Flows.Hits, Misses: c.Flows.Misses, Inserts: c.Flows.Inserts,
				Evictions: c.Flows.Evictions, Expired: c.Flows.Expired,
			},
		}
		// Reason 0 is the parser's OK: not a drop.
		for d := datapath.Drop(1); d < datapath.NumDrops; d++ {
			q.Drops[d.String()] = c.Drops[d]
			s.Drops[d.String()] += c.Drops[d]
		}
		for ev := range datapath.NumEvents {
			q.Events[ev.String()] = c.Events[ev]
			s.Events[ev.String()] += c.Events[ev]
		}
		if q.Socket, err = w.Socket().Stats(); err != nil {
			q.SocketErr = err.Error()
		}
		s.Queues = append(s.Queues, q)
	}
	checks := map[string]health.Status{}
	for _, st := range e.health.Status() {
		checks[st.ID] = st
	}
	pub := e.pub.Load()
	for i, v := range pub.spec.VIPs {
		cv := pub.cfg.VIPs[i]
		vs := VIPStats{Address: cv.Address.String(), Port: cv.Port, Protocol: cv.Protocol.String(), Forward: cv.Forward.String()}
		for j, b := range v.Backends {
			cb := cv.Backends[j]
			bs := BackendStats{Address: cb.Address.String(), Weight: cb.Weight, State: cb.State}
			if b.Resolved {
				bs.NextHop = net.HardwareAddr(b.MAC[:]).String()
			}
			bs.Packets, bs.Bytes = b.Counters.Totals()
			if e.steer != nil {
				bs.HandshakeRTT = handshakeRTT(b.Counters)
			}
			if x := datapath.IDIndex(b.ID); int(x) < len(perBackend) {
				c, base := perBackend[x], pub.base[x]
				bs.Packets, bs.Bytes = c.Packets-min(base.Packets, c.Packets), c.Bytes-min(base.Bytes, c.Bytes)
			}
			if hs, ok := checks[healthID(cv, cb.Address)]; ok {
				bs.Health, bs.HealthSince, bs.HealthError = hs.State.String(), hs.Since.Format(time.RFC3339), hs.LastError
			}
			vs.Backends = append(vs.Backends, bs)
		}
		s.VIPs = append(s.VIPs, vs)
	}
	return s
}
