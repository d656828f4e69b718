package perf

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"time"

	"github.com/xlbproject/xlb/bpf/labprogs"
	"github.com/xlbproject/xlb/config"
)

// Traffic is a kind of generated traffic.
type Traffic string

// The traffic kinds. Every frame of a run has the same size; the flows
// differ in source address and port.
const (
	UDP    Traffic = "udp"     // UDP datagrams
	TCPSyn Traffic = "tcp-syn" // TCP SYNs (carrying payload to reach the frame size)
	TCPAck Traffic = "tcp-ack" // TCP ACKs with data, as an established flow sends
)

// Traffics lists every traffic kind.
var Traffics = []Traffic{UDP, TCPSyn, TCPAck}

// Scenario is what the datapaths are asked to do with the traffic.
type Scenario string

// The scenarios.
const (
	// ScenarioForward: every datapath forwards the traffic to the sink,
	// which counts it (the default).
	ScenarioForward Scenario = "forward"
	// ScenarioDrop: the traffic comes from a source range (deniedRange)
	// the datapath's firewall denies; it is measured by the frames it
	// drops.
	ScenarioDrop Scenario = "drop"
)

// Scenarios lists every scenario.
var Scenarios = []Scenario{ScenarioForward, ScenarioDrop}

// ErrInvalidOptions is wrapped by every error about bad Options.
var ErrInvalidOptions = errors.New("perf: invalid options")

// Tuning is what the AF_XDP datapaths (xlb and the ring forwarder; the
// asavie baseline only takes the ring sizes) are run with: per-queue
// tuning runs change these. Zero values take xlb's defaults.
type Tuning struct {
	Batch    int  // descriptors per batch (xlb default 64)
	Ring     int  // every ring's size (xlb default 2048)
	TxBudget int  // XDP_MAX_TX_SKB_BUDGET (xlb default 64)
	Spin     bool // busy-spin when idle instead of blocking in poll()
	BusyPoll bool // SO_PREFER_BUSY_POLL + SO_BUSY_POLL
	// NoNeedWakeup binds without XDP_USE_NEED_WAKEUP (need_wakeup =
	// false): the worker kicks the kernel on every transmit. Negative so
	// that the zero value is xlb's default.
	NoNeedWakeup bool `json:",omitempty"`
}

// Options configure Compare. Zero values take the defaults, sized for a
// 2-CPU machine: one generator thread on CPU 0, the balancer on CPU 1.
type Options struct {
	// Duration of each measured repeat (default 5s).
	Duration time.Duration
	// Warmup is traffic sent before the first repeat of each run, not
	// measured (default 1s; negative for none).
	Warmup time.Duration
	// Repeat is the number of measured repeats per run (default 3).
	Repeat int
	// Rounds is how many times every datapath is started and measured,
	// the datapaths in reverse order every other round (default 1). A
	// datapath's rate moves between instances (where its maps' memory
	// lands) and with the machine's other work more than between the
	// repeats of one instance; the report rates each round against its
	// ceiling of the same round.
	Rounds int
	// FrameSizes are Ethernet frame sizes without FCS, 60 to 1514
	// (default 64).
	FrameSizes []int
	// Traffic kinds to send (default UDP).
	Traffic []Traffic
	// Scenario is ScenarioForward (default) or ScenarioDrop.
	Scenario Scenario
	// Datapaths to compare, by name (default: every datapath of the
	// scenario, DatapathsOf).
	Datapaths []string
	// Rules are the sizes of the firewall the xlb datapaths run with, in
	// entries per VIP; each xlb datapath is measured once per size, the
	// other datapaths once (default 0, no firewall; 1 in the drop
	// scenario, the one deny rule of the traffic's range; the drop
	// scenario needs at least 1). The rule set is firewallRules'.
	Rules []int
	// Flows is the number of distinct 5-tuples (default 4096).
	Flows int
	// FlowTableSize is the xlb datapaths' flow_table_size, a power of two
	// in config's range (default 0: xlb-native gets NativeFlowTableSize,
	// the size the native target is set for, and xlb-afxdp xlb's own
	// default per worker). The table's size, not its fill, sets how many
	// of its lookups miss the CPU's TLB and caches.
	FlowTableSize int
	// Backends is the number of backends of the VIPs (default 4). They
	// all share the sink's link and MAC, at consecutive addresses.
	Backends int
	// GenCPUs are the CPUs of the generator threads, one thread each
	// (default [0]).
	GenCPUs []int
	// LBCPUs are the CPUs of the balancer's workers (or the reference
	// forwarders' threads), one per queue (default [1], or [0] on a 1-CPU
	// machine; with Queues > 1, queue i on CPU (1+i) mod NumCPU).
	LBCPUs []int
	// Queues is the number of queues of the measured link and of xlb's
	// workers (default 1). More than one needs the direct topology (the
	// bridge lab's veths have one queue) and xlb datapaths only (the
	// reference forwarders serve queue 0). A veth delivers what a peer's
	// XDP transmits to the receive queue of the sending CPU's number
	// (modulo the queue count), so the generator reaches several queues
	// only from as many CPUs: give GenCPUs accordingly.
	Queues int
	// Tuning of the AF_XDP datapaths.
	Tuning Tuning
	// Topology is TopologyBridge (default) or TopologyDirect.
	Topology string
	// XLBBinary is the xlb binary to run; empty builds one with
	// `go build` (which needs the Go toolchain and this module's source).
	XLBBinary string
	// Prefix of the lab's namespaces (default "xlbperf<pid>").
	Prefix string
	// JSONFile, if set, receives the report as JSON.
	JSONFile string
	// Out receives progress lines and, at the end, the markdown table
	// (nil: discarded).
	Out io.Writer
}

const (
	defaultDuration = 5 * time.Second
	defaultWarmup   = time.Second
	defaultRepeat   = 3
	defaultRounds   = 1
	maxRounds       = 100
	defaultFlows    = 4096
	defaultBackends = 4
	maxBackends     = 200  // consecutive addresses from .20 stay in the /24
	maxRepeat       = 1000 // bounds the run time of a typo
	maxFrame        = 1514 // the generator's link has MTU 1500
	maxQueues       = 64
)

// NativeFlowTableSize is xlb-native's flow_table_size unless
// Options.FlowTableSize says otherwise: a million entries, the size the
// native performance target is set for.
const NativeFlowTableSize = 1 << 20

// flowTableSize is the flow_table_size the xlb datapath of mode ("" or
// config.ModeNative) runs with.
func (o Options) flowTableSize(mode string) int {
	switch {
	case o.FlowTableSize != 0:
		return o.FlowTableSize
	case mode == config.ModeNative:
		return NativeFlowTableSize
	}
	return config.DefaultFlowTableSize
}

// withDefaults validates o and fills in the defaults.
func (o Options) withDefaults() (Options, error) {
	bad := func(format string, args ...any) (Options, error) {
		return Options{}, fmt.Errorf("%w: %s", ErrInvalidOptions, fmt.Sprintf(format, args...))
	}
	if o.Duration == 0 {
		o.Duration = defaultDuration
	}
	if o.Duration < 100*time.Millisecond || o.Duration > time.Hour {
		return bad("duration %s: want 100ms to 1h", o.Duration)
	}
	switch {
	case o.Warmup == 0:
		o.Warmup = defaultWarmup
	case o.Warmup < 0:
		o.Warmup = 0
	case o.Warmup > time.Hour:
		return bad("warmup %s: want at most 1h", o.Warmup)
	}
	if o.Repeat == 0 {
		o.Repeat = defaultRepeat
	}
	if o.Repeat < 1 || o.Repeat > maxRepeat {
		return bad("repeat %d: want 1 to %d", o.Repeat, maxRepeat)
	}
	if o.Rounds == 0 {
		o.Rounds = defaultRounds
	}
	if o.Rounds < 1 || o.Rounds > maxRounds {
		return bad("rounds %d: want 1 to %d", o.Rounds, maxRounds)
	}
	if len(o.FrameSizes) == 0 {
		o.FrameSizes = []int{64}
	}
	for _, s := range o.FrameSizes {
		if s < labprogs.MinFrame || s > maxFrame {
			return bad("frame size %d: want %d to %d", s, labprogs.MinFrame, maxFrame)
		}
	}
	if len(o.Traffic) == 0 {
		o.Traffic = []Traffic{UDP}
	}
	for _, t := range o.Traffic {
		if !slices.Contains(Traffics, t) {
			return bad("traffic %q: want one of %v", t, Traffics)
		}
	}
	switch o.Scenario {
	case "":
		o.Scenario = ScenarioForward
	case ScenarioForward, ScenarioDrop:
	default:
		return bad("scenario %q: want one of %v", o.Scenario, Scenarios)
	}
	if len(o.Datapaths) == 0 {
		o.Datapaths = DatapathsOf(o.Scenario)
	}
	for _, d := range o.Datapaths {
		dp := findDatapath(d)
		if dp == nil {
			return bad("datapath %q: want one of %v", d, Datapaths())
		}
		if !slices.Contains(dp.scenarios, o.Scenario) {
			return bad("datapath %q has no %s scenario: want one of %v", d, o.Scenario, DatapathsOf(o.Scenario))
		}
	}
	if len(o.Rules) == 0 {
		o.Rules = []int{0}
		if o.Scenario == ScenarioDrop {
			o.Rules = []int{1}
		}
	} else if !slices.ContainsFunc(o.Datapaths, func(d string) bool { return findDatapath(d).kind == KindXLB }) {
		return bad("rules %v: only the xlb datapaths have a firewall, and none is selected", o.Rules)
	}
	minRules := 0
	if o.Scenario == ScenarioDrop {
		minRules = 1
	}
	for _, n := range o.Rules {
		if n < minRules || n > maxRules {
			return bad("rules %d: want %d to %d in the %s scenario", n, minRules, maxRules, o.Scenario)
		}
	}
	if len(slices.Compact(slices.Sorted(slices.Values(o.Rules)))) != len(o.Rules) {
		return bad("rules %v: each size once", o.Rules)
	}
	if o.Flows == 0 {
		o.Flows = defaultFlows
	}
	if o.Flows < 1 || o.Flows > labprogs.MaxFlows {
		return bad("flows %d: want 1 to %d", o.Flows, labprogs.MaxFlows)
	}
	if n := o.FlowTableSize; n != 0 && (n < config.MinFlowTableSize || n > config.MaxFlowTableSize || n&(n-1) != 0) {
		return bad("flow table size %d: want a power of two from %d to %d", n, config.MinFlowTableSize, config.MaxFlowTableSize)
	}
	if o.Backends == 0 {
		o.Backends = defaultBackends
	}
	if o.Backends < 1 || o.Backends > maxBackends {
		return bad("backends %d: want 1 to %d", o.Backends, maxBackends)
	}
	switch o.Topology {
	case "":
		o.Topology = TopologyBridge
	case TopologyBridge, TopologyDirect:
	default:
		return bad("topology %q: want %q or %q", o.Topology, TopologyBridge, TopologyDirect)
	}
	ncpu := runtime.NumCPU()
	if len(o.GenCPUs) == 0 {
		o.GenCPUs = []int{0}
	}
	for _, c := range o.GenCPUs {
		if c < 0 || c >= ncpu {
			return bad("generator CPU %d: want 0 to %d", c, ncpu-1)
		}
	}
	if o.Queues == 0 {
		o.Queues = 1
	}
	if o.Queues < 1 || o.Queues > maxQueues {
		return bad("queues %d: want 1 to %d", o.Queues, maxQueues)
	}
	if o.Queues > 1 {
		if o.Topology != TopologyDirect {
			return bad("%d queues: needs the direct topology (the bridge lab's veths have one queue)", o.Queues)
		}
		for _, d := range o.Datapaths {
			if dp := findDatapath(d); !dp.multiQueue {
				return bad("%d queues: datapath %q serves one queue", o.Queues, d)
			}
		}
	}
	if len(o.LBCPUs) == 0 {
		for i := range o.Queues {
			o.LBCPUs = append(o.LBCPUs, (1+i)%ncpu)
		}
	}
	if len(o.LBCPUs) != o.Queues {
		return bad("%d balancer CPUs for %d queues: give one CPU per queue", len(o.LBCPUs), o.Queues)
	}
	for _, c := range o.LBCPUs {
		if c < 0 || c >= ncpu {
			return bad("balancer CPU %d: want 0 to %d", c, ncpu-1)
		}
	}
	tu := &o.Tuning
	if tu.Batch == 0 {
		tu.Batch = 64
	}
	if tu.Ring == 0 {
		tu.Ring = 2048
	}
	if tu.TxBudget == 0 {
		tu.TxBudget = max(64, tu.Batch)
	}
	if tu.Batch < 1 || tu.Batch > 256 {
		return bad("batch %d: want 1 to 256", tu.Batch)
	}
	if tu.Ring < 64 || tu.Ring > 1<<15 || tu.Ring&(tu.Ring-1) != 0 || tu.Ring < tu.Batch {
		return bad("ring size %d: want a power of 2 from 64 to 32768, at least the batch", tu.Ring)
	}
	if tu.TxBudget < 32 || tu.TxBudget > tu.Ring {
		return bad("tx budget %d: want 32 to the ring size %d", tu.TxBudget, tu.Ring)
	}
	if o.Prefix == "" {
		o.Prefix = fmt.Sprintf("xlbperf%d", os.Getpid())
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	return o, nil
}
