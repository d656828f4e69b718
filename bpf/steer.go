package bpf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Attach modes accepted by Steer.Attach.
const (
	ModeAuto    = "auto"
	ModeNative  = "native"
	ModeGeneric = "generic"
)

// Sentinel errors a caller may need to tell apart.
var (
	// ErrTooManyVIPs: the VIP set (address markers included) does not fit the vips map.
	ErrTooManyVIPs = errors.New("bpf: too many VIP entries for the vips map")
	// ErrAlreadyAttached: Steer.Attach was called twice.
	ErrAlreadyAttached = errors.New("bpf: steer program already attached")
	// ErrClosed: the Steer was closed.
	ErrClosed = errors.New("bpf: steer closed")
)

// VIPKey mirrors struct vip_key in steer.c (a test checks the layout against
// the object's BTF). Build it with NewVIPKey or AddrKey.
type VIPKey struct {
	// Addr holds an IPv4 address in its first 4 bytes (rest zero) or an
	// IPv6 address.
	Addr [16]byte
	// Port is in network byte order as stored in memory: on a
	// little-endian host its value is the byte-swapped port number.
	// 0 means every port of (Addr, Proto).
	Port uint16
	// Proto is the IP protocol number; 0 only in an address marker.
	Proto uint8
	// Family is 4 or 6.
	Family uint8
}

// NewVIPKey returns the key for (addr, port, proto); port is in host byte
// order, 0 for every port. An IPv4-mapped IPv6 address is stored as IPv4.
func NewVIPKey(addr netip.Addr, port uint16, proto uint8) VIPKey {
	var k VIPKey
	addr = addr.Unmap()
	switch {
	case addr.Is4():
		a := addr.As4()
		copy(k.Addr[:4], a[:])
		k.Family = 4
	case addr.Is6():
		k.Addr = addr.As16()
		k.Family = 6
	}
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], port)
	k.Port = binary.NativeEndian.Uint16(b[:])
	k.Proto = proto
	return k
}

// AddrKey returns the address marker of addr: (addr, port 0, proto 0).
// SetVIPs inserts one for every VIP address; the steer program uses it for
// frames to a VIP address whose ports it cannot read or that are neither TCP
// nor UDP (fragments, ICMP, IPv6 extension headers).
func AddrKey(addr netip.Addr) VIPKey {
	return NewVIPKey(addr, 0, 0)
}

// IP returns the key's address (the zero Addr for an invalid family).
func (k VIPKey) IP() netip.Addr {
	switch k.Family {
	case 4:
		return netip.AddrFrom4([4]byte(k.Addr[:4]))
	case 6:
		return netip.AddrFrom16(k.Addr)
	}
	return netip.Addr{}
}

// HostPort returns the port in host byte order.
func (k VIPKey) HostPort() uint16 {
	var b [2]byte
	binary.NativeEndian.PutUint16(b[:], k.Port)
	return binary.BigEndian.Uint16(b[:])
}

// String formats the key as "addr:port/proto" for messages.
func (k VIPKey) String() string {
	return netip.AddrPortFrom(k.IP(), k.HostPort()).String() + "/" + strconv.Itoa(int(k.Proto))
}

func (k VIPKey) validate() error {
	switch k.Family {
	case 4:
		for _, b := range k.Addr[4:] {
			if b != 0 {
				return fmt.Errorf("bpf: VIP key %v: IPv4 key with non-zero address bytes 4..15", k)
			}
		}
	case 6:
	default:
		return fmt.Errorf("bpf: VIP key %v: invalid family %d", k, k.Family)
	}
	if k.Proto == 0 {
		return fmt.Errorf("bpf: VIP key %v: protocol 0 is reserved for address markers", k)
	}
	return nil
}

// VIPEntry is one VIP for Steer.SetVIPs and LB.SetVIPs. For the steer
// program ID is only stored in the map value for diagnostics (bpftool map
// dump); for the LB program it is the VIP's index, whose Maglev table
// LB.SetTable(ID, ...) sets.
type VIPEntry struct {
	Key VIPKey
	ID  uint32
	// PassFragments hands fragments to this VIP's address to the kernel
	// instead of the workers (steer only). Fragments carry no ports, so
	// the policy is per address: one VIP asking for it is enough. The lb
	// program passes them to the kernel too.
	PassFragments bool
	// ICMPEcho (lb only): the lb program answers echo requests to the
	// VIP's address if the first VIP on it has ICMPEcho (the Go worker's
	// rule); otherwise they are dropped (echo_disabled).
	ICMPEcho bool
	// Forward (lb only) is how the VIP's frames reach its backends; the
	// zero value is LBForwardIPIP.
	Forward LBForward
	// GUEPort (lb only) is the UDP destination port of GUE, in host order.
	GUEPort uint16
}

// vipValue mirrors struct vip_value in steer.c.
type vipValue struct {
	ID    uint32
	Flags uint32
}

// vipFlagAddrMarker (VIP_FLAG_ADDR_MARKER in xlb.h) marks the value of an
// address marker entry, so a map dump tells markers from VIPs.
const vipFlagAddrMarker = 1

// vipFlagPassFragments and vipFlagICMPEcho mirror VIP_FLAG_PASS_FRAGMENTS
// and VIP_FLAG_ICMP_ECHO in xlb.h.
const (
	vipFlagPassFragments = 2
	vipFlagICMPEcho      = 4
)

// SteerCounters are the steer program's counters summed over CPUs.
// Seen = Redirected + Passed + Malformed + Spliced + SpliceExpired;
// NoSocket (a VIP frame on a queue with no AF_XDP socket) is counted in
// Passed too. Spliced frames were rewritten and sent out for a spliced
// pair (package splice); SpliceExpired ones were a spliced pair's with a
// TTL or hop limit of 1 or less, dropped.
type SteerCounters struct {
	Seen, Redirected, Passed, Malformed, NoSocket, Spliced, SpliceExpired uint64
}

// Steer owns the loaded steer program, its maps and its XDP attachment.
// SetVIPs, SetSocket, ClearSocket and Counters are safe for concurrent use;
// Close detaches and releases everything.
type Steer struct {
	mu     sync.Mutex
	objs   steerObjects
	link   link.Link
	closed bool
	fw     *Firewall
	splice bool // the splice maps are sized and the lookup enabled
}

// Firewall returns the program's firewall maps.
func (s *Steer) Firewall() *Firewall { return s.fw }

var memlockOnce = sync.OnceValue(func() error {
	if err := rlimit.RemoveMemlock(); err != nil {
		return fmt.Errorf("bpf: remove memlock limit: %w", err)
	}
	return nil
})

// LoadSteer loads the steer program and its maps into the kernel without
// attaching them. The caller must Close the returned Steer.
func LoadSteer(opts SteerOptions) (*Steer, error) {
	if err := opts.validate(); err != nil {
		return nil, err
	}
	if err := memlockOnce(); err != nil {
		return nil, err
	}
	spec, err := steerSpec(opts)
	if err != nil {
		return nil, err
	}
	s := &Steer{splice: opts.SpliceTableSize > 0}
	if err := spec.LoadAndAssign(&s.objs, nil); err != nil {
		return nil, fmt.Errorf("bpf: load steer: %w", err)
	}
	fw, err := newFirewall(s.objs.FwRules, s.objs.FwTrieA, s.objs.FwTrieB, s.objs.FwRuleStats, s.objs.FwVipStats)
	if err != nil {
		s.objs.Close()
		return nil, err
	}
	s.fw = fw
	return s, nil
}

// Attach attaches the program to the interface through a bpf_link, which
// the kernel removes when the process exits, so a crashed xlb never leaves
// traffic steered into sockets nobody reads. mode is "auto" (native, then
// generic), "native" or "generic"; the mode used is returned.
func (s *Steer) Attach(ifindex int, mode string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return "", ErrClosed
	}
	if s.link != nil {
		return "", ErrAlreadyAttached
	}
	l, m, err := attachXDP(s.objs.XlbSteer, ifindex, mode)
	if err != nil {
		return "", fmt.Errorf("bpf: attach steer: %w", err)
	}
	s.link = l
	return m, nil
}

// attachXDP attaches prog to ifindex with a bpf_link in mode (auto: native,
// then generic) and returns the link and the mode used.
func attachXDP(prog *ebpf.Program, ifindex int, mode string) (link.Link, string, error) {
	if ifindex <= 0 {
		return nil, "", fmt.Errorf("invalid interface index: %d", ifindex)
	}
	var modes []string
	switch mode {
	case ModeAuto:
		modes = []string{ModeNative, ModeGeneric}
	case ModeNative, ModeGeneric:
		modes = []string{mode}
	default:
		return nil, "", fmt.Errorf("invalid mode %q (want auto, native or generic)", mode)
	}
	var errs []error
	for _, m := range modes {
		flags := link.XDPDriverMode
		if m == ModeGeneric {
			flags = link.XDPGenericMode
		}
		l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: flags})
		if err == nil {
			return l, m, nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", m, err))
	}
	return nil, "", hookTaken(ifindex, fmt.Errorf("ifindex %d: %w", ifindex, errors.Join(errs...)))
}

// hookTaken words an attach that failed because the interface's XDP hook is
// taken (EBUSY in native mode, EEXIST in generic), naming the program that
// holds it: usually another xlb run on the same interface.
func hookTaken(ifindex int, err error) error {
	if !errors.Is(err, unix.EBUSY) && !errors.Is(err, unix.EEXIST) {
		return err
	}
	l, lerr := netlink.LinkByIndex(ifindex)
	if lerr != nil || l.Attrs().Xdp == nil || l.Attrs().Xdp.ProgId == 0 {
		return err
	}
	id := l.Attrs().Xdp.ProgId
	name := ""
	if p, perr := ebpf.NewProgramFromID(ebpf.ProgramID(id)); perr == nil {
		if info, ierr := p.Info(); ierr == nil && info.Name != "" {
			name = ": " + info.Name
		}
		p.Close()
	}
	return fmt.Errorf("%s already has an XDP program attached (id %d%s): %w", l.Attrs().Name, id, name, err)
}

// SetVIPs replaces the contents of the vips map with vips plus one address
// marker per distinct VIP address. A VIP present before and after never stops
// matching: entries are updated in place, and new entries are written before
// stale ones are deleted (unless old and new together overflow the map: then
// the stale ones go first). Invalid input changes nothing; a failure of the
// kernel part way leaves a mix, which a retry repairs.
func (s *Steer) SetVIPs(vips []VIPEntry) error {
	want, err := vipEntries(vips, nil)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	return syncVIPs(s.objs.Vips, want)
}

// vipEntries validates vips (each also by check, if not nil) and returns
// the map contents they stand for: the VIPs and one address marker per
// distinct address.
func vipEntries(vips []VIPEntry, check func(VIPEntry) error) (map[VIPKey]vipValue, error) {
	want := make(map[VIPKey]vipValue, 2*len(vips))
	for _, v := range vips {
		if err := v.Key.validate(); err != nil {
			return nil, err
		}
		if check != nil {
			if err := check(v); err != nil {
				return nil, err
			}
		}
		if old, ok := want[v.Key]; ok && old.ID != v.ID {
			return nil, fmt.Errorf("bpf: VIP %v given twice, with IDs %d and %d", v.Key, old.ID, v.ID)
		}
		want[v.Key] = vipValue{ID: v.ID}
	}
	for _, v := range vips {
		k := AddrKey(v.Key.IP())
		m, seen := want[k]
		if !seen && v.ICMPEcho {
			m.Flags |= vipFlagICMPEcho // the address's first VIP decides
		}
		m.Flags |= vipFlagAddrMarker
		if v.PassFragments {
			m.Flags |= vipFlagPassFragments
		}
		want[k] = m
	}
	return want, nil
}

// syncVIPs makes the vips map m hold exactly want (see Steer.SetVIPs for
// the order of the updates).
func syncVIPs[K comparable](m *ebpf.Map, want map[K]vipValue) error {
	if n := uint32(len(want)); n > m.MaxEntries() {
		return fmt.Errorf("%w: %d entries (markers included), room for %d", ErrTooManyVIPs, n, m.MaxEntries())
	}
	var stale []K
	var k K
	var v vipValue
	it := m.Iterate()
	for it.Next(&k, &v) {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("bpf: list VIPs: %w", err)
	}
	// Old and new together may not fit: then make room first. Deleting a
	// stale entry early only loses what is going away anyway.
	staleFirst := uint32(len(want)+len(stale)) > m.MaxEntries()
	if staleFirst {
		if err := deleteVIPs(m, stale); err != nil {
			return err
		}
	}
	for k, v := range want {
		if err := m.Update(k, v, ebpf.UpdateAny); err != nil {
			return fmt.Errorf("bpf: set VIP %v: %w", k, err)
		}
	}
	if !staleFirst {
		return deleteVIPs(m, stale)
	}
	return nil
}

func deleteVIPs[K any](m *ebpf.Map, keys []K) error {
	for _, k := range keys {
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("bpf: delete stale VIP %v: %w", k, err)
		}
	}
	return nil
}

// MaxQueues is the number of RX queues the xsks map can steer (max_entries
// in steer.c).
const MaxQueues = 64

func (s *Steer) checkQueue(queue int) error {
	if queue < 0 || queue >= MaxQueues {
		return fmt.Errorf("bpf: invalid queue %d (the xsks map holds queues 0..%d)", queue, MaxQueues-1)
	}
	return nil
}

// SetSocket steers the VIP frames received on queue into the AF_XDP socket
// fd. The map takes its own reference: the caller still owns fd.
func (s *Steer) SetSocket(queue int, fd int) error {
	if err := s.checkQueue(queue); err != nil {
		return err
	}
	if fd < 0 {
		return fmt.Errorf("bpf: set socket for queue %d: invalid fd %d", queue, fd)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.objs.Xsks.Update(uint32(queue), uint32(fd), ebpf.UpdateAny); err != nil {
		return fmt.Errorf("bpf: set socket for queue %d: %w", queue, err)
	}
	return nil
}

// ClearSocket removes the socket of queue; VIP frames on that queue are then
// passed to the kernel (counted as NoSocket). Clearing an empty slot is not
// an error.
func (s *Steer) ClearSocket(queue int) error {
	if err := s.checkQueue(queue); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	if err := s.objs.Xsks.Delete(uint32(queue)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("bpf: clear socket for queue %d: %w", queue, err)
	}
	return nil
}

// Counters returns the counters summed over CPUs.
func (s *Steer) Counters() (SteerCounters, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return SteerCounters{}, ErrClosed
	}
	var raw [steerCounterMax]uint64
	if err := sumPerCPU(s.objs.Counters, raw[:]); err != nil {
		return SteerCounters{}, fmt.Errorf("bpf: steer counters: %w", err)
	}
	return SteerCounters{
		Seen:          raw[steerSeen],
		Redirected:    raw[steerRedirected],
		Passed:        raw[steerPassed],
		Malformed:     raw[steerMalformed],
		NoSocket:      raw[steerNoSocket],
		Spliced:       raw[steerSpliced],
		SpliceExpired: raw[steerSpliceExpired],
	}, nil
}

// Program returns the loaded steer program, for BPF_PROG_TEST_RUN in tests
// and benchmarks. It stays owned by the Steer.
func (s *Steer) Program() *ebpf.Program {
	return s.objs.XlbSteer
}

// Close detaches the program (if attached) and closes the program and maps.
// It is idempotent. AF_XDP sockets stay open: their owner closes them.
func (s *Steer) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	if s.link != nil {
		if err := s.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("bpf: detach steer: %w", err))
		}
		s.link = nil
	}
	if err := s.objs.Close(); err != nil {
		errs = append(errs, fmt.Errorf("bpf: close steer objects: %w", err))
	}
	return errors.Join(errs...)
}
