package metrics

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xlbproject/xlb/engine"
	"github.com/xlbproject/xlb/proxy"
)

// fixed is a Source with a fixed snapshot.
type fixed struct {
	stats   engine.Stats
	reloads ReloadStatus
	ready   error
	build   Build
}

func (f *fixed) Stats() engine.Stats   { return f.stats }
func (f *fixed) Reloads() ReloadStatus { return f.reloads }
func (f *fixed) Ready() error          { return f.ready }
func (f *fixed) Build() Build          { return f.build }

// reloadedAt is a fixed reload time: 2026-12-03T06:00:00.5Z.
var reloadedAt = time.Date(2026, 12, 3, 6, 0, 0, 5e8, time.UTC)

// afxdpSnapshot is two queues, an IPv4 VIP with three backends (one down,
// one drained) and an IPv6 VIP.
func afxdpSnapshot() *fixed {
	return &fixed{
		reloads: ReloadStatus{Successful: true, LastSuccess: reloadedAt},
		build:   Build{Version: "(devel)", Revision: "5f3473c0", GoVersion: "go1.26.8"},
		stats: engine.Stats{
			Interface: "eth0", XDPMode: "native", Mode: "afxdp",
			Steer: engine.SteerStats{Seen: 2011, Redirected: 2006, Passed: 5, Malformed: 0, NoSocket: 1},
			Queues: []engine.QueueStats{
				{
					Queue: 0, CPU: 1, RxPackets: 1000, RxBytes: 90000, TxPackets: 990, TxBytes: 108900,
					Drops:  map[string]uint64{"no_vip": 7, "fragment": 3},
					Events: map[string]uint64{"echo_reply": 2, "frag_needed_sent": 1, "icmp_error_forwarded": 0},
					Kicks:  400, TxRingFull: 1, Polls: 300,
					Flows:  engine.FlowStats{Entries: 12, Capacity: 262144, Hits: 900, Misses: 100, Inserts: 100, Evictions: 4, Expired: 84},
					Socket: engine.SocketStats{RxDropped: 1, RxRingFull: 2, RxFillRingEmptyDescs: 3, TxRingEmptyDescs: 900},
				},
				{
					Queue: 1, CPU: 0, ZeroCopy: true, RxPackets: 5, RxBytes: 450, TxPackets: 5, TxBytes: 550,
					Drops:  map[string]uint64{"no_vip": 0, "fragment": 0},
					Events: map[string]uint64{"echo_reply": 0, "frag_needed_sent": 0, "icmp_error_forwarded": 0},
				},
			},
			VIPs: []engine.VIPStats{
				{Address: "198.18.100.1", Port: 80, Protocol: "tcp", Forward: "ipip", Backends: []engine.BackendStats{
					{Address: "198.18.0.11", Weight: 2, Health: "up", Packets: 600, Bytes: 54000},
					{Address: "198.18.0.12", Weight: 1, Health: "down", Packets: 100, Bytes: 9000},
					{Address: "198.18.0.13", Weight: 3, State: "drain", Packets: 290, Bytes: 26100},
				}},
				{Address: "2001:db8::1", Port: 53, Protocol: "udp", Forward: "gue", Backends: []engine.BackendStats{
					{Address: "2001:db8::11", Weight: 1, Packets: 5, Bytes: 450},
				}},
			},
			SpliceTable: &engine.SpliceTableStats{Pairs: 2, Capacity: 32768},
			Splice: []proxy.VIPStats{{
				Address: "198.18.100.1", Port: 443, Active: 3, Refused: map[string]uint64{"not_tls": 1, "no_sni": 0},
				Routes: []proxy.RouteStats{{
					SNI: "api.example.com", Connections: 10, IdleTimeouts: 1, SplicedResets: 2,
					Backends: []proxy.BackendStats{{
						Address: "198.18.0.11", Connections: 10, BytesUp: 517, BytesDown: 4000,
						SpliceStats: proxy.SpliceStats{
							Spliced: 7, SplicedActive: 2, SplicedPacketsUp: 100, SplicedPacketsDown: 90,
							SplicedBytesUp: 150000, SplicedBytesDown: 6000,
							StayedCopied: map[string]uint64{"closed_first": 2, "splice_table_full": 1},
						},
					}},
				}},
			}},
		},
	}
}

func compare(t *testing.T, src Source, want string, names ...string) {
	t.Helper()
	if err := testutil.CollectAndCompare(NewCollector(src), strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

func TestCollectAFXDP(t *testing.T) {
	src := afxdpSnapshot()
	compare(t, src, `
# HELP xlb_rx_packets_total Frames a worker received from its socket.
# TYPE xlb_rx_packets_total counter
xlb_rx_packets_total{queue="0"} 1000
xlb_rx_packets_total{queue="1"} 5
# HELP xlb_tx_bytes_total Bytes of the frames a worker queued for transmission, encapsulation included.
# TYPE xlb_tx_bytes_total counter
xlb_tx_bytes_total{queue="0"} 108900
xlb_tx_bytes_total{queue="1"} 550
# HELP xlb_dropped_packets_total Frames a worker dropped, by reason.
# TYPE xlb_dropped_packets_total counter
xlb_dropped_packets_total{queue="0",reason="fragment"} 3
xlb_dropped_packets_total{queue="0",reason="no_vip"} 7
xlb_dropped_packets_total{queue="1",reason="fragment"} 0
xlb_dropped_packets_total{queue="1",reason="no_vip"} 0
# HELP xlb_queue_info A worker: its NIC queue, its CPU and whether its socket runs in zero-copy mode; always 1.
# TYPE xlb_queue_info gauge
xlb_queue_info{cpu="1",queue="0",zero_copy="false"} 1
xlb_queue_info{cpu="0",queue="1",zero_copy="true"} 1
# HELP xlb_steer_packets_total Frames the steering XDP program saw, by verdict: redirected to a worker's socket, passed to the kernel, malformed (passed), spliced (a splice VIP's pair the program forwards itself) or splice_expired (such a frame out of TTL, dropped).
# TYPE xlb_steer_packets_total counter
xlb_steer_packets_total{verdict="malformed"} 0
xlb_steer_packets_total{verdict="passed"} 5
xlb_steer_packets_total{verdict="redirected"} 2006
xlb_steer_packets_total{verdict="splice_expired"} 0
xlb_steer_packets_total{verdict="spliced"} 0
# HELP xlb_flow_table_entries Flows in a worker's flow table.
# TYPE xlb_flow_table_entries gauge
xlb_flow_table_entries{queue="0"} 12
xlb_flow_table_entries{queue="1"} 0
# HELP xlb_flow_table_evictions_total Live flows pushed out of a full flow table bucket.
# TYPE xlb_flow_table_evictions_total counter
xlb_flow_table_evictions_total{queue="0"} 4
xlb_flow_table_evictions_total{queue="1"} 0
# HELP xlb_xsk_rx_ring_full_total XDP_STATISTICS rx_ring_full: frames dropped because the RX ring was full.
# TYPE xlb_xsk_rx_ring_full_total counter
xlb_xsk_rx_ring_full_total{queue="0"} 2
xlb_xsk_rx_ring_full_total{queue="1"} 0
# HELP xlb_events_total Frames a worker sent that are not plain forwarded client packets, answers it withheld and SYNs it did not track: echo_reply, frag_needed_sent (both from the balancer itself), icmp_error_forwarded, icmp_rate_limited, syn_untracked.
# TYPE xlb_events_total counter
xlb_events_total{event="echo_reply",queue="0"} 2
xlb_events_total{event="echo_reply",queue="1"} 0
xlb_events_total{event="frag_needed_sent",queue="0"} 1
xlb_events_total{event="frag_needed_sent",queue="1"} 0
xlb_events_total{event="icmp_error_forwarded",queue="0"} 0
xlb_events_total{event="icmp_error_forwarded",queue="1"} 0
`, "xlb_rx_packets_total", "xlb_tx_bytes_total", "xlb_dropped_packets_total", "xlb_queue_info", "xlb_steer_packets_total",
		"xlb_flow_table_entries", "xlb_flow_table_evictions_total", "xlb_xsk_rx_ring_full_total", "xlb_events_total")
	for name, want := range map[string]int{
		"xlb_native_packets_total": 0, "xlb_native_dropped_packets_total": 0, "xlb_native_flow_hits_total": 0, "xlb_native_events_total": 0,
		"xlb_steer_no_socket_packets_total": 1, "xlb_program_counters_readable": 1, "xlb_xsk_statistics_readable": 2,
	} {
		if n := testutil.CollectAndCount(NewCollector(src), name); n != want {
			t.Errorf("%s: %d series, want %d", name, n, want)
		}
	}
}

func TestCollectVIPsAndBackends(t *testing.T) {
	compare(t, afxdpSnapshot(), `
# HELP xlb_vip_packets_total Frames forwarded to the VIP's backends, including backends a reload removed.
# TYPE xlb_vip_packets_total counter
xlb_vip_packets_total{vip="198.18.100.1:80/tcp"} 990
xlb_vip_packets_total{vip="[2001:db8::1]:53/udp"} 5
# HELP xlb_vip_info A VIP and its forwarding method; always 1.
# TYPE xlb_vip_info gauge
xlb_vip_info{forward="gue",vip="[2001:db8::1]:53/udp"} 1
xlb_vip_info{forward="ipip",vip="198.18.100.1:80/tcp"} 1
# HELP xlb_backend_bytes_total Bytes of the frames forwarded to a backend, as received (Ethernet header included, before encapsulation).
# TYPE xlb_backend_bytes_total counter
xlb_backend_bytes_total{backend="198.18.0.11",vip="198.18.100.1:80/tcp"} 54000
xlb_backend_bytes_total{backend="198.18.0.12",vip="198.18.100.1:80/tcp"} 9000
xlb_backend_bytes_total{backend="198.18.0.13",vip="198.18.100.1:80/tcp"} 26100
xlb_backend_bytes_total{backend="2001:db8::11",vip="[2001:db8::1]:53/udp"} 450
# HELP xlb_backend_up 0 while the backend's health check holds it down, else 1.
# TYPE xlb_backend_up gauge
xlb_backend_up{backend="198.18.0.11",vip="198.18.100.1:80/tcp"} 1
xlb_backend_up{backend="198.18.0.12",vip="198.18.100.1:80/tcp"} 0
xlb_backend_up{backend="198.18.0.13",vip="198.18.100.1:80/tcp"} 1
xlb_backend_up{backend="2001:db8::11",vip="[2001:db8::1]:53/udp"} 1
# HELP xlb_backend_weight The backend's configured weight.
# TYPE xlb_backend_weight gauge
xlb_backend_weight{backend="198.18.0.11",vip="198.18.100.1:80/tcp"} 2
xlb_backend_weight{backend="198.18.0.12",vip="198.18.100.1:80/tcp"} 1
xlb_backend_weight{backend="198.18.0.13",vip="198.18.100.1:80/tcp"} 3
xlb_backend_weight{backend="2001:db8::11",vip="[2001:db8::1]:53/udp"} 1
# HELP xlb_backend_effective_weight The weight new flows see: 0 while the backend drains or is down, else its weight.
# TYPE xlb_backend_effective_weight gauge
xlb_backend_effective_weight{backend="198.18.0.11",vip="198.18.100.1:80/tcp"} 2
xlb_backend_effective_weight{backend="198.18.0.12",vip="198.18.100.1:80/tcp"} 0
xlb_backend_effective_weight{backend="198.18.0.13",vip="198.18.100.1:80/tcp"} 0
xlb_backend_effective_weight{backend="2001:db8::11",vip="[2001:db8::1]:53/udp"} 1
# HELP xlb_backend_state The backend's state as a state set: 1 for the current one of active, drain, down.
# TYPE xlb_backend_state gauge
xlb_backend_state{backend="198.18.0.11",state="active",vip="198.18.100.1:80/tcp"} 1
xlb_backend_state{backend="198.18.0.11",state="drain",vip="198.18.100.1:80/tcp"} 0
xlb_backend_state{backend="198.18.0.11",state="down",vip="198.18.100.1:80/tcp"} 0
xlb_backend_state{backend="198.18.0.12",state="active",vip="198.18.100.1:80/tcp"} 0
xlb_backend_state{backend="198.18.0.12",state="drain",vip="198.18.100.1:80/tcp"} 0
xlb_backend_state{backend="198.18.0.12",state="down",vip="198.18.100.1:80/tcp"} 1
xlb_backend_state{backend="198.18.0.13",state="active",vip="198.18.100.1:80/tcp"} 0
xlb_backend_state{backend="198.18.0.13",state="drain",vip="198.18.100.1:80/tcp"} 1
xlb_backend_state{backend="198.18.0.13",state="down",vip="198.18.100.1:80/tcp"} 0
xlb_backend_state{backend="2001:db8::11",state="active",vip="[2001:db8::1]:53/udp"} 1
xlb_backend_state{backend="2001:db8::11",state="drain",vip="[2001:db8::1]:53/udp"} 0
xlb_backend_state{backend="2001:db8::11",state="down",vip="[2001:db8::1]:53/udp"} 0
`, "xlb_vip_packets_total", "xlb_vip_info", "xlb_backend_bytes_total", "xlb_backend_up", "xlb_backend_weight", "xlb_backend_effective_weight", "xlb_backend_state")
}

func TestStateOf(t *testing.T) {
	for _, tc := range []struct {
		b     engine.BackendStats
		state string
		eff   uint32
	}{
		{engine.BackendStats{Weight: 2, State: "active"}, "active", 2},
		{engine.BackendStats{Weight: 2}, "active", 2}, // no state: active, as config has it
		{engine.BackendStats{Weight: 2, State: "active", Health: "up"}, "active", 2},
		{engine.BackendStats{Weight: 2, State: "drain"}, "drain", 0},
		{engine.BackendStats{Weight: 0, State: "active"}, "drain", 0}, // weight 0 drains
		{engine.BackendStats{Weight: 2, State: "active", Health: "down"}, "down", 0},
		{engine.BackendStats{Weight: 2, State: "drain", Health: "down"}, "down", 0},
	} {
		if state, eff := stateOf(tc.b); state != tc.state || eff != tc.eff {
			t.Errorf("stateOf(%+v) = %s, %d; want %s, %d", tc.b, state, eff, tc.state, tc.eff)
		}
	}
}

func TestCollectReloadsAndInfo(t *testing.T) {
	src := afxdpSnapshot()
	compare(t, src, `
# HELP xlb_config_last_reload_successful Whether the last config load (at start or a reload) succeeded.
# TYPE xlb_config_last_reload_successful gauge
xlb_config_last_reload_successful 1
# HELP xlb_config_last_reload_success_timestamp_seconds When a config last loaded successfully, Unix seconds.
# TYPE xlb_config_last_reload_success_timestamp_seconds gauge
xlb_config_last_reload_success_timestamp_seconds 1.7962776005e+09
# HELP xlb_datapath_info The running datapath: interface, mode (afxdp or native) and XDP attach mode; always 1.
# TYPE xlb_datapath_info gauge
xlb_datapath_info{interface="eth0",mode="afxdp",xdp_mode="native"} 1
# HELP xlb_build_info The xlb binary: module version, VCS revision and Go version; always 1.
# TYPE xlb_build_info gauge
xlb_build_info{goversion="go1.26.8",revision="5f3473c0",version="(devel)"} 1
`, "xlb_config_last_reload_successful", "xlb_config_last_reload_success_timestamp_seconds", "xlb_datapath_info", "xlb_build_info")

	// A failed reload keeps the last success's time; before any success
	// there is no timestamp at all.
	var r Reloads
	r.Record(nil, reloadedAt)
	r.Record(errors.New("bad file"), reloadedAt.Add(time.Hour))
	src.reloads = r.Status()
	compare(t, src, `
# HELP xlb_config_last_reload_successful Whether the last config load (at start or a reload) succeeded.
# TYPE xlb_config_last_reload_successful gauge
xlb_config_last_reload_successful 0
# HELP xlb_config_last_reload_success_timestamp_seconds When a config last loaded successfully, Unix seconds.
# TYPE xlb_config_last_reload_success_timestamp_seconds gauge
xlb_config_last_reload_success_timestamp_seconds 1.7962776005e+09
`, "xlb_config_last_reload_successful", "xlb_config_last_reload_success_timestamp_seconds")
	// Without VCS information (go test, -buildvcs=false) the revision is
	// unknown.
	src.build.Revision = ""
	compare(t, src, `
# HELP xlb_build_info The xlb binary: module version, VCS revision and Go version; always 1.
# TYPE xlb_build_info gauge
xlb_build_info{goversion="go1.26.8",revision="unknown",version="(devel)"} 1
`, "xlb_build_info")
	src.reloads = (&Reloads{}).Status()
	if n := testutil.CollectAndCount(NewCollector(src), "xlb_config_last_reload_success_timestamp_seconds"); n != 0 {
		t.Errorf("no success yet: %d timestamp series, want none", n)
	}
}

func nativeSnapshot() *fixed {
	return &fixed{
		reloads: ReloadStatus{Successful: true, LastSuccess: reloadedAt},
		stats: engine.Stats{
			Interface: "eth1", XDPMode: "native", Mode: "native",
			Native: &engine.NativeStats{Seen: 120, Forwarded: 100, Passed: 12, Malformed: 1, FlowHits: 80, Dropped: 7,
				EchoReplies: 3, FragNeeded: 2, ICMPErrors: 4, ICMPRateLimited: 1, SYNUntracked: 9,
				Drops: map[string]uint64{"no_backend": 2, "too_big": 5}},
			VIPs: []engine.VIPStats{{Address: "198.18.100.1", Port: 0, Protocol: "tcp", Forward: "ipip", Backends: []engine.BackendStats{
				{Address: "198.18.0.11", Weight: 1, Packets: 100, Bytes: 9000, Flows: 17, FlowsKnown: true},
				{Address: "198.18.0.12", Weight: 1},
			}}},
		},
	}
}

func TestCollectNative(t *testing.T) {
	src := nativeSnapshot()
	compare(t, src, `
# HELP xlb_native_packets_total Frames the native lb XDP program saw, by verdict: forwarded, passed to the kernel, malformed or dropped.
# TYPE xlb_native_packets_total counter
xlb_native_packets_total{verdict="dropped"} 7
xlb_native_packets_total{verdict="forwarded"} 100
xlb_native_packets_total{verdict="malformed"} 1
xlb_native_packets_total{verdict="passed"} 12
# HELP xlb_native_dropped_packets_total Frames the native lb XDP program dropped, by reason.
# TYPE xlb_native_dropped_packets_total counter
xlb_native_dropped_packets_total{reason="no_backend"} 2
xlb_native_dropped_packets_total{reason="too_big"} 5
# HELP xlb_native_flow_hits_total Forwarded frames whose backend came from the flow table rather than the Maglev table.
# TYPE xlb_native_flow_hits_total counter
xlb_native_flow_hits_total 80
# HELP xlb_native_events_total Frames the native lb XDP program sent that are not plain forwarded client packets, answers it withheld and SYNs it did not track, named as xlb_events_total's: echo_reply, frag_needed_sent (both from the balancer itself), icmp_error_forwarded, icmp_rate_limited (an echo reply or frag-needed not sent for the ICMP rate limit), syn_untracked (a new flow's SYN forwarded without a flow entry, past the SYN flood guard's rate).
# TYPE xlb_native_events_total counter
xlb_native_events_total{event="echo_reply"} 3
xlb_native_events_total{event="frag_needed_sent"} 2
xlb_native_events_total{event="icmp_error_forwarded"} 4
xlb_native_events_total{event="icmp_rate_limited"} 1
xlb_native_events_total{event="syn_untracked"} 9
# HELP xlb_backend_flows Flows pinned to the backend in the flow tables (every worker's, or the native program's), counted at this scrape; left out when the count failed.
# TYPE xlb_backend_flows gauge
xlb_backend_flows{backend="198.18.0.11",vip="198.18.100.1:0/tcp"} 17
# HELP xlb_vip_packets_total Frames forwarded to the VIP's backends, including backends a reload removed.
# TYPE xlb_vip_packets_total counter
xlb_vip_packets_total{vip="198.18.100.1:0/tcp"} 100
`, "xlb_native_packets_total", "xlb_native_dropped_packets_total", "xlb_native_flow_hits_total", "xlb_native_events_total", "xlb_backend_flows", "xlb_vip_packets_total")
	for _, name := range []string{"xlb_steer_packets_total", "xlb_rx_packets_total", "xlb_queue_info", "xlb_xsk_rx_dropped_total"} {
		if n := testutil.CollectAndCount(NewCollector(src), name); n != 0 {
			t.Errorf("native mode: %d %s series, want none", n, name)
		}
	}
}

// TestCollectUnreadable: counters that could not be read are left out (a
// 0 would read as a counter reset) and the *_readable gauge says so.
func TestCollectUnreadable(t *testing.T) {
	src := afxdpSnapshot()
	src.stats.SteerErr = "map lookup: bad file descriptor"
	src.stats.Queues[1].SocketErr = "getsockopt XDP_STATISTICS: bad file descriptor"
	compare(t, src, `
# HELP xlb_program_counters_readable Whether the XDP program's counters could be read at this scrape; its counters are left out while they cannot.
# TYPE xlb_program_counters_readable gauge
xlb_program_counters_readable 0
# HELP xlb_xsk_statistics_readable Whether the socket's XDP_STATISTICS could be read at this scrape; its xlb_xsk_* series are left out while they cannot.
# TYPE xlb_xsk_statistics_readable gauge
xlb_xsk_statistics_readable{queue="0"} 1
xlb_xsk_statistics_readable{queue="1"} 0
# HELP xlb_xsk_rx_dropped_total XDP_STATISTICS rx_dropped: frames the kernel dropped for reasons other than an invalid descriptor.
# TYPE xlb_xsk_rx_dropped_total counter
xlb_xsk_rx_dropped_total{queue="0"} 1
`, "xlb_program_counters_readable", "xlb_xsk_statistics_readable", "xlb_xsk_rx_dropped_total")
	for name, want := range map[string]int{"xlb_steer_packets_total": 0, "xlb_steer_no_socket_packets_total": 0, "xlb_backend_packets_total": 4} {
		if n := testutil.CollectAndCount(NewCollector(src), name); n != want {
			t.Errorf("%s: %d series, want %d", name, n, want)
		}
	}
	// In native mode the backends' counters come from the program too.
	nat := nativeSnapshot()
	nat.stats.SteerErr = "map lookup: bad file descriptor"
	for _, name := range []string{"xlb_native_packets_total", "xlb_backend_packets_total", "xlb_vip_bytes_total"} {
		if n := testutil.CollectAndCount(NewCollector(nat), name); n != 0 {
			t.Errorf("native, program unreadable: %d %s series, want none", n, name)
		}
	}
}

// TestCollectLint runs client_golang's own linter over every metric, and a
// pedantic registry, which checks each metric against its description.
func TestCollectLint(t *testing.T) {
	for name, src := range map[string]Source{"afxdp": afxdpSnapshot(), "native": nativeSnapshot()} {
		c := NewCollector(src)
		problems, err := testutil.CollectAndLint(c)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("%s: %s: %s", name, p.Metric, p.Text)
		}
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(c)
		if _, err := reg.Gather(); err != nil {
			t.Errorf("%s: pedantic gather: %v", name, err)
		}
	}
}

// TestVIPTotalsMonotonic: a VIP's counters never go down when a reload
// removes a backend or restarts its counters.
func TestVIPTotalsMonotonic(t *testing.T) {
	be := func(addr string, packets uint64) engine.BackendStats {
		return engine.BackendStats{Address: addr, Weight: 1, Packets: packets, Bytes: 100 * packets}
	}
	src := afxdpSnapshot()
	c := NewCollector(src)
	for i, step := range []struct {
		what     string
		backends []engine.BackendStats
		want     uint64
	}{
		{"two backends", []engine.BackendStats{be("198.18.0.11", 10), be("198.18.0.12", 5)}, 15},
		{"b removed", []engine.BackendStats{be("198.18.0.11", 12)}, 17},
		{"b back, counting from 0", []engine.BackendStats{be("198.18.0.11", 12), be("198.18.0.12", 1)}, 18},
		{"a removed and back between scrapes", []engine.BackendStats{be("198.18.0.11", 3), be("198.18.0.12", 2)}, 22},
		{"nothing new", []engine.BackendStats{be("198.18.0.11", 3), be("198.18.0.12", 2)}, 22},
	} {
		src.stats.VIPs = []engine.VIPStats{{Address: "198.18.100.1", Port: 80, Protocol: "tcp", Forward: "ipip", Backends: step.backends}}
		want := fmt.Sprintf(`
# HELP xlb_vip_bytes_total Bytes of the frames forwarded to the VIP's backends, as received (Ethernet header included, before encapsulation).
# TYPE xlb_vip_bytes_total counter
xlb_vip_bytes_total{vip="198.18.100.1:80/tcp"} %d
`, 100*step.want)
		if err := testutil.CollectAndCompare(c, strings.NewReader(want), "xlb_vip_bytes_total"); err != nil {
			t.Errorf("step %d (%s): %v", i, step.what, err)
		}
	}
	// A VIP that leaves is forgotten; back, it starts from its backends.
	src.stats.VIPs = nil
	testutil.CollectAndCount(c)
	src.stats.VIPs = []engine.VIPStats{{Address: "198.18.100.1", Port: 80, Protocol: "tcp", Forward: "ipip", Backends: []engine.BackendStats{be("198.18.0.11", 4)}}}
	want := `
# HELP xlb_vip_packets_total Frames forwarded to the VIP's backends, including backends a reload removed.
# TYPE xlb_vip_packets_total counter
xlb_vip_packets_total{vip="198.18.100.1:80/tcp"} 4
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "xlb_vip_packets_total"); err != nil {
		t.Errorf("VIP back after removal: %v", err)
	}
}

// TestCollectConcurrent: scrapes at once share the collector safely (run
// with -race).
func TestCollectConcurrent(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(afxdpSnapshot()))
	done := make(chan error)
	for range 4 {
		go func() {
			var err error
			for range 10 {
				if _, e := reg.Gather(); e != nil {
					err = e
				}
			}
			done <- err
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Error(err)
		}
	}
}

// TestSpliceMetrics: the splice VIPs' proxy counters, per VIP, route and
// backend, copied and spliced each way.
func TestSpliceMetrics(t *testing.T) {
	compare(t, afxdpSnapshot(), `
# HELP xlb_splice_spliced_total Connections handed to the datapath once quiescent (splice_table_size).
# TYPE xlb_splice_spliced_total counter
xlb_splice_spliced_total{backend="198.18.0.11",route="api.example.com",vip="198.18.100.1:443/tcp"} 7
# HELP xlb_splice_spliced_bytes_total Bytes of the frames the datapath forwarded for spliced connections that ended, by direction.
# TYPE xlb_splice_spliced_bytes_total counter
xlb_splice_spliced_bytes_total{backend="198.18.0.11",direction="backend_to_client",route="api.example.com",vip="198.18.100.1:443/tcp"} 6000
xlb_splice_spliced_bytes_total{backend="198.18.0.11",direction="client_to_backend",route="api.example.com",vip="198.18.100.1:443/tcp"} 150000
# HELP xlb_splice_stayed_copied_total Connections that stayed copied by the proxy instead of being handed to the datapath, by reason.
# TYPE xlb_splice_stayed_copied_total counter
xlb_splice_stayed_copied_total{backend="198.18.0.11",reason="closed_first",route="api.example.com",vip="198.18.100.1:443/tcp"} 2
xlb_splice_stayed_copied_total{backend="198.18.0.11",reason="splice_table_full",route="api.example.com",vip="198.18.100.1:443/tcp"} 1
# HELP xlb_splice_copied_bytes_total Bytes the proxy copied between the client and the backend (TCP payload), by direction.
# TYPE xlb_splice_copied_bytes_total counter
xlb_splice_copied_bytes_total{backend="198.18.0.11",direction="backend_to_client",route="api.example.com",vip="198.18.100.1:443/tcp"} 4000
xlb_splice_copied_bytes_total{backend="198.18.0.11",direction="client_to_backend",route="api.example.com",vip="198.18.100.1:443/tcp"} 517
`, "xlb_splice_spliced_total", "xlb_splice_spliced_bytes_total", "xlb_splice_stayed_copied_total", "xlb_splice_copied_bytes_total")
}
