package engine

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/datapath"
	"github.com/xlbproject/xlb/health"
	"github.com/xlbproject/xlb/proxy"
)

// Stats is what `xlb stats` shows: a consistent-enough snapshot (each counter
// is read atomically; the set is not one instant).
//
// Its JSON form is `xlb stats --json`: every key is snake_case and every
// duration is in whole seconds with a _seconds suffix, as Prometheus names
// them. docs/stats-schema.md lists every key; a test keeps the two in step,
// so a field added here without a line there fails the build's tests.
type Stats struct {
	Interface string `json:"interface"`
	XDPMode   string `json:"xdp_mode"`
	// UptimeSeconds is how long the instance has run, in whole seconds.
	UptimeSeconds int64  `json:"uptime_seconds"`
	Mode          string `json:"mode"`
	// State is "running", or "failed" once the datapath has failed for
	// good (Error says why; xlb run then stops).
	State    string            `json:"state"`
	Error    string            `json:"error,omitempty"`
	Steer    SteerStats        `json:"steer"`            // afxdp mode
	Native   *NativeStats      `json:"native,omitempty"` // native mode
	SteerErr string            `json:"steer_error,omitempty"`
	Queues   []QueueStats      `json:"queues"`
	VIPs     []VIPStats        `json:"vips"`
	Drops    map[string]uint64 `json:"drops"`  // summed over queues
	Events   map[string]uint64 `json:"events"` // summed over queues
	// Splice is the splice VIPs' proxy (not the datapath's): `xlb run`
	// fills it in.
	Splice []proxy.VIPStats `json:"splice,omitempty"`
	// SpliceTable is the steering program's splice table (afxdp mode with
	// splice_table_size > 0).
	SpliceTable *SpliceTableStats `json:"splice_table,omitempty"`
	Firewall    FirewallStats     `json:"firewall"`
}

// SpliceTableStats is how full the splice table is.
type SpliceTableStats struct {
	Pairs    int `json:"pairs"`    // pairs the steering program forwards now
	Capacity int `json:"capacity"` // splice_table_size
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
	Socket       SocketStats       `json:"socket"`
	SocketErr    string            `json:"socket_error,omitempty"`
}

// SteerStats are the steering XDP program's counters (afxdp mode): the
// bpf package's, with their JSON names.
type SteerStats struct {
	Seen       uint64 `json:"seen"`
	Redirected uint64 `json:"redirected"`
	Passed     uint64 `json:"passed"`
	Malformed  uint64 `json:"malformed"`
	NoSocket   uint64 `json:"no_socket"`
	// Spliced and SpliceExpired: frames of spliced pairs (issue 13 phase
	// 2) sent out, and dropped for their TTL or hop limit.
	Spliced       uint64 `json:"spliced"`
	SpliceExpired uint64 `json:"splice_expired"`
}

// NativeStats are the native lb XDP program's counters.
type NativeStats struct {
	Seen      uint64 `json:"seen"`
	Forwarded uint64 `json:"forwarded"`
	Passed    uint64 `json:"passed"`
	Malformed uint64 `json:"malformed"`
	FlowHits  uint64 `json:"flow_hits"`
	// EchoReplies, FragNeeded and ICMPErrors are the frames the program
	// sent that are not forwarded client packets, named as the workers'
	// events: echo_reply, frag_needed_sent, icmp_error_forwarded.
	EchoReplies uint64 `json:"echo_replies"`
	FragNeeded  uint64 `json:"frag_needed"`
	ICMPErrors  uint64 `json:"icmp_errors"`
	// ICMPRateLimited counts the echo replies and frag-needed /
	// packet-too-big the program withheld for the ICMP rate limit.
	ICMPRateLimited uint64 `json:"icmp_rate_limited"`
	// SYNUntracked counts the SYNs of new flows forwarded without a flow
	// entry, past datapath.flow_syn_rate (the workers' syn_untracked).
	SYNUntracked uint64            `json:"syn_untracked"`
	Dropped      uint64            `json:"dropped"`
	Drops        map[string]uint64 `json:"drops"`
	// Flows is the number of live flows in the kernel's flow tables (IPv4
	// and IPv6), counted at stats time.
	Flows uint64 `json:"flows"`
}

// SocketStats are one AF_XDP socket's XDP_STATISTICS.
type SocketStats struct {
	RxDropped            uint64 `json:"rx_dropped"`
	RxInvalidDescs       uint64 `json:"rx_invalid_descs"`
	TxInvalidDescs       uint64 `json:"tx_invalid_descs"`
	RxRingFull           uint64 `json:"rx_ring_full"`
	RxFillRingEmptyDescs uint64 `json:"rx_fill_ring_empty_descs"`
	TxRingEmptyDescs     uint64 `json:"tx_ring_empty_descs"`
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
	// State is what the backend does with new flows: "active" (takes its
	// share), "drain" (state = "drain" or weight 0 in the config: keeps
	// its flows, takes no new ones) or "down" (its health check fails:
	// out of the table). The metrics' xlb_backend_state follows the same
	// rule.
	State   BackendState `json:"state"`
	NextHop string       `json:"next_hop,omitempty"` // empty while unresolved
	// Health is "up" or "down" for a checked backend, empty without checks.
	Health      string `json:"health,omitempty"`
	HealthSince string `json:"health_since,omitempty"`
	HealthError string `json:"health_error,omitempty"` // the last failed probe's error
	Packets     uint64 `json:"packets"`
	Bytes       uint64 `json:"bytes"`
	// HandshakeRTT is nil when the native program's histograms cannot be
	// read.
	HandshakeRTT *HandshakeRTT `json:"handshake_rtt,omitempty"`
	// Flows is the number of flows pinned to the backend in the flow
	// tables (every worker's, or the kernel's in native mode), counted
	// for this call; FlowsKnown is false when the count failed.
	Flows      uint64 `json:"flows"`
	FlowsKnown bool   `json:"flows_known"`
}

// BackendState is a backend's state as `xlb stats` reports it.
type BackendState string

// The values of BackendState.
const (
	BackendActive BackendState = "active"
	BackendDrain  BackendState = "drain"
	BackendDown   BackendState = "down"
)

// Stats reads every counter of the running engine.
func (e *Engine) Stats() Stats {
	s := Stats{
		Interface:     e.ifname,
		XDPMode:       e.mode,
		UptimeSeconds: int64(time.Since(e.started) / time.Second),
		State:         "running",
		// Empty, not null, so that `jq '.queues[]'` works in native mode.
		Queues: []QueueStats{},
		VIPs:   []VIPStats{},
		Drops:  map[string]uint64{},
		Events: map[string]uint64{},
	}
	if err := e.Err(); err != nil {
		s.State, s.Error = "failed", err.Error()
	}
	s.Firewall = e.FirewallStats()
	var perBackend []bpf.LBBackendCounters
	if e.steer != nil {
		s.Mode = "afxdp"
		c, err := e.steer.Counters()
		if err != nil {
			s.SteerErr = err.Error()
		}
		s.Steer = SteerStats(c)
		if e.splice != nil {
			s.SpliceTable = &SpliceTableStats{Pairs: e.splice.Len(), Capacity: e.splice.Cap()}
		}
	} else {
		s.Mode = "native"
		c, err := e.lb.Counters()
		if err != nil {
			s.SteerErr = err.Error()
		}
		s.Native = &NativeStats{Seen: c.Seen, Forwarded: c.Forwarded, Passed: c.Passed, Malformed: c.Malformed,
			FlowHits: c.FlowHits, EchoReplies: c.EchoReplies, FragNeeded: c.FragNeeded, ICMPErrors: c.ICMPErrors, ICMPRateLimited: c.ICMPRateLimited, SYNUntracked: c.SYNUntracked,
			Dropped: c.Dropped, Drops: c.Drops}
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
		ks, err := w.Socket().Stats()
		if err != nil {
			q.SocketErr = err.Error()
		}
		q.Socket = SocketStats(ks)
		s.Queues = append(s.Queues, q)
	}
	// Flows per backend: keyed by full backend ID from the workers' tables,
	// by ID index (the kernel's id) from the native program's.
	flows, flowsKnown := e.flowsByBackend()
	key := func(id uint32) uint32 { return id }
	if e.steer == nil {
		key = datapath.IDIndex
		for _, n := range flows {
			s.Native.Flows += n
		}
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
			bs := BackendStats{Address: cb.Address.String(), Weight: cb.Weight, State: BackendActive}
			if cb.EffectiveWeight() == 0 {
				bs.State = BackendDrain
			}
			if b.Resolved {
				bs.NextHop = net.HardwareAddr(b.MAC[:]).String()
			}
			bs.Packets, bs.Bytes = b.Counters.Totals()
			if e.steer != nil {
				bs.HandshakeRTT = handshakeRTT(b.Counters.HandshakeRTT())
			}
			if x := datapath.IDIndex(b.ID); int(x) < len(perBackend) {
				c := perBackend[x].Sub(pub.base[x])
				bs.Packets, bs.Bytes = c.Packets, c.Bytes
				bs.HandshakeRTT = handshakeRTT(datapath.RTTHistogram{Buckets: c.RTTBuckets, Sum: time.Duration(c.RTTSum)})
			}
			bs.Flows, bs.FlowsKnown = flows[key(b.ID)], flowsKnown
			if hs, ok := checks[healthID(cv, cb.Address)]; ok {
				bs.Health, bs.HealthSince, bs.HealthError = hs.State.String(), hs.Since.Format(time.RFC3339), hs.LastError
				if hs.State == health.StateDown {
					bs.State = BackendDown
				}
			}
			vs.Backends = append(vs.Backends, bs)
		}
		s.VIPs = append(s.VIPs, vs)
	}
	return s
}

// flowsTimeout bounds how long Stats waits for the workers' flow counts: a
// blocked worker answers within its idle poll (100 ms); one that does not
// within this is stuck, and the stats say the counts are unknown.
const flowsTimeout = 2 * time.Second

// flowsByBackend counts the flows pinned to each backend: every worker
// counts its own tables (concurrently), or the native program's flow map is
// read. ok is false if any count is missing.
func (e *Engine) flowsByBackend() (map[uint32]uint64, bool) {
	if e.steer == nil {
		n, err := e.lb.FlowsByBackend()
		return n, err == nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), flowsTimeout)
	defer cancel()
	counts := make([]map[uint32]uint64, len(e.workers))
	var wg sync.WaitGroup
	for i, w := range e.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts[i], _ = w.FlowsByBackend(ctx)
		}()
	}
	wg.Wait()
	total, ok := map[uint32]uint64{}, true
	for _, c := range counts {
		if c == nil {
			ok = false
		}
		for id, n := range c {
			total[id] += n
		}
	}
	return total, ok
}
