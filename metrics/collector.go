package metrics

import (
	"net"
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/engine"
)

// descs is every metric the Collector can emit, in declaration order, for
// Describe.
var descs []*prometheus.Desc

func newDesc(name, help string, labels ...string) *prometheus.Desc {
	d := prometheus.NewDesc(name, help, labels, nil)
	descs = append(descs, d)
	return d
}

// The metrics; doc.go has the table. Label names: queue (NIC queue index),
// reason (a drop reason as `xlb stats` names it), vip ("ADDR:PORT/PROTO"),
// backend (its address).
var (
	buildInfo = newDesc("xlb_build_info", "The xlb binary: module version, VCS revision and Go version; always 1.", "version", "revision", "goversion")
	dpInfo    = newDesc("xlb_datapath_info", "The running datapath: interface, mode (afxdp or native) and XDP attach mode; always 1.", "interface", "mode", "xdp_mode")

	reloadOK   = newDesc("xlb_config_last_reload_successful", "Whether the last config load (at start or a reload) succeeded.")
	reloadTime = newDesc("xlb_config_last_reload_success_timestamp_seconds", "When a config last loaded successfully, Unix seconds.")

	programReadable = newDesc("xlb_program_counters_readable", "Whether the XDP program's counters could be read at this scrape; its counters are left out while they cannot.")

	// afxdp mode: the steering program.
	steerPackets  = newDesc("xlb_steer_packets_total", "Frames the steering XDP program saw, by verdict: redirected to a worker's socket, passed to the kernel, malformed (passed), spliced (a splice VIP's pair the program forwards itself) or splice_expired (such a frame out of TTL, dropped).", "verdict")
	steerNoSocket = newDesc("xlb_steer_no_socket_packets_total", "VIP frames on a queue no worker serves, passed to the kernel (part of verdict=\"passed\").")

	// native mode: the lb program.
	nativePackets  = newDesc("xlb_native_packets_total", "Frames the native lb XDP program saw, by verdict: forwarded, passed to the kernel, malformed or dropped.", "verdict")
	nativeDrops    = newDesc("xlb_native_dropped_packets_total", "Frames the native lb XDP program dropped, by reason.", "reason")
	nativeFlowHits = newDesc("xlb_native_flow_hits_total", "Forwarded frames whose backend came from the flow table rather than the Maglev table.")
	nativeEvents   = newDesc("xlb_native_events_total", "Frames the native lb XDP program sent that are not plain forwarded client packets, answers it withheld and SYNs it did not track, named as xlb_events_total's: echo_reply, frag_needed_sent (both from the balancer itself), icmp_error_forwarded, icmp_rate_limited (an echo reply or frag-needed not sent for the ICMP rate limit), syn_untracked (a new flow's SYN forwarded without a flow entry, past the SYN flood guard's rate).", "event")

	// afxdp mode: one series per worker (queue).
	queueInfo     = newDesc("xlb_queue_info", "A worker: its NIC queue, its CPU and whether its socket runs in zero-copy mode; always 1.", "queue", "cpu", "zero_copy")
	rxPackets     = newDesc("xlb_rx_packets_total", "Frames a worker received from its socket.", "queue")
	rxBytes       = newDesc("xlb_rx_bytes_total", "Bytes of the frames a worker received, Ethernet header included.", "queue")
	txPackets     = newDesc("xlb_tx_packets_total", "Frames a worker queued for transmission.", "queue")
	txBytes       = newDesc("xlb_tx_bytes_total", "Bytes of the frames a worker queued for transmission, encapsulation included.", "queue")
	drops         = newDesc("xlb_dropped_packets_total", "Frames a worker dropped, by reason.", "queue", "reason")
	events        = newDesc("xlb_events_total", "Frames a worker sent that are not plain forwarded client packets, answers it withheld and SYNs it did not track: echo_reply, frag_needed_sent (both from the balancer itself), icmp_error_forwarded, icmp_rate_limited, syn_untracked.", "queue", "event")
	kicks         = newDesc("xlb_tx_kicks_total", "sendto(2) calls that asked the kernel to transmit.", "queue")
	kickFailures  = newDesc("xlb_tx_kick_failures_total", "TX kicks that failed.", "queue")
	txRingFull    = newDesc("xlb_tx_ring_full_total", "Times a batch did not fit the TX ring (it is retried, never dropped).", "queue")
	polls         = newDesc("xlb_polls_total", "poll(2) calls of an idle worker.", "queue")
	rxWakeups     = newDesc("xlb_rx_wakeups_total", "poll(2) wakeups a spinning worker gave the kernel when its fill ring asked for one (need_wakeup).", "queue")
	flowEntries   = newDesc("xlb_flow_table_entries", "Flows in a worker's flow table.", "queue")
	flowCapacity  = newDesc("xlb_flow_table_capacity", "Flows a worker's flow table can hold.", "queue")
	flowHits      = newDesc("xlb_flow_table_hits_total", "Flow table lookups that found the flow.", "queue")
	flowMisses    = newDesc("xlb_flow_table_misses_total", "Flow table lookups that did not find the flow.", "queue")
	flowInserts   = newDesc("xlb_flow_table_inserts_total", "Flows inserted into a worker's flow table.", "queue")
	flowEvictions = newDesc("xlb_flow_table_evictions_total", "Live flows pushed out of a full flow table bucket.", "queue")
	flowExpired   = newDesc("xlb_flow_table_expired_total", "Idle flows reclaimed from a worker's flow table.", "queue")

	// The socket's XDP_STATISTICS, named as the kernel's struct
	// xdp_statistics.
	xskReadable         = newDesc("xlb_xsk_statistics_readable", "Whether the socket's XDP_STATISTICS could be read at this scrape; its xlb_xsk_* series are left out while they cannot.", "queue")
	xskRxDropped        = newDesc("xlb_xsk_rx_dropped_total", "XDP_STATISTICS rx_dropped: frames the kernel dropped for reasons other than an invalid descriptor.", "queue")
	xskRxInvalid        = newDesc("xlb_xsk_rx_invalid_descs_total", "XDP_STATISTICS rx_invalid_descs: frames dropped for an invalid RX descriptor.", "queue")
	xskTxInvalid        = newDesc("xlb_xsk_tx_invalid_descs_total", "XDP_STATISTICS tx_invalid_descs: TX descriptors the kernel rejected.", "queue")
	xskRxRingFull       = newDesc("xlb_xsk_rx_ring_full_total", "XDP_STATISTICS rx_ring_full: frames dropped because the RX ring was full.", "queue")
	xskFillRingEmpty    = newDesc("xlb_xsk_rx_fill_ring_empty_descs_total", "XDP_STATISTICS rx_fill_ring_empty_descs: times the kernel found the fill ring empty.", "queue")
	xskTxRingEmptyDescs = newDesc("xlb_xsk_tx_ring_empty_descs_total", "XDP_STATISTICS tx_ring_empty_descs: times the kernel found the TX ring empty.", "queue")

	// Per VIP and backend (both modes).
	vipInfo        = newDesc("xlb_vip_info", "A VIP and its forwarding method; always 1.", "vip", "forward")
	vipPackets     = newDesc("xlb_vip_packets_total", "Frames forwarded to the VIP's backends, including backends a reload removed.", "vip")
	vipBytes       = newDesc("xlb_vip_bytes_total", "Bytes of the frames forwarded to the VIP's backends, as received (Ethernet header included, before encapsulation).", "vip")
	backendPackets = newDesc("xlb_backend_packets_total", "Frames forwarded to a backend.", "vip", "backend")
	backendBytes   = newDesc("xlb_backend_bytes_total", "Bytes of the frames forwarded to a backend, as received (Ethernet header included, before encapsulation).", "vip", "backend")
	backendUp      = newDesc("xlb_backend_up", "0 while the backend's health check holds it down, else 1.", "vip", "backend")
	backendWeight  = newDesc("xlb_backend_weight", "The backend's configured weight.", "vip", "backend")
	backendEffW    = newDesc("xlb_backend_effective_weight", "The weight new flows see: 0 while the backend drains or is down, else its weight.", "vip", "backend")
	backendRTT     = newDesc("xlb_backend_handshake_rtt_seconds", "TCP handshake round trips through the balancer, a client's SYN to its first ACK.", "vip", "backend")
	backendState   = newDesc("xlb_backend_state", "The backend's state as a state set: 1 for the current one of active, drain, down.", "vip", "backend", "state")
	backendFlows   = newDesc("xlb_backend_flows", "Flows pinned to the backend in the flow tables (every worker's, or the native program's), counted at this scrape; left out when the count failed.", "vip", "backend")
)

// backendStates are xlb_backend_state's values, every one exposed.
var backendStates = [...]string{"active", "drain", "down"}

// Collector is a prometheus.Collector that reads one Stats snapshot from its
// Source per scrape and turns it into const metrics: the datapath is never
// touched by a scrape beyond the atomic loads Stats does.
type Collector struct {
	src Source

	// mu makes scrapes take and fold their snapshots one at a time, so
	// that vips compares each snapshot with the one taken before it.
	mu   sync.Mutex
	vips vipTotals
}

// NewCollector returns the Collector for src.
func NewCollector(src Source) *Collector { return &Collector{src: src} }

// Describe sends every metric's description: the set is fixed, whatever the
// mode, so the registry can check each scrape against it.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range descs {
		ch <- d
	}
}

// Collect sends the metrics of one snapshot.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	st := c.src.Stats()
	// In native mode the backend counters come from the program's maps too.
	backendsReadable := st.SteerErr == "" || st.Native == nil
	var totals map[string][2]uint64
	if backendsReadable {
		totals = c.vips.update(st.VIPs)
	}
	c.mu.Unlock()

	b := c.src.Build()
	gauge(ch, buildInfo, 1, orUnknown(b.Version), orUnknown(b.Revision), orUnknown(b.GoVersion))
	gauge(ch, dpInfo, 1, st.Interface, st.Mode, st.XDPMode)

	r := c.src.Reloads()
	gauge(ch, reloadOK, boolValue(r.Successful))
	if !r.LastSuccess.IsZero() {
		gauge(ch, reloadTime, float64(r.LastSuccess.UnixNano())/1e9)
	}

	// A counter that cannot be read is left out rather than sent as 0,
	// which a rate() would take for a counter reset.
	readable := st.SteerErr == ""
	gauge(ch, programReadable, boolValue(readable))
	if readable {
		if n := st.Native; n != nil {
			counter(ch, nativePackets, n.Forwarded, "forwarded")
			counter(ch, nativePackets, n.Passed, "passed")
			counter(ch, nativePackets, n.Malformed, "malformed")
			counter(ch, nativePackets, n.Dropped, "dropped")
			for reason, v := range n.Drops {
				counter(ch, nativeDrops, v, reason)
			}
			counter(ch, nativeFlowHits, n.FlowHits)
			counter(ch, nativeEvents, n.EchoReplies, "echo_reply")
			counter(ch, nativeEvents, n.FragNeeded, "frag_needed_sent")
			counter(ch, nativeEvents, n.ICMPErrors, "icmp_error_forwarded")
			counter(ch, nativeEvents, n.ICMPRateLimited, "icmp_rate_limited")
			counter(ch, nativeEvents, n.SYNUntracked, "syn_untracked")
		} else {
			s := st.Steer
			counter(ch, steerPackets, s.Redirected, "redirected")
			counter(ch, steerPackets, s.Passed, "passed")
			counter(ch, steerPackets, s.Malformed, "malformed")
			counter(ch, steerPackets, s.Spliced, "spliced")
			counter(ch, steerPackets, s.SpliceExpired, "splice_expired")
			counter(ch, steerNoSocket, s.NoSocket)
		}
	}

	for i := range st.Queues {
		collectQueue(ch, &st.Queues[i])
	}
	collectFirewall(ch, &st.Firewall)
	collectSplice(ch, st.SpliceTable, st.Splice)
	collectBGP(ch, c.src)

	for _, v := range st.VIPs {
		vip := vipLabel(v)
		gauge(ch, vipInfo, 1, vip, v.Forward)
		if backendsReadable {
			counter(ch, vipPackets, totals[vip][0], vip)
			counter(ch, vipBytes, totals[vip][1], vip)
		}
		for _, b := range v.Backends {
			if backendsReadable {
				counter(ch, backendPackets, b.Packets, vip, b.Address)
				counter(ch, backendBytes, b.Bytes, vip, b.Address)
			}
			state, eff := stateOf(b)
			gauge(ch, backendUp, boolValue(b.Health != "down"), vip, b.Address)
			gauge(ch, backendWeight, float64(b.Weight), vip, b.Address)
			gauge(ch, backendEffW, float64(eff), vip, b.Address)
			for _, s := range backendStates {
				gauge(ch, backendState, boolValue(s == state), vip, b.Address, s)
			}
			if r := b.HandshakeRTT; r != nil {
				handshakeRTT(ch, r, vip, b.Address)
			}
			if b.FlowsKnown {
				gauge(ch, backendFlows, float64(b.Flows), vip, b.Address)
			}
		}
	}
}

func vipLabel(v engine.VIPStats) string {
	return net.JoinHostPort(v.Address, strconv.Itoa(int(v.Port))) + "/" + v.Protocol
}

// vipTotals keeps xlb_vip_*_total monotonic, as a counter must be. A
// VIP's total is the sum over its backends' counters, and a reload that
// removes a backend (or removes and adds it back, restarting its counters)
// would make that sum fall, which rate() reads as a counter reset and turns
// into a spike. So a backend that leaves, or whose counters go down, adds
// what it had counted when last seen to its VIP's departed share. What it
// counted between that scrape and its removal is lost: the total stays
// monotonic and undercounts by at most one scrape interval of that backend.
type vipTotals struct {
	vips map[string]*vipTally
}

type vipTally struct {
	departed [2]uint64            // packets, bytes of backends that left
	last     map[string][2]uint64 // backend address -> counters at the last scrape
}

// update folds one snapshot in and returns each VIP's packets and bytes.
// A VIP that is gone is forgotten: its series ends, and if it comes back
// it starts again from its backends' counters.
func (t *vipTotals) update(vips []engine.VIPStats) map[string][2]uint64 {
	out := make(map[string][2]uint64, len(vips))
	next := make(map[string]*vipTally, len(vips))
	for _, v := range vips {
		vip := vipLabel(v)
		tally := t.vips[vip]
		if tally == nil {
			tally = &vipTally{}
		}
		last := make(map[string][2]uint64, len(v.Backends))
		sum := [2]uint64{}
		for _, b := range v.Backends {
			now := [2]uint64{b.Packets, b.Bytes}
			if prev, ok := tally.last[b.Address]; ok && (now[0] < prev[0] || now[1] < prev[1]) {
				tally.departed[0] += prev[0]
				tally.departed[1] += prev[1]
			}
			last[b.Address] = now
			sum[0] += now[0]
			sum[1] += now[1]
		}
		for addr, prev := range tally.last {
			if _, ok := last[addr]; !ok {
				tally.departed[0] += prev[0]
				tally.departed[1] += prev[1]
			}
		}
		tally.last = last
		next[vip] = tally
		out[vip] = [2]uint64{sum[0] + tally.departed[0], sum[1] + tally.departed[1]}
	}
	t.vips = next
	return out
}

func collectQueue(ch chan<- prometheus.Metric, q *engine.QueueStats) {
	queue := strconv.Itoa(q.Queue)
	gauge(ch, queueInfo, 1, queue, strconv.Itoa(q.CPU), strconv.FormatBool(q.ZeroCopy))
	counter(ch, rxPackets, q.RxPackets, queue)
	counter(ch, rxBytes, q.RxBytes, queue)
	counter(ch, txPackets, q.TxPackets, queue)
	counter(ch, txBytes, q.TxBytes, queue)
	for reason, v := range q.Drops {
		counter(ch, drops, v, queue, reason)
	}
	for event, v := range q.Events {
		counter(ch, events, v, queue, event)
	}
	counter(ch, kicks, q.Kicks, queue)
	counter(ch, kickFailures, q.KickFailures, queue)
	counter(ch, txRingFull, q.TxRingFull, queue)
	counter(ch, polls, q.Polls, queue)
	counter(ch, rxWakeups, q.RxWakeups, queue)
	f := q.Flows
	gauge(ch, flowEntries, float64(f.Entries), queue)
	gauge(ch, flowCapacity, float64(f.Capacity), queue)
	counter(ch, flowHits, f.Hits, queue)
	counter(ch, flowMisses, f.Misses, queue)
	counter(ch, flowInserts, f.Inserts, queue)
	counter(ch, flowEvictions, f.Evictions, queue)
	counter(ch, flowExpired, f.Expired, queue)
	gauge(ch, xskReadable, boolValue(q.SocketErr == ""), queue)
	if q.SocketErr == "" {
		s := q.Socket
		counter(ch, xskRxDropped, s.RxDropped, queue)
		counter(ch, xskRxInvalid, s.RxInvalidDescs, queue)
		counter(ch, xskTxInvalid, s.TxInvalidDescs, queue)
		counter(ch, xskRxRingFull, s.RxRingFull, queue)
		counter(ch, xskFillRingEmpty, s.RxFillRingEmptyDescs, queue)
		counter(ch, xskTxRingEmptyDescs, s.TxRingEmptyDescs, queue)
	}
}

// stateOf is a backend's state and the weight new flows see: down while
// its health check holds it down, drain when configured so or at weight 0
// (as config.Backend.EffectiveWeight has it), else active.
func stateOf(b engine.BackendStats) (state string, effective uint32) {
	switch {
	case b.Health == "down":
		return "down", 0
	case b.State == config.StateDrain || b.Weight == 0:
		return "drain", 0
	}
	return "active", b.Weight
}

// handshakeRTT sends a backend's handshake RTT histogram, its buckets made
// cumulative as Prometheus wants them.
func handshakeRTT(ch chan<- prometheus.Metric, r *engine.HandshakeRTT, labels ...string) {
	bounds := engine.RTTBucketBoundsSeconds()
	buckets := make(map[float64]uint64, len(bounds))
	var cum uint64
	for i, le := range bounds {
		if i < len(r.Buckets) {
			cum += r.Buckets[i]
		}
		buckets[le] = cum
	}
	ch <- prometheus.MustNewConstHistogram(backendRTT, r.Count, r.SumSeconds, buckets, labels...)
}

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
