package datapath

import (
	"net"
	"time"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/health"
	"github.com/xlbproject/xlb/ring"
)

// Stats is what `xlb stats` shows: a consistent-enough snapshot (each counter
// is read atomically; the set is not one instant).
type Stats struct {
	Interface string            `json:"interface"`
	XDPMode   string            `json:"xdp_mode"`
	Uptime    string            `json:"uptime"`
	Mode      string            `json:"mode"`
	Steer     bpf.SteerCounters `json:"steer"`            // afxdp mode
	Native    *bpf.LBCounters   `json:"native,omitempty"` // native mode
	SteerErr  string            `json:"steer_error,omitempty"`
	Queues    []QueueStats      `json:"queues"`
	VIPs      []VIPStats        `json:"vips"`
	Drops     map[string]uint64 `json:"drops"`  // summed over queues
	Events    map[string]uint64 `json:"events"` // summed over queues
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
	NextHop string `json:"next_hop,omitempty"` // empty while unresolved
	// Health is "up" or "down" for a checked backend, empty without checks.
	Health      string `json:"health,omitempty"`
	HealthSince string `json:"health_since,omitempty"`
	HealthError string `json:"health_error,omitempty"` // the last failed probe's error
	Packets     uint64 `json:"packets"`
	Bytes       uint64 `json:"bytes"`
}

// Stats reads every counter of the running engine.
func (e *Engine) Stats() Stats {
	s := Stats{
		Interface: e.ifname,
		XDPMode:   e.mode,
		Uptime:    time.Since(e.started).Round(time.Second).String(),
		Drops:     map[string]uint64{},
		Events:    map[string]uint64{},
	}
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
		q := QueueStats{
			Queue:        w.Queue,
			CPU:          w.CPU,
			ZeroCopy:     w.sock.ZeroCopy(),
			RxPackets:    w.rxPackets.Load(),
			RxBytes:      w.rxBytes.Load(),
			TxPackets:    w.txPackets.Load(),
			TxBytes:      w.txBytes.Load(),
			Drops:        map[string]uint64{},
			Events:       map[string]uint64{},
			Kicks:        w.kicks.Load(),
			KickFailures: w.kickFailures.Load(),
			TxRingFull:   w.txRingFull.Load(),
			Polls:        w.polls.Load(),
			Flows: FlowStats{
				Entries: w.flows.entries.Load(), Capacity: w.flows.capacity.Load(),
				Hits: w.flows.hits.Load(), Misses: w.flows.misses.Load(), Inserts: w.flows.inserts.Load(),
				Evictions: w.flows.evictions.Load(), Expired: w.flows.expired.Load(),
			},
		}
		// Reason 0 is the parser's OK: not a drop.
		for d := Drop(1); d < numDrops; d++ {
			n := w.fwd.drops[d].Load()
			q.Drops[d.String()] = n
			s.Drops[d.String()] += n
		}
		for ev := range numEvents {
			n := w.fwd.events[ev].Load()
			q.Events[ev.String()] = n
			s.Events[ev.String()] += n
		}
		if q.Socket, err = w.sock.Stats(); err != nil {
			q.SocketErr = err.Error()
		}
		s.Queues = append(s.Queues, q)
	}
	checks := map[string]health.Status{}
	for _, st := range e.health.Status() {
		checks[st.ID] = st
	}
	p := e.plan.Load()
	for _, v := range p.vips {
		vs := VIPStats{Address: v.cfg.Address.String(), Port: v.cfg.Port, Protocol: v.cfg.Protocol.String(), Forward: v.cfg.Forward.String()}
		for j, b := range v.backends {
			bs := BackendStats{Address: v.cfg.Backends[j].Address.String(), Weight: v.cfg.Backends[j].Weight}
			if b.resolved {
				bs.NextHop = net.HardwareAddr(b.mac[:]).String()
			}
			bs.Packets, bs.Bytes = b.counters.Totals()
			if int(b.id) < len(perBackend) {
				bs.Packets, bs.Bytes = perBackend[b.id].Packets, perBackend[b.id].Bytes
			}
			if hs, ok := checks[healthID(v.cfg, v.cfg.Backends[j].Address)]; ok {
				bs.Health, bs.HealthSince, bs.HealthError = hs.State.String(), hs.Since.Format(time.RFC3339), hs.LastError
			}
			vs.Backends = append(vs.Backends, bs)
		}
		s.VIPs = append(s.VIPs, vs)
	}
	return s
}
