package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/hash"
)

// Defaults of LBOptions.
const (
	// DefaultLBFlowTableSize is the flow table's default size (entries).
	// An LRU hash is preallocated: about 100 bytes of kernel memory per
	// entry, so about 100 MiB for the default.
	DefaultLBFlowTableSize = 1 << 20
	// DefaultLBMaxVIPs is how many VIP tables the maglev map holds by default.
	DefaultLBMaxVIPs = 64
	// DefaultLBMaxBackends is how many backend ids the backends map holds by default.
	DefaultLBMaxBackends = 4096
)

// ErrNoSource: LB.Attach was called before LB.SetSource.
var ErrNoSource = errors.New("bpf: lb has no source address yet (SetSource)")

// LBOptions size the lb program's maps. Zero values take the defaults.
type LBOptions struct {
	// FlowTableSize is the number of flows the LRU flow table holds
	// (DefaultLBFlowTableSize).
	FlowTableSize int
	// TableSize is M, the number of Maglev slots per VIP
	// (hash.DefaultTableSize). It must be the size of the tables given to
	// SetTable: the size hash.Build was given.
	TableSize uint32
	// MaxVIPs bounds the VIP indexes (VIPEntry.ID < MaxVIPs). The maglev
	// map takes 8*MaxVIPs*TableSize bytes (DefaultLBMaxVIPs: 32 MiB with
	// the default TableSize).
	MaxVIPs int
	// MaxBackends bounds the backend ids (DefaultLBMaxBackends).
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
	case o.FlowTableSize < 0 || o.FlowTableSize > 1<<28:
		return o, fmt.Errorf("bpf: lb: invalid flow table size %d (want 1..%d)", o.FlowTableSize, 1<<28)
	case o.TableSize > hash.MaxTableSize:
		return o, fmt.Errorf("bpf: lb: invalid Maglev table size %d (at most %d)", o.TableSize, hash.MaxTableSize)
	case o.MaxVIPs < 0 || uint64(o.MaxVIPs)*uint64(o.TableSize) > 1<<28:
		return o, fmt.Errorf("bpf: lb: invalid VIP count %d (MaxVIPs*TableSize at most %d)", o.MaxVIPs, 1<<28)
	case o.MaxBackends < 0 || o.MaxBackends >= int(hash.EmptySlot):
		return o, fmt.Errorf("bpf: lb: invalid backend count %d", o.MaxBackends)
	}
	return o, nil
}

// LBBackend is one backend of the lb program. Its index in the slice given
// to SetBackends is its backend id, the value Maglev slots hold.
type LBBackend struct {
	// Addr is the backend's IPv4 address, the outer destination. The zero
	// Addr marks an unused id: flows pinned to it pick again.
	Addr netip.Addr
	// MAC is the next hop's Ethernet address, used when Resolved.
	MAC [6]byte
	// Resolved: MAC is known. Frames for an unresolved backend are dropped
	// (no_neighbor), as the Go worker does.
	Resolved bool
}

// Flags of struct backend in lb.c.
const (
	lbBackendValid    = 1
	lbBackendResolved = 2
)

// LBCounters are the lb program's counters summed over CPUs.
// Seen = Forwarded + Passed + Malformed + Dropped.
type LBCounters struct {
	Seen, Forwarded, Passed, Malformed uint64
	// FlowHits counts the forwarded frames whose backend came from the
	// flow table rather than the Maglev table.
	FlowHits uint64
	// Dropped is the sum of Drops.
	Dropped uint64
	// Drops counts the dropped frames by reason, named as the Go worker's
	// drop reasons (no_vip, no_backend, no_neighbor, too_big, fragment...);
	// every reason is present, zeros included.
	Drops map[string]uint64
}

// LBBackendCounters are one backend's forwarded packets and bytes (as
// received, before encapsulation), summed over CPUs.
type LBBackendCounters struct {
	Packets, Bytes uint64
}

// LB owns the loaded lb program, its maps and its XDP attachment. Its
// methods are safe for concurrent use; Close releases everything.
type LB struct {
	mu       sync.Mutex
	objs     lbLoaded
	tables   *ebpf.Memory // the maglev map's memory
	opts     LBOptions
	link     link.Link
	backends int // length of the last SetBackends
	source   bool
	closed   bool
}

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
	lb := &LB{opts: opts}
	if err := spec.LoadAndAssign(&lb.objs, nil); err != nil {
		return nil, fmt.Errorf("bpf: load lb: %w", err)
	}
	mem, err := lb.objs.Maglev.Memory()
	if err != nil {
		lb.objs.Close()
		return nil, fmt.Errorf("bpf: lb: map the Maglev tables: %w", err)
	}
	lb.tables = mem
	// An ARRAY map starts zeroed, i.e. every slot pointing at backend 0:
	// empty every table until SetTable fills it.
	empty := make([]uint32, opts.TableSize)
	for i := range empty {
		empty[i] = hash.EmptySlot
	}
	for v := range uint32(opts.MaxVIPs) {
		if err := lb.writeTable(v, empty); err != nil {
			lb.objs.Close()
			return nil, err
		}
	}
	return lb, nil
}

// lbSpec returns the lb collection sized and parameterised by opts.
func lbSpec(opts LBOptions) (*ebpf.CollectionSpec, error) {
	spec, err := loadLb()
	if err != nil {
		return nil, fmt.Errorf("bpf: load lb: %w", err)
	}
	if err := spec.Variables[lbVarTableSize].Set(opts.TableSize); err != nil {
		return nil, fmt.Errorf("bpf: lb: set table size: %w", err)
	}
	if err := spec.Variables[lbVarMaxVips].Set(uint32(opts.MaxVIPs)); err != nil {
		return nil, fmt.Errorf("bpf: lb: set VIP count: %w", err)
	}
	// The tables are written through a memory mapping: a system call per
	// slot took 2 us, 140 ms per table of 65537 slots.
	spec.Maps[lbMapMaglev].MaxEntries = uint32(opts.MaxVIPs) * opts.TableSize
	spec.Maps[lbMapMaglev].Flags |= unix.BPF_F_MMAPABLE
	spec.Maps[lbMapBackends].MaxEntries = uint32(opts.MaxBackends)
	spec.Maps[lbMapBackendStats].MaxEntries = uint32(opts.MaxBackends)
	spec.Maps[lbMapFlows].MaxEntries = uint32(opts.FlowTableSize)
	return spec, nil
}

// lbLoaded is what LoadLB loads from the lb collection: the maps and the
// datapath program, not the benchmark harness (xlb_lb_bench).
type lbLoaded struct {
	lbMaps
	XlbLb *ebpf.Program `ebpf:"xlb_lb"`
}

func (o *lbLoaded) Close() error {
	return errors.Join(o.lbMaps.Close(), o.XlbLb.Close())
}

// Options returns the options the LB was loaded with, defaults filled in.
func (lb *LB) Options() LBOptions { return lb.opts }

// SetVIPs replaces the VIPs, as Steer.SetVIPs does (address markers
// included). Each VIP must be IPv4 and its ID, the VIP's index, below
// MaxVIPs. Frames to a VIP address that match no VIP are dropped (no_vip).
func (lb *LB) SetVIPs(vips []VIPEntry) error {
	want, err := vipEntries(vips, func(v VIPEntry) error {
		if v.Key.Family != 4 {
			return fmt.Errorf("bpf: lb: VIP %v: only IPv4 VIPs are supported", v.Key)
		}
		if v.ID >= uint32(lb.opts.MaxVIPs) {
			return fmt.Errorf("bpf: lb: VIP %v: index %d out of range (MaxVIPs %d)", v.Key, v.ID, lb.opts.MaxVIPs)
		}
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
	return syncVIPs(lb.objs.Vips, want)
}

// SetTable writes the Maglev table of VIP index vip: slots are backend ids
// (indexes into the slice given to SetBackends) or hash.EmptySlot, and
// there must be TableSize of them. Each slot is replaced atomically (an
// aligned 4-byte store into the map's memory), the table as a whole is not:
// for the few microseconds the copy takes, new flows may see a mix of the
// old and new tables (each a valid choice); established flows keep their
// backend through the flow table.
func (lb *LB) SetTable(vip uint32, slots []uint32) error {
	if vip >= uint32(lb.opts.MaxVIPs) {
		return fmt.Errorf("bpf: lb: set table: VIP index %d out of range (MaxVIPs %d)", vip, lb.opts.MaxVIPs)
	}
	if uint32(len(slots)) != lb.opts.TableSize {
		return fmt.Errorf("bpf: lb: set table of VIP %d: %d slots, want %d", vip, len(slots), lb.opts.TableSize)
	}
	for i, s := range slots {
		if s != hash.EmptySlot && s >= uint32(lb.opts.MaxBackends) {
			return fmt.Errorf("bpf: lb: set table of VIP %d: slot %d holds backend id %d (MaxBackends %d)", vip, i, s, lb.opts.MaxBackends)
		}
	}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return ErrClosed
	}
	return lb.writeTable(vip, slots)
}

// maglevStride is the distance between two slots in the maglev map's
// memory: the kernel rounds an array map's values up to 8 bytes.
const maglevStride = 8

func (lb *LB) writeTable(vip uint32, slots []uint32) error {
	b := make([]byte, 0, maglevStride*len(slots))
	for _, s := range slots {
		b = binary.NativeEndian.AppendUint32(b, s)
		b = append(b, 0, 0, 0, 0)
	}
	off := int64(vip) * int64(lb.opts.TableSize) * maglevStride
	if _, err := lb.tables.WriteAt(b, off); err != nil {
		return fmt.Errorf("bpf: lb: write table of VIP %d: %w", vip, err)
	}
	return nil
}

// SetBackends replaces the backends: backends[i] gets id i. Ids at or past
// len(backends) that were in use are freed (as an entry with the zero Addr
// frees its id). Ids are identities: the flow table pins flows to ids, so
// the caller keeps a backend's id while it exists (a draining backend keeps
// it, with no slot in the tables) and points no table at a freed id.
func (lb *LB) SetBackends(backends []LBBackend) error {
	if len(backends) > lb.opts.MaxBackends {
		return fmt.Errorf("bpf: lb: %d backends, room for %d (MaxBackends)", len(backends), lb.opts.MaxBackends)
	}
	entries := make([]lbBackend, len(backends))
	for i, b := range backends {
		if !b.Addr.IsValid() {
			continue
		}
		if !b.Addr.Unmap().Is4() {
			return fmt.Errorf("bpf: lb: backend %d: %v is not an IPv4 address", i, b.Addr)
		}
		a := b.Addr.Unmap().As4()
		e := &entries[i]
		e.Addr = nativeAddr(a)
		e.Mac = b.MAC
		e.Flags = lbBackendValid
		if b.Resolved {
			e.Flags |= lbBackendResolved
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

// SetSource sets the outer source address, the interface's MAC (the source
// of the frames sent) and the egress MTU: a frame whose encapsulated IP
// packet would exceed it is dropped (too_big).
func (lb *LB) SetSource(addr [4]byte, mac [6]byte, mtu int) error {
	if mtu < 68 || mtu > 65535 {
		return fmt.Errorf("bpf: lb: invalid MTU %d (want 68..65535)", mtu)
	}
	src := lbSource{Addr: nativeAddr(addr), Mac: mac, Mtu: uint16(mtu)}
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return ErrClosed
	}
	if err := lb.objs.Source.Update(uint32(0), src, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bpf: lb: set source: %w", err)
	}
	lb.source = true
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
		Seen:      raw[lbSeen],
		Forwarded: raw[lbForwarded],
		Passed:    raw[lbPassed],
		Malformed: raw[lbMalformed],
		FlowHits:  raw[lbFlowHit],
		Drops:     make(map[string]uint64, len(lbDropNames)),
	}
	for i, name := range lbDropNames {
		c.Drops[name] = raw[lbFirstDrop+i]
		c.Dropped += raw[lbFirstDrop+i]
	}
	return c, nil
}

// BackendCounters returns the forwarded packets and bytes of each backend
// id below the length of the last SetBackends, summed over CPUs. A freed
// id keeps its counts until the id is used again.
func (lb *LB) BackendCounters() ([]LBBackendCounters, error) {
	lb.mu.Lock()
	defer lb.mu.Unlock()
	if lb.closed {
		return nil, ErrClosed
	}
	out := make([]LBBackendCounters, lb.backends)
	var perCPU []lbBackendStats
	for i := range out {
		if err := lb.objs.BackendStats.Lookup(uint32(i), &perCPU); err != nil {
			return nil, fmt.Errorf("bpf: lb backend counters: id %d: %w", i, err)
		}
		for _, s := range perCPU {
			out[i].Packets += s.Packets
			out[i].Bytes += s.Bytes
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
