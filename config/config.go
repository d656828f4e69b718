package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is one validated configuration file.
type Config struct {
	// File is the name Parse was given; every error names it.
	File     string
	Datapath Datapath
	Control  Control
	Metrics  Metrics
	// BGP is the [bgp] table; zero without one (see BGP.Enabled).
	BGP BGP
	// VIPs in file order. Parse guarantees at least one, each with at
	// least one backend, no two with the same (address, port, protocol).
	VIPs []VIP
	// Firewall is the [firewall] table (global rules).
	Firewall Firewall

	idx *posIndex // where each key is set, for Errorf
}

// Datapath is the [datapath] table: the interface, its queues and workers,
// and the AF_XDP socket settings. Zero values for Queues, CPUs and Source
// mean "resolve on this host": see CheckHost.
type Datapath struct {
	Interface string // required
	// Queues are the RX queues served, one AF_XDP socket and one worker
	// each. Empty: every RX queue of the interface.
	Queues []int
	// CPUs[i] is the CPU worker i (serving Queues[i]) is pinned to. Empty:
	// queue q runs on the (q mod n)th CPU of the process's affinity mask.
	CPUs []int
	// Mode is the datapath: ModeAFXDP (the Go workers) or ModeNative (the
	// in-kernel XDP program over the same tables; see validate.go for
	// what it refuses).
	Mode string
	// XDPMode is how the steering program is attached: XDPModeAuto,
	// XDPModeNative or XDPModeGeneric.
	XDPMode string
	// ZeroCopy is ZeroCopyAuto, ZeroCopyOn or ZeroCopyOff.
	ZeroCopy string

	FrameSize  uint32 // UMEM frame size: 2048 or 4096
	FrameCount uint32 // UMEM frames per queue: a power of two >= FillRing
	// Headroom is extra UMEM headroom per frame in bytes, on top of the
	// kernel's XDP_PACKET_HEADROOM (256) that outer headers already use.
	Headroom uint32

	// Ring sizes: powers of two in [MinRing, MaxRing].
	RxRing, TxRing, FillRing, CompletionRing uint32
	// BatchSize is descriptors per batch, 1..MaxBatch and no larger than
	// any ring.
	BatchSize uint32

	NeedWakeup     bool // bind with XDP_USE_NEED_WAKEUP
	BusyPoll       bool // SO_PREFER_BUSY_POLL + SO_BUSY_POLL
	Spin           bool // busy-spin when idle instead of blocking in poll()
	BusyPollBudget int  // SO_BUSY_POLL_BUDGET, 1..65535
	// TxBudget is XDP_MAX_TX_SKB_BUDGET (copy mode): 0 leaves the kernel's
	// default (32), else 32..TxRing.
	TxBudget uint32
	// Source is the outer IPv4 source address (IPIP, GUE to IPv4
	// backends). Zero: the interface's first IPv4 address, filled in by
	// CheckHost, which fails only if a VIP needs it.
	Source netip.Addr
	// Source6 is the outer IPv6 source address (4in6, IP6IP6, GUE to IPv6
	// backends). Zero: the interface's first global IPv6 address, filled
	// in by CheckHost, which fails only if a VIP needs it.
	Source6 netip.Addr
	// TableSize is the default Maglev table size (a prime) of every VIP.
	TableSize uint32

	// FlowTableSize is the connection tracking capacity of each worker:
	// a power of two in [MinFlowTableSize, MaxFlowTableSize]. It sizes
	// memory allocated at start-up, so changing it needs a restart.
	FlowTableSize uint32
	// FlowTCPTimeout and FlowUDPTimeout are how long a flow stays on its
	// backend without a packet: TCP, and every other protocol (UDP).
	// Both in [MinFlowTimeout, MaxFlowTimeout].
	FlowTCPTimeout, FlowUDPTimeout time.Duration
	// FlowSYNRate is the SYN flood guard: how many SYNs of new flows a
	// second each worker (AF_XDP mode) or each CPU (native mode) tracks
	// from the SYN, 0..MaxFlowSYNRate; past it, such a SYN is forwarded by
	// its Maglev pick without a flow entry, and the flow's first other
	// packet (the client's ACK) makes one. 0 means no limit.
	FlowSYNRate uint32

	// SpliceTableSize is how many connection pairs of splice VIPs the
	// steering program can forward itself once the proxy has handed them
	// over (each pair takes two entries of its splice map), 0..
	// MaxSpliceTableSize; 0 disables the hand-over: splice VIPs stay copied
	// by the proxy. It sizes BPF maps created at start-up, so changing it
	// needs a restart.
	SpliceTableSize uint32

	// ICMPRateLimit is how many ICMP messages of its own (echo replies,
	// frag-needed, packet-too-big) each worker (AF_XDP mode) or each CPU
	// (native mode: the lb program's per-CPU bucket) sends per second at
	// most, 0..MaxICMPRate; 0 means no limit. ICMPRateBurst is how many it
	// may send at once after a quiet spell (the token bucket's depth),
	// 1..MaxICMPRate. Forwarded ICMP errors are not counted.
	ICMPRateLimit, ICMPRateBurst uint32
}

// Control is the [control] table.
type Control struct {
	// Socket is the absolute path of the control socket `xlb stats` talks
	// to; only root may connect.
	Socket string
}

// Metrics is the [metrics] table: where `xlb run` serves Prometheus
// metrics. Absent or with an empty Listen, there is no endpoint. cmd/xlb
// checks Listen with metrics.Options.Validate (the loopback rule).
type Metrics struct {
	Listen      string // HOST:PORT
	AllowRemote bool   // permit a Listen address that is not loopback
}

// VIP is one [[vip]]: a virtual service and its backends.
type VIP struct {
	Address netip.Addr // IPv4 or IPv6
	// Port is the destination port; 0 serves every port of Address. A
	// port-0 VIP may share its address and protocol with specific-port VIPs.
	Port     uint16
	Protocol Protocol // default TCP
	Forward  Forward  // default IPIP
	// GUEPort is the UDP destination port of the outer GUE header: set
	// (default DefaultGUEPort) when Forward is GUE, else 0.
	GUEPort uint16
	// ICMPEcho: the balancer answers ICMP echo requests (ping) to the VIP
	// itself; false drops and counts them (echo_disabled). Default true.
	ICMPEcho bool
	// Fragments is the policy for fragments the datapath cannot balance
	// (they lack the ports of their flow): FragmentsDrop or FragmentsPass.
	Fragments string
	// Health is the VIP's health check, defaults filled in. Every backend
	// carries its own resolved copy in Backend.Health, which the datapath
	// and the checker use; this one is what the backends inherit.
	Health HealthCheck
	// TableSize is the VIP's Maglev table size: its own table_size, else
	// datapath.table_size. Always set after Parse.
	TableSize uint32
	// Firewall is the VIP's allow, deny and syn_rate_limit keys.
	Firewall VIPFirewall
	// BGP is the route's communities and MED when the VIP is announced:
	// [vip.bgp] over [bgp]'s.
	BGP VIPBGP
	// Backends in file order (the Maglev table does not depend on it).
	// Their weights may all be 0: the VIP is then fully drained and takes
	// no new flows. A splice VIP has none: its routes have them.
	Backends []Backend
	// Routes of a splice VIP (Forward == Splice), in file order; see
	// route.go. Splice is its proxy's settings, defaults filled in; zero
	// for other VIPs.
	Routes []Route
	Splice SpliceSettings
}

// Backend is one [[vip.backend]].
type Backend struct {
	// Address is unique within its VIP. Every backend of a VIP is of one
	// family; see Forward for which.
	Address netip.Addr
	// Weight is the backend's configured share of new flows, 0..MaxWeight
	// (default 1). 0 drains it: no new flows, established ones stay. The
	// datapath uses EffectiveWeight, which also honours State.
	Weight uint32
	// State is StateActive or StateDrain. Draining keeps Weight as
	// configured, so setting the state back to active restores it.
	State string
	// MAC is the static next-hop MAC, valid when HasMAC. Without it the
	// next hop is resolved from the kernel's route and neighbour tables.
	// With forward = "dsr" the next hop is the backend itself.
	MAC    [6]byte
	HasMAC bool
	// Local marks the backend that is this host (co-located mode: the
	// balancer runs on the backends themselves). Its flows go to the
	// host's own stack instead of being forwarded. Native mode only.
	Local bool
	// Health is the backend's check: its own [vip.backend.health] over
	// the VIP's spec, else the VIP's spec. Always resolved after Parse.
	Health HealthCheck
}

// EffectiveWeight is the weight new flows see: 0 while the backend drains,
// else Weight. A backend with State "" (a Backend built by hand) is active.
func (b Backend) EffectiveWeight() uint32 {
	if b.State == StateDrain {
		return 0
	}
	return b.Weight
}

// HealthCheck is one resolved health check: [vip.health], or a backend's
// [vip.backend.health] over it. It is comparable, so a reload can tell a
// changed check from an unchanged one with ==. Fields that only an HTTP
// check uses (Path, Host, Expect) are zero for the other kinds.
type HealthCheck struct {
	Kind string // HealthNone, HealthTCP or HealthHTTP
	// Port probed on the backend's address: the file's port, else the
	// VIP's. Never 0 when Kind is not HealthNone.
	Port uint16
	// Path is the HTTP request target, an absolute path with an optional
	// query ("/healthz?full=1").
	Path string
	// Host is the HTTP Host header; "" sends the backend's "ADDR:PORT".
	Host string
	// Expect is the HTTP status that counts as up, 100..599.
	Expect int
	// Interval between probes, in [MinHealthInterval, MaxHealthInterval];
	// Timeout bounds one probe and is shorter than Interval, so probes of
	// one backend never overlap.
	Interval, Timeout time.Duration
	// Rise consecutive successes bring a down backend up; Fall consecutive
	// failures take an up one down. Both 1..MaxHealthThreshold.
	Rise, Fall int
}

// Values of Datapath.Mode.
const (
	ModeAFXDP  = "afxdp"  // steer into AF_XDP sockets; Go workers forward
	ModeNative = "native" // forward in the kernel with XDP_TX
)

// Values of Datapath.XDPMode.
const (
	XDPModeAuto    = "auto"    // native, else generic
	XDPModeNative  = "native"  // in the driver; fail if unsupported
	XDPModeGeneric = "generic" // skb mode: works everywhere, slower
)

// Values of Datapath.ZeroCopy.
const (
	ZeroCopyAuto = "auto" // try zero-copy, fall back to copy mode
	ZeroCopyOn   = "on"   // XDP_ZEROCOPY; fail if unsupported
	ZeroCopyOff  = "off"  // XDP_COPY
)

// Values of Backend.State.
const (
	StateActive = "active" // takes new flows by its weight
	StateDrain  = "drain"  // no new flows; established ones stay
)

// Values of VIP.Fragments.
const (
	// FragmentsDrop counts and drops fragments the datapath cannot
	// balance: a non-first fragment carries no ports, so its flow (and
	// backend) is unknown.
	FragmentsDrop = "drop"
	// FragmentsPass hands them to the kernel's stack, for a host that
	// reassembles or forwards them itself.
	FragmentsPass = "pass"
)

// Values of HealthCheck.Kind.
const (
	HealthNone = "none" // never probed: always up
	HealthTCP  = "tcp"  // up when a TCP connection to the port is accepted
	HealthHTTP = "http" // up when GET Path answers with status Expect
)

// Defaults and bounds. DefaultDatapath returns the defaults as a whole.
const (
	DefaultMode           = ModeAFXDP
	DefaultXDPMode        = XDPModeAuto
	DefaultZeroCopy       = ZeroCopyAuto
	DefaultFrameSize      = 2048
	DefaultFrameCount     = 4096
	DefaultRing           = 2048 // every ring
	DefaultBatchSize      = 64
	DefaultBusyPollBudget = 64
	DefaultTxBudget       = 64
	DefaultTableSize      = 65537
	DefaultSocket         = "/run/xlb/xlb.sock"
	DefaultWeight         = 1
	DefaultFlowTableSize  = 1 << 18
	DefaultFlowTCPTimeout = 15 * time.Minute
	DefaultFlowUDPTimeout = 30 * time.Second
	// DefaultFlowSYNRate is Katran's default connection rate per CPU
	// before it stops adding flows to its LRU: far above the new
	// connections one CPU's share of real clients opens, and about a
	// seventh of the new flows the native program tracks a second on one
	// CPU of the perf lab.
	DefaultFlowSYNRate = 125000
	// DefaultSpliceTableSize is 65536 map entries, two per pair.
	DefaultSpliceTableSize = 1 << 15
	DefaultICMPRateLimit   = 1000 // Linux's net.ipv4.icmp_msgs_per_sec
	DefaultICMPRateBurst   = 50   // Linux's net.ipv4.icmp_msgs_burst
	DefaultGUEPort         = 6080
	DefaultFragments       = FragmentsDrop

	DefaultHealthKind     = HealthNone
	DefaultHealthPath     = "/"
	DefaultHealthExpect   = 200
	DefaultHealthInterval = time.Second
	DefaultHealthTimeout  = 500 * time.Millisecond
	DefaultHealthRise     = 2
	DefaultHealthFall     = 3

	MinRing       = 64
	MaxRing       = 1 << 15
	MaxFrameCount = 1 << 18 // 1 GiB of 4 KB frames per queue
	MaxBatch      = 256
	MinTxBudget   = 32 // the kernel's own budget; less is refused
	MinTableSize  = 251
	MaxTableSize  = 1 << 24
	MaxWeight     = 65535

	MinFlowTableSize = 1 << 10
	MaxFlowTableSize = 1 << 24
	MinFlowTimeout   = time.Second
	MaxFlowTimeout   = 24 * time.Hour // the flow table's own limit

	// MaxSpliceTableSize bounds the splice maps (a hash of two entries per
	// pair, an array of pair states and a per-CPU counter array) to a few
	// hundred MiB of kernel memory at most.
	MaxSpliceTableSize = 1 << 20

	MaxICMPRate = 1000000
	// MaxFlowSYNRate bounds flow_syn_rate: beyond what a CPU can track.
	MaxFlowSYNRate = 100000000

	MinHealthInterval  = 10 * time.Millisecond
	MaxHealthInterval  = time.Hour
	MaxHealthThreshold = 100

	// xdpPacketHeadroom is the kernel's XDP_PACKET_HEADROOM and
	// frameRoom what a frame must keep for a full-size packet plus outer
	// headers; Headroom may take what is left.
	xdpPacketHeadroom = 256
	frameRoom         = 1536
)

// DefaultDatapath returns the [datapath] settings used for every key the file
// leaves out. Interface has no default.
func DefaultDatapath() Datapath {
	return Datapath{
		Mode:            DefaultMode,
		XDPMode:         DefaultXDPMode,
		ZeroCopy:        DefaultZeroCopy,
		FrameSize:       DefaultFrameSize,
		FrameCount:      DefaultFrameCount,
		RxRing:          DefaultRing,
		TxRing:          DefaultRing,
		FillRing:        DefaultRing,
		CompletionRing:  DefaultRing,
		BatchSize:       DefaultBatchSize,
		NeedWakeup:      true,
		BusyPollBudget:  DefaultBusyPollBudget,
		TxBudget:        DefaultTxBudget,
		TableSize:       DefaultTableSize,
		FlowTableSize:   DefaultFlowTableSize,
		FlowTCPTimeout:  DefaultFlowTCPTimeout,
		FlowUDPTimeout:  DefaultFlowUDPTimeout,
		FlowSYNRate:     DefaultFlowSYNRate,
		SpliceTableSize: DefaultSpliceTableSize,
		ICMPRateLimit:   DefaultICMPRateLimit,
		ICMPRateBurst:   DefaultICMPRateBurst,
	}
}

// DefaultHealth returns the health check of a VIP whose file sets none, for
// a VIP on port.
func DefaultHealth(port uint16) HealthCheck {
	return HealthCheck{
		Kind:     DefaultHealthKind,
		Port:     port,
		Interval: DefaultHealthInterval,
		Timeout:  DefaultHealthTimeout,
		Rise:     DefaultHealthRise,
		Fall:     DefaultHealthFall,
	}
}

// Error is every error this package returns about a file: a key and the line
// where the file sets it (or, for a key the file lacks, where its table
// starts). Several errors are joined with errors.Join, one per line, in line
// order; errors.As finds the first.
type Error struct {
	File string
	Line int    // 1-based; 0 if unknown
	Key  string // "vip[1].backend[0].address"; may be empty for syntax errors
	Msg  string
}

// Error formats "FILE:LINE: KEY: message", leaving out what is unknown.
func (e *Error) Error() string {
	s := e.File
	if e.Line > 0 {
		s += ":" + strconv.Itoa(e.Line)
	}
	if e.Key != "" {
		if s != "" {
			s += ": "
		}
		s += e.Key
	}
	if s != "" {
		s += ": "
	}
	return s + e.Msg
}

// Load reads and parses the file at path. It reads at most MaxFileSize
// bytes (and one more, to tell a larger file).
func Load(path string) (*Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return Parse(path, data)
}

// Parse decodes data, fills defaults and validates everything that does not
// depend on the host (CheckHost does the rest). file names the source in
// errors. Every error is an *Error, or several joined.
func Parse(file string, data []byte) (*Config, error) {
	if len(data) > MaxFileSize {
		return nil, errTooLarge(file)
	}
	idx := newPosIndex(data)
	if idx.deep > 0 {
		return nil, &Error{File: file, Line: idx.deep, Key: idx.lineKey(idx.deep), Msg: fmt.Sprintf("nested more than %d levels deep", maxDepth)}
	}
	var tree map[string]any
	if _, err := toml.Decode(string(data), &tree); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			line := pe.Position.Line
			if line < 1 { // seen at the end of the input
				line = 1 + bytes.Count(data[:min(max(pe.Position.Start, 0), len(data))], []byte("\n"))
			}
			key := idx.lineKey(line)
			if key == "" {
				key = pe.LastKey
			}
			return nil, &Error{File: file, Line: line, Key: key, Msg: pe.Message}
		}
		return nil, &Error{File: file, Line: 1, Msg: err.Error()}
	}
	d := &decoder{file: file, idx: idx}
	c := d.config(tree)
	if err := d.err(); err != nil {
		return nil, err
	}
	d.validate(c)
	if err := d.err(); err != nil {
		return nil, err
	}
	c.idx = idx
	return c, nil
}

// Errorf returns an *Error about key ("datapath.interface",
// "vip[0].backend[1].address") at the line where the file sets it. It is for
// callers that find a key wrong later, on the host or in the kernel, so that
// they report it the way Parse does.
func (c *Config) Errorf(key string, format string, args ...any) error {
	return &Error{File: c.File, Line: c.idx.line(key), Key: key, Msg: fmt.Sprintf(format, args...)}
}
