package bpf

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/flowtable"
	"github.com/xlbproject/xlb/hash"
)

// Defaults of LBOptions.
const (
	// DefaultLBFlowTableSize is the default size (entries) of each flow
	// table (one for IPv4, one for IPv6). An LRU hash is preallocated:
	// about 100 bytes of kernel memory per IPv4 entry (130 per IPv6 one),
	// so about 230 MiB for the default.
	DefaultLBFlowTableSize = 1 << 20
	// LBFlowCacheSize is the number of entries of each CPU's flow caches
	// (one per family; lbflowcache.h) in front of the flow tables: 1 MiB
	// of IPv4 entries and 2 MiB of IPv6 ones per possible CPU, pages the
	// TLB covers. Smaller if the flow tables are. A few thousand flows
	// per CPU fill a quarter of its buckets, so few share one.
	LBFlowCacheSize = 1 << 15
	// lbFlowCacheWays is FC_WAYS, the entries of a cache bucket.
	lbFlowCacheWays = 2
	// DefaultLBMaxVIPs is how many VIP indexes the program holds by default.
	DefaultLBMaxVIPs = 64
	// DefaultLBMaxBackends is how many backend indexes the backends map
	// holds by default.
	DefaultLBMaxBackends = 4096
	// MaxLBBackends bounds LBOptions.MaxBackends: a backend ID's index is
	// its low 16 bits.
	MaxLBBackends = 1 << 16
)

// LBFlowExpiry states how the lb program ages its flow tables, for `xlb
// check` and the docs: the same rule as the Go worker's flow table, applied
// when a packet looks its flow up.
const LBFlowExpiry = "a flow entry idle longer than its protocol's timeout (TCP, or UDP for every other protocol; counted in kernel ticks, rounded up to one; up to a sixteenth of it earlier for a flow the per-CPU flow cache served) is a miss: the flow re-picks its backend from the Maglev table; entries are never swept, the LRU evicts the least recently used ones when a table is full"

// ErrNoSource: LB.Attach was called before LB.SetSource.
var ErrNoSource = errors.New("bpf: lb has no source address yet (SetSource)")

// LBOptions size the lb program's maps. Zero values take the defaults.
type LBOptions struct {
	// FlowTableSize is the number of flows each LRU flow table (IPv4,
	// IPv6) holds (DefaultLBFlowTableSize).
	FlowTableSize int
	// TableSize is the usual Maglev table size (hash.DefaultTableSize); it
	// only sizes the default MaglevSlots. Each VIP's table has the size
	// given to SetTable.
	TableSize uint32
	// MaxVIPs bounds the VIP indexes (VIPEntry.ID < MaxVIPs).
	MaxVIPs int
	// MaglevSlots is the capacity of the maglev map, which holds every
	// VIP's table (8 bytes per slot), fixed at load. It must hold all the
	// tables at once plus the largest one: a table that changes size is
	// written next to the old one before the VIP switches to it. Default:
	// (MaxVIPs+1)*TableSize, 32.5 MiB with the defaults.
	MaglevSlots int
	// MaxBackends bounds the backend indexes (DefaultLBMaxBackends, at
	// most MaxLBBackends).
	MaxBackends int
}

func (o LBOptions) withDefaults() (LBOptions, error) {
	if o.FlowTableSize == 0 {
		o.FlowTableSize = DefaultLBFlowTableSize
	}
	if o.TableSize == 0 {
		o.TableSize = hash.DefaultTableSize
	}
	if o.MaxVIPs == 0 {
		o.MaxVIPs = DefaultLBMaxVIPs
	}
	if o.MaxBackends == 0 {
		o.MaxBackends = DefaultLBMaxBackends
	}
	switch {
	case o.FlowTableSize < lbFlowCacheWays || o.FlowTableSize > 1<<28:
		return o, fmt.Errorf("bpf: lb: invalid flow table size %d (want %d..%d)", o.FlowTableSize, lbFlowCacheWays, 1<<28)
	case o.TableSize > hash.MaxTableSize:
		return o, fmt.Errorf("bpf: lb: invalid Maglev table size %d (at most %d)", o.TableSize, hash.MaxTableSize)
	case o.MaxVIPs < 0 || o.MaxVIPs > 1<<16: // a flow cache entry holds the VIP index in 16 bits
		return o, fmt.Errorf("bpf: lb: invalid VIP count %d (want 1..%d)", o.MaxVIPs, 1<<16)
	case o.MaxBackends < 0 || o.MaxBackends > MaxLBBackends:
		return o, fmt.Errorf("bpf: lb: invalid backend count %d (want 1..%d)", o.MaxBackends, MaxLBBackends)
	}
	if o.MaglevSlots == 0 {
		o.MaglevSlots = (o.MaxVIPs + 1) * int(o.TableSize)
	}
	if o.MaglevSlots < 0 || o.MaglevSlots > 1<<28 {
		return o, fmt.Errorf("bpf: lb: invalid Maglev capacity %d slots (want 1..%d)", o.MaglevSlots, 1<<28)
	}
	return o, nil
}

// LBForward is how a VIP's frames reach its backends in the lb program;
// the values are config.Forward's.
type LBForward uint8

const (
	// LBForwardIPIP: IP-in-IP in the backend's family (IPIP, 6in4, 4in6,
	// IP6IP6). The zero LBForward means this too.
	LBForwardIPIP LBForward = 1
	// LBForwardGUE: GUE over UDP to VIPEntry.GUEPort.
	LBForwardGUE LBForward = 2
	// LBForwardDSR: L2 direct server return (the destination MAC only).
	LBForwardDSR LBForward = 3
)

// LBBackend is one backend of the lb program. Its index in the slice given
// to SetBackends is its backend index; its ID, the value Maglev slots and
// flow entries hold, is the index | Generation<<16.
type LBBackend struct {
	// Addr is the backend's IPv4 or IPv6 address, the outer destination
	// (unused by DSR). The zero Addr marks an unused index: flows pinned
	// to it pick again.
	Addr netip.Addr
	// MAC is the next hop's Ethernet address, used when Resolved.
	MAC [6]byte
	// Resolved: MAC is known. Frames for an unresolved backend are dropped
	// (no_neighbor), as the Go worker does.
	Resolved bool
	// Local marks this host's own address in co-located mode: the
	// program hands the backend's flows to the kernel's stack (XDP_PASS)
	// instead of forwarding them.
	Local bool
	// Generation is the high half of the backend's ID. A control plane
	// that reuses an index for another backend gives it a new generation:
	// flows pinned to the old ID then pick again.
	Generation uint16
}

// LBBackendID is the ID of the backend at index with generation gen: what
// SetTable's slots hold.
func LBBackendID(index int, gen uint16) uint32 { return uint32(index)&0xffff | uint32(gen)<<16 }

// Flags of struct backend in lb.c.
const (
	lbBackendValid    = 1
	lbBackendResolved = 2
	lbBackendV6       = 4
	lbBackendLocal    = 8
)

// Values of struct vip_conf's forward in lb.c.
func (f LBForward) conf() uint8 {
	if f == 0 {
		return uint8(LBForwardIPIP)
	}
	return uint8(f)
}

// LBCounters are the lb program's counters summed over CPUs.
// Seen = Forwarded + EchoReplies + Passed + Malformed + Dropped.
type LBCounters struct {
	Seen, Forwarded, Passed, Malformed uint64
	// FlowHits counts the forwarded frames whose backend came from the
	// flow table rather than the Maglev table.
	FlowHits uint64
	// EchoReplies counts the echo requests to a VIP answered (echo_reply).
	EchoReplies uint64
	// FragNeeded counts the frag-needed / packet-too-big errors sent back
	// to clients (frag_needed_sent), each for a frame also counted in
	// Drops["too_big"].
	FragNeeded uint64
	// ICMPErrors counts the ICMP errors about a VIP flow sent on to the
	// flow's backend (icmp_error_forwarded), also counted in Forwarded.
	ICMPErrors uint64
	// ICMPRateLimited counts the echo replies and frag-needed /
	// packet-too-big errors not sent for want of a token (the Go worker's
	// event icmp_rate_limited); see SetICMPRate. Each is for a frame also
	// counted in Drops, as echo_rate_limited or too_big.
	ICMPRateLimited uint64
	// SYNUntracked counts the SYNs of new flows forwarded without a flow
	// entry, past the SYN flood guard's rate (the Go worker's event
	// syn_untracked); see SetSYNRate. Each is also counted in Forwarded.
	SYNUntracked uint64
	// Dropped is the sum of Drops.
	Dropped uint64
	// Drops counts the dropped frames by reason, named as the Go worker's
	// drop reasons (no_vip, no_backend, no_neighbor, too_big, fragment...);
	// every reason is present, zeros included.
	Drops map[string]uint64
}

// LBBackendCounters are one backend's forwarded packets and bytes (as
// received, before encapsulation) and its handshake round-trip times,
// summed over CPUs.
type LBBackendCounters struct {
	Packets, Bytes uint64
	// RTTBuckets and RTTSum are the backend's handshake RTT histogram
	// (lbrtt.h): the buckets are datapath's (RTTBuckets, RTTBucketBound),
	// the sum is in nanoseconds.
	RTTBuckets [LBRTTBuckets]uint64
	RTTSum     uint64
}

// LBRTTBuckets is the number of buckets of the program's handshake RTT
// histograms: datapath.RTTBuckets (the engine assigns one array type to
// the other, so the build fails if they differ).
const LBRTTBuckets = 24

// Sub returns c less base, each count floored at 0: what a backend counted
// since base was read on its index.
func (c LBBackendCounters) Sub(base LBBackendCounters) LBBackendCounters {
	d := LBBackendCounters{Packets: c.Packets - min(base.Packets, c.Packets), Bytes: c.Bytes - min(base.Bytes, c.Bytes), RTTSum: c.RTTSum - min(base.RTTSum, c.RTTSum)}
	for i, n := range c.RTTBuckets {
		d.RTTBuckets[i] = n - min(base.RTTBuckets[i], n)
	}
	return d
}

// LB owns the loaded lb program, its maps and its XDP attachment. Its
// methods are safe for concurrent use; Close releases everything.
type LB struct {
	mu       sync.Mutex
	objs     lbLoaded
	tables   *ebpf.Memory // the maglev map's memory
	conf     *ebpf.Memory // the vip_conf map's memory
	opts     LBOptions
	link     link.Link
	backends int // length of the last SetBackends
	settings lbSettings
	tcp, udp time.Duration // the idle timeouts, settings holds them in jiffies
	hz       uint64        // the kernel's jiffies per second
	source   bool
	regions  map[uint32]region // VIP index -> its table in the maglev map
	free     []region          // free ranges of the maglev map, sorted, coalesced
	closed   bool
	fw       *Firewall
	capture  *LBCapture // the capture running, nil when none
}

// Firewall returns the program's firewall maps.
func (lb *LB) Firewall() *Firewall { return lb.fw }

// region is a range of Maglev slots.
type region struct{ off, size uint32 }

// LoadLB loads the lb program with maps sized by opts, without attaching
// it. The caller must Close the returned LB.
func LoadLB(opts LBOptions) (*LB, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	if err := memlockOnce(); err != nil {
		return nil, err
	}
	spec, err := lbSpec(opts)
	if err != nil {
		return nil, err
	}
	lb := &LB{opts: opts, regions: map[uint32]region{}, free: []region{{0, uint32(opts.MaglevSlots)}}}
	if err := spec.LoadAndAssign(&lb.objs, nil); err != nil {
		return nil, fmt.Errorf("bpf: load lb: %w", err)
	}
	if lb.fw, err = newFirewall(lb.objs.FwRules, lb.objs.FwTrieA, lb.objs.FwTrieB, lb.objs.FwRuleStats, lb.objs.FwVipStats); err != nil {
		lb.objs.Close()
		return nil, err
	}
	if lb.tables, err = lb.objs.Maglev.Memory(); err != nil {
		lb.objs.Close()
		return nil, fmt.Errorf("bpf: lb: map the Maglev tables: %w", err)
	}
	if lb.conf, err = lb.objs.VipConf.Memory(); err != nil {
		lb.objs.Close()
		return nil, fmt.Errorf("bpf: lb: map the VIP configurations: %w", err)
	}
	// Every VIP index starts with no table (size 0: no_backend).
	if lb.hz, err = lb.measureHZ(); err != nil {
		lb.objs.Close()
		return nil, err
	}
	lb.tcp, lb.udp = flowtable.DefaultTCPTimeout, flowtable.DefaultUDPTimeout
	lb.settings.TcpTimeout, lb.settings.UdpTimeout = lb.jiffies(lb.tcp), lb.jiffies(lb.udp)
	lb.settings.FlowSync = flowSync(lb.settings.TcpTimeout, lb.settings.UdpTimeout)
	lb.settings.VipsGen = 1 // the zeroed vip_cache's slots hold generation 0: none valid
	lb.settings.SynWindow = uint32(lb.hz)
	if err := lb.writeSettings(); err != nil {
		lb.objs.Close()
		return nil, err
	}
	return lb, nil
}

// clock returns the kernel's jiffies and monotonic time (ns), read by the
// xlb_lb_clock program in one run.
func (lb *LB) clock() (jiffies, ns uint64, err error) {
	opts := ebpf.RunOptions{Data: make([]byte, 64), DataOut: make([]byte, 64)}
	if _, err := lb.objs.XlbLbClock.Run(&opts); err != nil {
		return 0, 0, fmt.Errorf("bpf: lb: read the kernel's clock: %w", err)
	}
	return binary.NativeEndian.Uint64(opts.DataOut[0:8]), binary.NativeEndian.Uint64(opts.DataOut[8:16]), nil
}

// hzChoices are the kernel's CONFIG_HZ values; a measurement within 10% of
// one is taken to be it.
var hzChoices = []uint64{100, 250, 300, 1000}

// measureHZ learns the kernel's HZ, which the program's clock (jiffies)
// counts in, from two clock readings at least 100 ms apart: one tick of
// error in 100 ms is 10 Hz, which tells every choice from the others.
func (lb *LB) measureHZ() (uint64, error) {
	j0, t0, err := lb.clock()
	if err != nil {
		return 0, err
	}
	var j1, t1 uint64
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		time.Sleep(110 * time.Millisecond)
		if j1, t1, err = lb.clock(); err != nil {
			return 0, err
		}
		if t1-t0 >= uint64(100*time.Millisecond) {
			break
		}
	}
	if t1 <= t0 || j1 <= j0 {
		return 0, fmt.Errorf("bpf: lb: the kernel's clock does not advance (jiffies %d -> %d, %d ns -> %d ns)", j0, j1, t0, t1)
	}
	hz := (j1 - j0) * uint64(time.Second) / (t1 - t0)
	for _, c := range hzChoices {
		if hz*10 >= c*9 && hz*10 <= c*11 {
			return c, nil
		}
	}
	return max(hz, 1), nil
}

// jiffies converts d into the program's clock, rounding up.
func (lb *LB) jiffies(d time.Duration) uint64 {
	return (uint64(d)*lb.hz + uint64(time.Second) - 1) / uint64(time.Second)
}

// lbSpec returns the lb collection sized by opts.
func lbSpec(opts LBOptions) (*ebpf.CollectionSpec, error) {
	spec, err := loadLb()
	if err != nil {
		return nil, fmt.Errorf("bpf: load lb: %w", err)
	}
	// The tables and VIP configurations are written through a memory
	// mapping: a system call per slot took 2 us, 140 ms per table of 65537
	// slots; and a table's position is switched with one 8-byte store.
	spec.Maps[lbMapMaglev].MaxEntries = uint32(opts.MaglevSlots)
	spec.Maps[lbMapMaglev].Flags |= unix.BPF_F_MMAPABLE
	spec.Maps[lbMapVipConf].MaxEntries = uint32(opts.MaxVIPs)
	spec.Maps[lbMapVipConf].Flags |= unix.BPF_F_MMAPABLE
	spec.Maps[lbMapBackends].MaxEntries = uint32(opts.MaxBackends)
	spec.Maps[lbMapBackendStats].MaxEntries = uint32(opts.MaxBackends)
	spec.Maps[lbMapRttHists].MaxEntries = uint32(opts.MaxBackends)
	spec.Maps[lbMapFlows].MaxEntries = uint32(opts.FlowTableSize)
	spec.Maps[lbMapFlows6].MaxEntries = uint32(opts.FlowTableSize)
	// Each CPU's slice of the flow caches: 2^cache_shift buckets, as many
	// as hold the flow tables' entries or LBFlowCacheSize, rounded down to
	// a power of two.
	cpus, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("bpf: lb: %w", err)
	}
	shift := bits.Len(uint(min(opts.FlowTableSize, LBFlowCacheSize)/lbFlowCacheWays)) - 1
	if err := spec.Variables[lbVarCacheShift].Set(uint32(shift)); err != nil {
		return nil, fmt.Errorf("bpf: lb: %w", err)
	}
	for _, m := range []string{lbMapFlowCache, lbMapFlowCache6} {
		spec.Maps[m].MaxEntries = uint32(cpus << shift)
		spec.Maps[m].Flags |= unix.BPF_F_MMAPABLE
	}
	return spec, nil
}

// lbLoaded is what LoadLB loads from the lb collection: the maps, the
// datapath program and the clock reader, not the benchmark harness
// (xlb_lb_bench).
type lbLoaded struct {
	lbMaps
	XlbLb        *ebpf.Program  `ebpf:"xlb_lb"`
	XlbLbCapture *ebpf.Program  `ebpf:"xlb_lb_capture"`
	XlbLbClock   *ebpf.Program  `ebpf:"xlb_lb_clock"`
	CaptureOn    *ebpf.Variable `ebpf:"capture_on"`
	CaptureConf  *ebpf.Variable `ebpf:"capture_conf"`
	FlowEpoch    *ebpf.Variable `ebpf:"flow_epoch"`
}

func (o *lbLoaded) Close() error {
	return errors.Join(o.lbMaps.Close(), o.XlbLb.Close(), o.XlbLbCapture.Close(), o.XlbLbClock.Close())
}

// Options returns the options the LB was loaded with, defaults filled in.
func (lb *LB) Options() LBOptions { return lb.opts }

// SetVIPs replaces the VIPs, as Steer.SetVIPs does (address markers
// included), IPv4 and IPv6. Each VIP's ID is its index: below MaxVIPs,
// the index SetTable gives a table; VIPs sharing an ID share its table and
// must agree on Forward and GUEPort. The address marker answers echo
// requests if the address's first VIP in vips has ICMPEcho, and passes
// fragments to the kernel if any of its VIPs has PassFragments. Frames to a
// VIP address that match no VIP are dropped (no_vip). The tables of
// indexes no VIP uses any more are freed. Every SetVIPs, even one that
// fails after writing part of the set, outdates the program's per-CPU
// cache of VIP resolutions before it returns, so that later frames resolve
// from the maps as they are (unless writing the settings, which does it,
// fails: that error is returned too).
func (lb *LB) SetVIPs(vips []VIPEntry) error {
	confs := map[uint32]VIPEntry{}
	want, err := vipEntries(vips, func(v VIPEntry) error {
		if v.ID >= uint32(lb.opts.MaxVIPs) {
			return fmt.Errorf("bpf: lb: VIP %v: index %d out of range (MaxVIPs %d)", v.Key, v.ID, lb.opts.MaxVIPs)
		}
		switch v.Forward {
		case 0, LBForwardIPIP, LBForwardDSR:
		case LBForwardGUE:
			if v.GUEPort == 0 {
				return fmt.Errorf("bpf: lb: VIP %v: GUE needs a port", v.Key)
			}
		default:
			return fmt.Errorf("bpf: lb: VIP %v: invalid forward mode %d", v.Key, v.Forward)
		}
		if c, ok := confs[v.ID]; ok && (c.Forward.conf() != v.Forward.conf() || c.GUEPort != v.GUEPort) {
			return fmt.Errorf("bpf: lb: VIPs %v and %v share index %d with different forwarding", c.Key, v.Key, v.ID)
		}
		confs[v.ID] = v
		return nil
	})
	if err != nil {
		return err
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return ErrClosed
	}
	// The configurations first: a new VIP's first frame must find its own.
	for id, v := range confs {
		var w [8]byte
		w[0] = v.Forward.conf()
		binary.BigEndian.PutUint16(w[2:4], v.GUEPort)
		if _, err := lb.conf.WriteAt(w[:], int64(id)*lbVIPConfSize+8); err != nil {
			return fmt.Errorf("bpf: lb: configure VIP index %d: %w", id, err)
		}
	}
	if n := uint32(len(want)); n > lb.objs.Vips.MaxEntries() {
		return fmt.Errorf("%w: %d entries (markers included), room for %d", ErrTooManyVIPs, n, lb.objs.Vips.MaxEntries())
	}
	want4, want6 := map[lbVip4Key]vipValue{}, map[VIPKey]vipValue{}
	for k, v := range want {
		if k.Family == 4 {
			want4[vip4Key(k)] = v
		} else {
			want6[k] = v
		}
	}
	err = syncVIPs(lb.objs.Vips4, want4)
	if err == nil {
		err = syncVIPs(lb.objs.Vips, want6)
	}
	// A new generation whatever was written, even in part: the program's
	// cached resolutions (vip_cache) are of the maps as they were.
	nextGen := func(s *lbSettings) {
		if s.VipsGen++; s.VipsGen == 0 {
			s.VipsGen = 1
		}
	}
	if err := errors.Join(err, lb.changeSettings(nextGen)); err != nil {
		return err
	}
	for id := range lb.regions {
		if _, ok := confs[id]; !ok {
			if err := lb.setRegion(id, region{}); err != nil {
				return err
			}
		}
	}
	return nil
}

// vip4Key is the vips4 map's key of the IPv4 key k.
func vip4Key(k VIPKey) lbVip4Key {
	return lbVip4Key{Addr: binary.NativeEndian.Uint32(k.Addr[:4]), Port: k.Port, Proto: k.Proto}
}

func (k lbVip4Key) String() string {
	v := VIPKey{Port: k.Port, Proto: k.Proto, Family: 4}
	binary.NativeEndian.PutUint32(v.Addr[:4], k.Addr)
	return v.String()
}

// lbVIPConfSize is the size of struct vip_conf; the kernel places array
// values 8-byte aligned, which 16 already is.
const lbVIPConfSize = 16

// SetTable writes the Maglev table of VIP index vip: slots are backend IDs
// (LBBackendID; their index below MaxBackends) or hash.EmptySlot, any
// number of them up to hash.MaxTableSize. A table of the size the index
// had is rewritten in place, each slot atomically (an aligned 4-byte
// store) but not the table as a whole: for the few microseconds the copy
// takes, new flows may see a mix of the old and new tables (each a valid
// choice). A table of a new size is written elsewhere in the maglev map
// and switched to with one atomic store. Established flows keep their
// backend through the flow table either way. It fails, changing nothing,
// if the maglev map has no room for the new table (LBOptions.MaglevSlots).
func (lb *LB) SetTable(vip uint32, slots []uint32) error {
	if vip >= uint32(lb.opts.MaxVIPs) {
		return fmt.Errorf("bpf: lb: set table: VIP index %d out of range (MaxVIPs %d)", vip, lb.opts.MaxVIPs)
	}
	if len(slots) == 0 || len(slots) > int(hash.MaxTableSize) {
		return fmt.Errorf("bpf: lb: set table of VIP %d: %d slots (want 1..%d)", vip, len(slots), hash.MaxTableSize)
	}
	for i, s := range slots {
		if s != hash.EmptySlot && s&0xffff >= uint32(lb.opts.MaxBackends) {
			return fmt.Errorf("bpf: lb: set table of VIP %d: slot %d holds backend ID %#x (index past MaxBackends %d)", vip, i, s, lb.opts.MaxBackends)
		}
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return ErrClosed
	}
	old, ok := lb.regions[vip]
	if ok && old.size == uint32(len(slots)) {
		return lb.writeSlots(vip, old.off, slots)
	}
	r, ok := lb.alloc(uint32(len(slots)))
	if !ok {
		return fmt.Errorf("bpf: lb: set table of VIP %d: no room for %d slots in the maglev map (MaglevSlots %d)", vip, len(slots), lb.opts.MaglevSlots)
	}
	if err := lb.writeSlots(vip, r.off, slots); err != nil {
		lb.release(r)
		return err
	}
	return lb.setRegion(vip, r)
}

// setRegion points VIP index vip at table r (size 0: none) and frees the
// table it had.
func (lb *LB) setRegion(vip uint32, r region) error {
	var w [8]byte
	binary.NativeEndian.PutUint32(w[0:4], r.off)
	binary.NativeEndian.PutUint32(w[4:8], r.size)
	// One aligned 8-byte copy: the program reads offset and size together.
	if _, err := lb.conf.WriteAt(w[:], int64(vip)*lbVIPConfSize); err != nil {
		return fmt.Errorf("bpf: lb: switch the table of VIP %d: %w", vip, err)
	}
	if old, ok := lb.regions[vip]; ok {
		lb.release(old)
	}
	if r.size == 0 {
		delete(lb.regions, vip)
	} else {
		lb.regions[vip] = r
	}
	return nil
}

// alloc takes size slots from the free ranges (first fit).
func (lb *LB) alloc(size uint32) (region, bool) {
	for i, f := range lb.free {
		if f.size < size {
			continue
		}
		r := region{f.off, size}
		if f.size == size {
			lb.free = append(lb.free[:i], lb.free[i+1:]...)
		} else {
			lb.free[i] = region{f.off + size, f.size - size}
		}
		return r, true
	}
	return region{}, false
}

// release returns r to the free ranges, merged with its neighbours.
func (lb *LB) release(r region) {
	i, _ := slices.BinarySearchFunc(lb.free, r.off, func(f region, off uint32) int { return cmp.Compare(f.off, off) })
	lb.free = slices.Insert(lb.free, i, r)
	if i+1 < len(lb.free) && lb.free[i].off+lb.free[i].size == lb.free[i+1].off {
		lb.free[i].size += lb.free[i+1].size
		lb.free = slices.Delete(lb.free, i+1, i+2)
	}
	if i > 0 && lb.free[i-1].off+lb.free[i-1].size == lb.free[i].off {
		lb.free[i-1].size += lb.free[i].size
		lb.free = slices.Delete(lb.free, i, i+1)
	}
}

// maglevStride is the distance between two slots in the maglev map's
// memory: the kernel rounds an array map's values up to 8 bytes.
const maglevStride = 8

func (lb *LB) writeSlots(vip, off uint32, slots []uint32) error {
	b := make([]byte, 0, maglevStride*len(slots))
	for _, s := range slots {
		b = binary.NativeEndian.AppendUint32(b, s)
		b = append(b, 0, 0, 0, 0)
	}
	if _, err := lb.tables.WriteAt(b, int64(off)*maglevStride); err != nil {
		return fmt.Errorf("bpf: lb: write table of VIP %d: %w", vip, err)
	}
	return nil
}

// SetBackends replaces the backends: backends[i] gets index i and ID
// LBBackendID(i, backends[i].Generation). Indexes at or past len(backends)
// that were in use are freed (as an entry with the zero Addr frees its
// index). The flow table pins flows to IDs and a flow whose ID is no longer
// the one at its index picks again, so the caller keeps a backend's ID
// while it exists (a draining backend keeps it, with no slot in the
// tables), and gives an index it reuses for another backend a new
// generation.
func (lb *LB) SetBackends(backends []LBBackend) error {
	if len(backends) > lb.opts.MaxBackends {
		return fmt.Errorf("bpf: lb: %d backends, room for %d (MaxBackends)", len(backends), lb.opts.MaxBackends)
	}
	entries := make([]lbBackend, len(backends))
	for i, b := range backends {
		if !b.Addr.IsValid() {
			continue
		}
		e := &entries[i]
		e.Id = LBBackendID(i, b.Generation)
		e.Flags = lbBackendValid
		if a := b.Addr.Unmap(); a.Is4() {
			a4 := a.As4()
			copy(e.Addr[:], a4[:])
		} else {
			e.Addr = a.As16()
			e.Flags |= lbBackendV6
		}
		e.Mac = b.MAC
		if b.Resolved {
			e.Flags |= lbBackendResolved
		}
		if b.Local {
			e.Flags |= lbBackendLocal
		}
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return ErrClosed
	}
	for len(entries) < lb.backends {
		entries = append(entries, lbBackend{})
	}
	if len(entries) > 0 {
		keys := make([]uint32, len(entries))
		for i := range keys {
			keys[i] = uint32(i)
		}
		if _, err := lb.objs.Backends.BatchUpdate(keys, entries, nil); err != nil {
			return fmt.Errorf("bpf: lb: set backends: %w", err)
		}
	}
	lb.backends = len(backends)
	return nil
}

// nativeAddr is an IPv4 address as its bytes sit in memory, loaded as a
// native-endian word: the form of a __be32 field.
func nativeAddr(a [4]byte) uint32 {
	return binary.NativeEndian.Uint32(a[:])
}

// SetSource sets the outer IPv4 source address (the zero address: none,
// frames for IPv4 backends are dropped as no_source), the interface's MAC
// (the source of the frames sent) and the egress MTU: a frame whose
// encapsulated IP packet would exceed it is dropped (too_big) and answered
// with a frag-needed or packet-too-big when the Go worker would.
func (lb *LB) SetSource(addr [4]byte, mac [6]byte, mtu int) error {
	if mtu < 68 || mtu > 65535 {
		return fmt.Errorf("bpf: lb: invalid MTU %d (want 68..65535)", mtu)
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return ErrClosed
	}
	err := lb.changeSettings(func(s *lbSettings) { s.Addr, s.Mac, s.Mtu = nativeAddr(addr), mac, uint16(mtu) })
	if err != nil {
		return err
	}
	lb.source = true
	return nil
}

// SetSource6 sets the outer IPv6 source address for IPv6 backends (the
// zero address: none, their frames are dropped as no_source).
func (lb *LB) SetSource6(addr [16]byte) error {
	if a := netip.AddrFrom16(addr); a.Is4In6() {
		return fmt.Errorf("bpf: lb: IPv6 source %v is an IPv4-mapped address", a)
	}
	return lb.setting(func(s *lbSettings) { s.Addr6 = addr })
}

// SetTimeouts sets the flow idle timeouts, of TCP and of every other
// protocol (UDP), each in [1ms, flowtable.MaxTimeout]; see LBFlowExpiry.
// The defaults are flowtable's. It applies to entries already in the
// tables: their age is checked against the timeout of the moment. The
// program counts time in the kernel's ticks (jiffies, 1 to 10 ms): a
// timeout is rounded up to a whole tick.
func (lb *LB) SetTimeouts(tcp, udp time.Duration) error {
	for _, d := range []time.Duration{tcp, udp} {
		if d < time.Millisecond || d > flowtable.MaxTimeout {
			return fmt.Errorf("bpf: lb: flow timeout %v out of range [1ms, %v]", d, flowtable.MaxTimeout)
		}
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return ErrClosed
	}
	err := lb.changeSettings(func(s *lbSettings) {
		s.TcpTimeout, s.UdpTimeout = lb.jiffies(tcp), lb.jiffies(udp)
		s.FlowSync = flowSync(s.TcpTimeout, s.UdpTimeout)
	})
	if err != nil {
		return err
	}
	lb.tcp, lb.udp = tcp, udp
	return nil
}

// flowSync is settings.flow_sync for idle timeouts of tcp and udp jiffies:
// log2 of the largest power of two within a sixteenth of the shorter (0
// below 32 jiffies). A flow cache hit writes the flow's time through to the
// flow table whenever it crosses a multiple of that many jiffies, and the
// cache stops short of the timeout by as much (lbflowcache.h).
func flowSync(tcp, udp uint64) uint32 {
	return uint32(max(bits.Len64(min(tcp, udp)/16), 1) - 1)
}

// Timeouts returns the flow idle timeouts in force.
func (lb *LB) Timeouts() (tcp, udp time.Duration) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	return lb.tcp, lb.udp
}

// SetICMPRate limits the ICMP messages the program sends itself (echo
// replies, frag-needed / packet-too-big) to perSec a second with bursts of
// up to burst, per CPU: each CPU has its own token bucket, as each AF_XDP
// worker has (datapath.ICMPRate). perSec 0 means no limit (the default);
// otherwise burst must be at least 1. An echo request left without a token
// is dropped as echo_rate_limited; a frame too big is dropped as too_big,
// unanswered; both count ICMPRateLimited. A change applies to the buckets
// as they are: tokens already in them stay, up to the new burst.
func (lb *LB) SetICMPRate(perSec, burst uint32) error {
	if perSec != 0 && burst == 0 {
		return fmt.Errorf("bpf: lb: ICMP rate %d/s with a burst of 0", perSec)
	}
	return lb.setting(func(s *lbSettings) { s.IcmpRate, s.IcmpBurst = perSec, burst })
}

// SetSYNRate sets the SYN flood guard (syn_guard in lb.c): at most perSec
// SYNs a second, per CPU, create flow entries; a SYN past that of a flow
// the table does not hold is forwarded by its Maglev pick without one, and
// counted SYNUntracked. 0 means no limit (the default). The window is a
// second of the kernel's ticks; a change applies from the next SYN, to the
// windows as they are.
func (lb *LB) SetSYNRate(perSec uint32) error {
	return lb.setting(func(s *lbSettings) { s.SynRate = perSec })
}

// setting is the setters' common path: changeSettings under lb.mu.
func (lb *LB) setting(change func(*lbSettings)) error {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return ErrClosed
	}
	return lb.changeSettings(change)
}

// changeSettings writes the settings as change leaves a copy of them, and
// keeps them as they were if the write fails. The caller holds lb.mu.
func (lb *LB) changeSettings(change func(*lbSettings)) error {
	s := lb.settings
	change(&s)
	old := lb.settings
	lb.settings = s
	if err := lb.writeSettings(); err != nil {
		lb.settings = old
		return err
	}
	return nil
}

func (lb *LB) writeSettings() error {
	if err := lb.objs.Settings.Update(uint32(0), lb.settings, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bpf: lb: write settings: %w", err)
	}
	return nil
}

// Attach attaches the program to the interface through a bpf_link (removed
// by the kernel when the process exits), as Steer.Attach does, and returns
// the mode used. SetSource must have been called.
func (lb *LB) Attach(ifindex int, mode string) (string, error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return "", ErrClosed
	}
	if !lb.source {
		return "", ErrNoSource
	}
	if lb.link != nil {
		return "", ErrAlreadyAttached
	}
	l, m, err := attachXDP(lb.objs.XlbLb, ifindex, mode)
	if err != nil {
		return "", fmt.Errorf("bpf: attach lb: %w", err)
	}
	lb.link = l
	return m, nil
}

// Counters returns the counters summed over CPUs.
func (lb *LB) Counters() (LBCounters, error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return LBCounters{}, ErrClosed
	}
	var perCPU [][lbCounterMax]uint64
	if err := lb.objs.Counters.Lookup(uint32(0), &perCPU); err != nil {
		return LBCounters{}, fmt.Errorf("bpf: lb counters: %w", err)
	}
	var raw [lbCounterMax]uint64
	for _, cpu := range perCPU {
		for i, v := range cpu {
			raw[i] += v
		}
	}
	c := LBCounters{
		Seen:            raw[lbSeen],
		Forwarded:       raw[lbForwarded],
		Passed:          raw[lbPassed],
		Malformed:       raw[lbMalformed],
		FlowHits:        raw[lbFlowHit],
		EchoReplies:     raw[lbEchoReply],
		FragNeeded:      raw[lbFragNeeded],
		ICMPErrors:      raw[lbICMPError],
		ICMPRateLimited: raw[lbICMPRateLimited],
		SYNUntracked:    raw[lbSYNUntracked],
		Drops:           make(map[string]uint64, len(lbDropNames)),
	}
	for i, name := range lbDropNames {
		c.Drops[name] = raw[lbFirstDrop+i]
		c.Dropped += raw[lbFirstDrop+i]
	}
	return c, nil
}

// FlowsByBackend counts the live flows of both flow tables (IPv4, IPv6)
// by backend id: entries seen within their protocol's idle timeout, as the
// program decides. It reads the LRU hashes in batches, one pass bounded by
// their size, never on the packet path. Entries the kernel adds or evicts
// during the pass may be missed or counted; an entry of a freed id counts
// for that id until its flow comes back and re-picks.
//
// The pass (about 0.6 µs a flow) runs on duplicates of the tables'
// descriptors, outside lb.mu: a scrape of a million flows must not hold up
// a reload or a health change, and Close cannot pull a descriptor from
// under it.
func (lb *LB) FlowsByBackend() (map[uint32]uint64, error) {
	now, tcpTimeout, udpTimeout, flows4, flows6, err := lb.flowTables()
	if err != nil {
		return nil, err
	}
	defer flows4.Close()
	defer flows6.Close()
	n := map[uint32]uint64{}
	live := func(proto uint8, v lbFlowValue) {
		timeout := udpTimeout
		if proto == unix.IPPROTO_TCP {
			timeout = tcpTimeout
		}
		if now-v.Seen <= timeout {
			n[v.Backend]++
		}
	}
	if err := countFlows(flows4, lb.opts.FlowTableSize, func(k lbFlowKey4, v lbFlowValue) { live(k.Proto, v) }); err != nil {
		return nil, err
	}
	if err := countFlows(flows6, lb.opts.FlowTableSize, func(k lbFlowKey6, v lbFlowValue) { live(k.Proto, v) }); err != nil {
		return nil, err
	}
	return n, nil
}

// flowTables returns, under lb.mu, what FlowsByBackend's pass needs: the
// program's clock, the timeouts in force (jiffies) and duplicates of the
// two flow tables' descriptors, which the caller closes.
func (lb *LB) flowTables() (now, tcpTimeout, udpTimeout uint64, flows4, flows6 *ebpf.Map, err error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return 0, 0, 0, nil, nil, ErrClosed
	}
	if now, _, err = lb.clock(); err != nil {
		return 0, 0, 0, nil, nil, err
	}
	if flows4, err = lb.objs.Flows.Clone(); err != nil {
		return 0, 0, 0, nil, nil, fmt.Errorf("bpf: lb: duplicate the flow table: %w", err)
	}
	if flows6, err = lb.objs.Flows6.Clone(); err != nil {
		flows4.Close()
		return 0, 0, 0, nil, nil, fmt.Errorf("bpf: lb: duplicate the flow table: %w", err)
	}
	return now, lb.settings.TcpTimeout, lb.settings.UdpTimeout, flows4, flows6, nil
}

// countFlows visits every entry of the flow table m (at most size).
func countFlows[K any](m *ebpf.Map, size int, visit func(K, lbFlowValue)) error {
	const chunk = 4096
	keys := make([]K, chunk)
	vals := make([]lbFlowValue, chunk)
	var cursor ebpf.MapBatchCursor
	for seen := 0; seen <= size; {
		k, err := m.BatchLookup(&cursor, keys, vals, nil)
		for i := range k {
			visit(keys[i], vals[i])
		}
		seen += k
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("bpf: lb: read the flow table: %w", err)
		}
	}
	return nil
}

// BackendCounters returns the forwarded packets and bytes and the
// handshake RTT histogram of each backend index below the length of the
// last SetBackends, summed over CPUs. A freed index keeps its counts until
// it is used again.
func (lb *LB) BackendCounters() ([]LBBackendCounters, error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return nil, ErrClosed
	}
	out := make([]LBBackendCounters, lb.backends)
	var perCPU []lbBackendStats
	var rtt []lbRttHist
	for i := range out {
		if err := lb.objs.BackendStats.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("bpf: lb backend counters: index %d: %w", i, err)
		}
		for _, s := range perCPU {
			out[i].Packets += s.Packets
			out[i].Bytes += s.Bytes
		}
		if err := lb.objs.RttHists.Lookup(uint32(i), &rtt); err != nil {
			return nil, fmt.Errorf("bpf: lb handshake RTTs: index %d: %w", i, err)
		}
		for _, h := range rtt {
			for b, n := range h.Buckets {
				out[i].RTTBuckets[b] += n
			}
			out[i].RTTSum += h.Sum
		}
	}
	return out, nil
}

// Program returns the loaded lb program, for BPF_PROG_TEST_RUN in tests and
// benchmarks. It stays owned by the LB.
func (lb *LB) Program() *ebpf.Program {
	return lb.objs.XlbLb
}

// Close detaches the program (if attached) and closes the program and maps.
// It is idempotent.
func (lb *LB) Close() error {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return nil
	}
	lb.closed = true
	var errs []error
	if c := lb.capture; c != nil {
		errs = append(errs, c.rd.Close())
		lb.capture = nil
	}
	if lb.link != nil {
		if err := lb.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("bpf: detach lb: %w", err))
		}
		lb.link = nil
	}
	if err := lb.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("bpf: close lb objects: %w", err))
	}
	return errors.Join(errs...)
}
