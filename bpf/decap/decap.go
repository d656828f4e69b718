package decap

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf"
)

// Sentinel errors of the attachment functions.
var (
	// ErrNotAttached: no XDP program is attached to the interface.
	ErrNotAttached = errors.New("decap: no XDP program attached")
	// ErrForeignProgram: the interface's XDP program is not xlb's decap program.
	ErrForeignProgram = errors.New("decap: another XDP program is attached")
	// ErrNoAllowedSources: no allowed source prefix was given. The program
	// would drop every tunnel; attaching it so is refused as a mistake.
	ErrNoAllowedSources = errors.New("decap: no allowed source prefixes")
)

// progName is the kernel's name of the decap program (its C function name),
// which is how an attached program is recognised as ours.
const progName = "xlb_decap"

// DefaultGUEPort is the GUE UDP destination port decapsulated by default.
// GUE has no IANA port; 6080 is what the balancer sends to by default.
const DefaultGUEPort = 6080

// MaxAllowedSources and MaxLocalAddrs are the sizes of the allowed_sources
// and local_addrs maps (MAX_ALLOWED_SOURCES and MAX_LOCAL_ADDRS in decap.c).
const (
	MaxAllowedSources = 1024
	MaxLocalAddrs     = 1024
)

// Counter indexes the decap_counters map: mirrors enum decap_counter in
// decap.c (a test checks every one against the program's behaviour).
type Counter int

// The counters: the five kinds decapsulated, frames passed untouched,
// malformed frames (passed), and the two drop reasons.
const (
	CounterIPIP Counter = iota
	Counter6in4
	Counter4in6
	Counter6in6
	CounterGUE
	CounterPassed
	CounterMalformed
	CounterNotLocalDestination
	CounterSourceNotAllowed
	counterMax
)

var counterNames = [counterMax]string{"ipip", "6in4", "4in6", "6in6", "gue", "passed", "malformed",
	"not_local_destination", "source_not_allowed"}

// String is the counter's name in `xlb decap status`.
func (c Counter) String() string {
	if c < 0 || c >= counterMax {
		return fmt.Sprintf("counter(%d)", int(c))
	}
	return counterNames[c]
}

// Counters are the decap program's counters summed over CPUs, indexed by
// Counter. Every frame is counted once: Decapsulated + Passed + Malformed +
// Dropped = all frames.
type Counters [counterMax]uint64

// Decapsulated is the sum of the five kinds (IPIP, 6in4, 4in6, 6in6, GUE).
func (c Counters) Decapsulated() uint64 {
	return c[CounterIPIP] + c[Counter6in4] + c[Counter4in6] + c[Counter6in6] + c[CounterGUE]
}

// Dropped is the sum of the drop reasons: tunnels not for this host or not
// from an allowed source.
func (c Counters) Dropped() uint64 {
	return c[CounterNotLocalDestination] + c[CounterSourceNotAllowed]
}

// Options configure the decap program for Attach.
type Options struct {
	// GUEPort is the UDP destination port of GUE packets to decapsulate;
	// 0 disables GUE (UDP is then always passed untouched).
	GUEPort uint16
	// Allow are the prefixes of the balancers' addresses: tunnels from
	// anywhere else are dropped. It must not be empty; 0.0.0.0/0 and ::/0
	// are the explicit way to accept tunnels from anyone.
	Allow []netip.Prefix
	// Local are the outer destinations accepted. Nil means the host's
	// addresses (HostAddrs), read when Attach runs.
	Local []netip.Addr
}

// Status is what `xlb decap status` shows.
type Status struct {
	Attached  bool
	Mode      string // bpf.ModeNative or bpf.ModeGeneric
	ProgramID uint32
	GUEPort   uint16 // 0: GUE disabled
	Allow     []netip.Prefix
	Local     []netip.Addr
	Counters  Counters
}

// xdpState is what is attached to an interface's XDP hook.
type xdpState struct {
	link   netlink.Link
	progID uint32
	mode   uint32 // nl.XDP_ATTACHED_*
	ours   bool
}

func inspectXDP(ifname string) (xdpState, error) {
	l, err := netlink.LinkByName(ifname)
	if err != nil {
		return xdpState{}, fmt.Errorf("decap: find interface %q: %w", ifname, err)
	}
	st := xdpState{link: l}
	x := l.Attrs().Xdp
	if x == nil || !x.Attached || x.ProgId == 0 {
		return st, nil
	}
	st.progID, st.mode = x.ProgId, x.AttachMode
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(x.ProgId))
	if err != nil {
		return st, fmt.Errorf("decap: open XDP program %d on %s: %w", x.ProgId, ifname, err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return st, fmt.Errorf("decap: inspect XDP program %d on %s: %w", x.ProgId, ifname, err)
	}
	st.ours = info.Type == ebpf.XDP && info.Name == progName
	return st, nil
}

// ours inspects ifname and fails unless xlb's decap program is attached.
func ours(ifname, what string) (xdpState, error) {
	st, err := inspectXDP(ifname)
	if err != nil {
		return st, err
	}
	if st.progID == 0 {
		return st, fmt.Errorf("decap: %s %s: %w", what, ifname, ErrNotAttached)
	}
	if !st.ours {
		return st, fmt.Errorf("decap: %s %s: %w (program id %d)", what, ifname, ErrForeignProgram, st.progID)
	}
	return st, nil
}

func (st xdpState) modeName() string {
	if st.mode == nl.XDP_ATTACHED_SKB {
		return bpf.ModeGeneric
	}
	return bpf.ModeNative
}

// CheckAllow validates a set of allowed source prefixes: at least one, at
// most MaxAllowedSources, none an IPv4-mapped IPv6 prefix (write those in
// IPv4 form: the program matches outer IPv4 headers with IPv4 keys).
func CheckAllow(allow []netip.Prefix) error {
	if len(allow) == 0 {
		return ErrNoAllowedSources
	}
	if len(allow) > MaxAllowedSources {
		return fmt.Errorf("decap: %d allowed source prefixes, at most %d", len(allow), MaxAllowedSources)
	}
	for _, p := range allow {
		if !p.IsValid() {
			return fmt.Errorf("decap: invalid allowed source prefix %v", p)
		}
		if p.Addr().Is4In6() {
			return fmt.Errorf("decap: allowed source %v is IPv4-mapped IPv6: write it as an IPv4 prefix", p)
		}
	}
	return nil
}

// Attach attaches the decap program, configured by opts, to ifname (in the
// calling thread's network namespace) through netlink, not a bpf_link, so
// the attachment outlives the process: `xlb decap attach` exits and the
// backend keeps decapsulating until Detach. It tries native (driver) mode,
// then generic, and returns the mode used. The maps are filled before the
// program is attached, so it never runs with an empty allowed set. If xlb's
// decap program is already attached it is replaced in place (an upgrade, or
// new options; the counters restart from zero); any other XDP program is
// left alone and ErrForeignProgram returned.
func Attach(ifname string, opts Options) (string, error) {
	if err := CheckAllow(opts.Allow); err != nil {
		return "", fmt.Errorf("decap: attach to %s: %w", ifname, err)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return "", fmt.Errorf("decap: remove memlock limit: %w", err)
	}
	st, err := inspectXDP(ifname)
	if err != nil {
		return "", err
	}
	if st.progID != 0 && !st.ours {
		return "", fmt.Errorf("decap: attach to %s: %w (program id %d)", ifname, ErrForeignProgram, st.progID)
	}
	local := opts.Local
	if local == nil {
		if local, err = HostAddrs(); err != nil {
			return "", fmt.Errorf("decap: attach to %s: %w", ifname, err)
		}
	}

	var objs decapObjects
	if err := loadDecapObjects(&objs, nil); err != nil {
		return "", fmt.Errorf("decap: load: %w", err)
	}
	// The attachment holds its own reference to the program and its maps.
	defer objs.Close()
	if err := objs.GuePort.Update(uint32(0), uint32(opts.GUEPort), ebpf.UpdateAny); err != nil {
		return "", fmt.Errorf("decap: set GUE port %d: %w", opts.GUEPort, err)
	}
	if err := configure(objs.AllowedSources, objs.LocalAddrs, opts.Allow, local); err != nil {
		return "", fmt.Errorf("decap: attach to %s: %w", ifname, err)
	}
	fd := objs.XlbDecap.FD()

	if st.ours {
		// Replace in the current mode: the kernel refuses a second mode.
		mode, flags := st.modeName(), unix.XDP_FLAGS_DRV_MODE
		if mode == bpf.ModeGeneric {
			flags = unix.XDP_FLAGS_SKB_MODE
		}
		if err := netlink.LinkSetXdpFdWithFlags(st.link, fd, flags); err != nil {
			return "", fmt.Errorf("decap: replace on %s (%s): %w", ifname, mode, err)
		}
		return mode, nil
	}

	// UPDATE_IF_NOEXIST: never replace a program attached since inspectXDP.
	nativeErr := netlink.LinkSetXdpFdWithFlags(st.link, fd, unix.XDP_FLAGS_UPDATE_IF_NOEXIST|unix.XDP_FLAGS_DRV_MODE)
	if nativeErr == nil {
		return bpf.ModeNative, nil
	}
	if errors.Is(nativeErr, unix.EBUSY) || errors.Is(nativeErr, unix.EEXIST) {
		return "", fmt.Errorf("decap: attach to %s: %w: %w", ifname, ErrForeignProgram, nativeErr)
	}
	genericErr := netlink.LinkSetXdpFdWithFlags(st.link, fd, unix.XDP_FLAGS_UPDATE_IF_NOEXIST|unix.XDP_FLAGS_SKB_MODE)
	if genericErr == nil {
		return bpf.ModeGeneric, nil
	}
	return "", fmt.Errorf("decap: attach to %s: native: %w; generic: %w", ifname, nativeErr, genericErr)
}

// SetAllowed replaces the allowed source prefixes of the program attached
// to ifname, and its local addresses with local (nil: HostAddrs), in place:
// no re-attach, the counters go on. Each set is replaced by adding the new
// entries before deleting the old ones, so a source in both sets is never
// dropped; while it runs, a packet may see the union of the old and new
// sets.
func SetAllowed(ifname string, allow []netip.Prefix, local []netip.Addr) error {
	if err := CheckAllow(allow); err != nil {
		return fmt.Errorf("decap: set allowed sources on %s: %w", ifname, err)
	}
	st, err := ours(ifname, "set allowed sources on")
	if err != nil {
		return err
	}
	if local == nil {
		if local, err = HostAddrs(); err != nil {
			return fmt.Errorf("decap: set allowed sources on %s: %w", ifname, err)
		}
	}
	ms, err := openMaps(st.progID)
	if err != nil {
		return fmt.Errorf("decap: set allowed sources on %s: %w", ifname, err)
	}
	defer ms.close()
	if err := configure(ms.allowed, ms.local, allow, local); err != nil {
		return fmt.Errorf("decap: set allowed sources on %s: %w", ifname, err)
	}
	return nil
}

// configure writes the allowed prefixes and the local addresses.
func configure(allowedMap, localMap *ebpf.Map, allow []netip.Prefix, local []netip.Addr) error {
	if len(local) > MaxLocalAddrs {
		return fmt.Errorf("%d local addresses, at most %d", len(local), MaxLocalAddrs)
	}
	keys := make([]decapAddrKey, 0, len(allow))
	for _, p := range allow {
		keys = append(keys, prefixKey(p))
	}
	if err := replaceSet(allowedMap, keys); err != nil {
		return fmt.Errorf("allowed sources: %w", err)
	}
	keys = keys[:0]
	for _, a := range local {
		keys = append(keys, prefixKey(netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())))
	}
	if err := replaceSet(localMap, keys); err != nil {
		return fmt.Errorf("local addresses: %w", err)
	}
	return nil
}

// replaceSet makes m's keys exactly keys: it adds them, then deletes the
// keys that are not among them.
func replaceSet(m *ebpf.Map, keys []decapAddrKey) error {
	for _, k := range keys {
		if err := m.Update(k, uint32(1), ebpf.UpdateAny); err != nil {
			return fmt.Errorf("add %v: %w", keyPrefix(k), err)
		}
	}
	old, err := mapKeys(m)
	if err != nil {
		return err
	}
	for _, k := range old {
		if slices.Contains(keys, k) {
			continue
		}
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("delete %v: %w", keyPrefix(k), err)
		}
	}
	return nil
}

func mapKeys(m *ebpf.Map) ([]decapAddrKey, error) {
	var (
		keys []decapAddrKey
		k    decapAddrKey
		v    uint32
	)
	it := m.Iterate()
	for it.Next(&k, &v) {
		keys = append(keys, k)
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", m, err)
	}
	return keys, nil
}

// prefixKey is the addr_key of p: the family byte then the address, its
// prefix length counting the family's 8 bits.
func prefixKey(p netip.Prefix) decapAddrKey {
	p = p.Masked()
	k := decapAddrKey{Prefixlen: uint32(8 + p.Bits()), Family: 6, Addr: p.Addr().As16()}
	if p.Addr().Is4() {
		a := p.Addr().As4()
		k.Family, k.Addr = 4, [16]byte{}
		copy(k.Addr[:], a[:])
	}
	return k
}

// keyPrefix is the prefix of an addr_key written by prefixKey.
func keyPrefix(k decapAddrKey) netip.Prefix {
	bits := int(k.Prefixlen) - 8
	if k.Family == 4 {
		return netip.PrefixFrom(netip.AddrFrom4([4]byte(k.Addr[:4])), bits)
	}
	return netip.PrefixFrom(netip.AddrFrom16(k.Addr), bits)
}

// HostAddrs returns the addresses of every interface in the calling
// thread's network namespace, except host-scoped ones (127.0.0.0/8, ::1):
// the outer destinations a tunnel to this host can have.
func HostAddrs() ([]netip.Addr, error) {
	addrs, err := netlink.AddrList(nil, netlink.FAMILY_ALL)
	if err != nil {
		return nil, fmt.Errorf("list the host's addresses: %w", err)
	}
	var out []netip.Addr
	for _, a := range addrs {
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok || a.Scope == unix.RT_SCOPE_HOST {
			continue
		}
		if ip = ip.Unmap(); !slices.Contains(out, ip) {
			out = append(out, ip)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// maps are the attached program's maps, opened by ID.
type maps struct {
	allowed, local, guePort, counters *ebpf.Map
}

func (ms maps) close() {
	for _, m := range []*ebpf.Map{ms.allowed, ms.local, ms.guePort, ms.counters} {
		if m != nil {
			m.Close()
		}
	}
}

// openMaps opens the maps of the program progID by their kernel names: a
// later process reaches the attached program's maps this way (the program
// is not pinned).
func openMaps(progID uint32) (maps, error) {
	prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(progID))
	if err != nil {
		return maps{}, fmt.Errorf("open program %d: %w", progID, err)
	}
	defer prog.Close()
	info, err := prog.Info()
	if err != nil {
		return maps{}, fmt.Errorf("inspect program %d: %w", progID, err)
	}
	ids, _ := info.MapIDs()
	var ms maps
	for _, id := range ids {
		m, err := ebpf.NewMapFromID(id)
		if err != nil {
			ms.close()
			return maps{}, fmt.Errorf("open map %d: %w", id, err)
		}
		mi, err := m.Info()
		var slot **ebpf.Map
		if err == nil {
			switch mi.Name {
			case decapMapAllowedSources:
				slot = &ms.allowed
			case decapMapLocalAddrs:
				slot = &ms.local
			case decapMapGuePort:
				slot = &ms.guePort
			case decapMapDecapCounters:
				slot = &ms.counters
			}
		}
		if slot == nil || *slot != nil {
			m.Close()
			continue
		}
		*slot = m
	}
	if ms.allowed == nil || ms.local == nil || ms.guePort == nil || ms.counters == nil {
		ms.close()
		return maps{}, fmt.Errorf("program %d lacks decap's maps: attached by an older xlb? attach again", progID)
	}
	return ms, nil
}

// Detach removes xlb's decap program from ifname. It returns
// ErrNotAttached if no XDP program is attached and ErrForeignProgram (and
// detaches nothing) if the attached program is not ours.
func Detach(ifname string) error {
	st, err := ours(ifname, "detach from")
	if err != nil {
		return err
	}
	flags := unix.XDP_FLAGS_DRV_MODE
	if st.modeName() == bpf.ModeGeneric {
		flags = unix.XDP_FLAGS_SKB_MODE
	}
	if err := netlink.LinkSetXdpFdWithFlags(st.link, -1, flags); err != nil {
		return fmt.Errorf("decap: detach from %s: %w", ifname, err)
	}
	return nil
}

// GetStatus reads the state of ifname's decap program: with nothing
// attached, a Status with Attached false and no error; with a foreign
// program, an error wrapping ErrForeignProgram.
func GetStatus(ifname string) (Status, error) {
	st, err := ours(ifname, "status of")
	if errors.Is(err, ErrNotAttached) {
		return Status{}, nil
	}
	if err != nil {
		return Status{}, err
	}
	ms, err := openMaps(st.progID)
	if err != nil {
		return Status{}, fmt.Errorf("decap: status of %s: %w", ifname, err)
	}
	defer ms.close()
	s := Status{Attached: true, Mode: st.modeName(), ProgramID: st.progID}
	var port uint32
	if err := ms.guePort.Lookup(uint32(0), &port); err != nil {
		return Status{}, fmt.Errorf("decap: status of %s: GUE port: %w", ifname, err)
	}
	s.GUEPort = uint16(port)
	for _, set := range []struct {
		m   *ebpf.Map
		add func(netip.Prefix)
	}{
		{ms.allowed, func(p netip.Prefix) { s.Allow = append(s.Allow, p) }},
		{ms.local, func(p netip.Prefix) { s.Local = append(s.Local, p.Addr()) }},
	} {
		keys, err := mapKeys(set.m)
		if err != nil {
			return Status{}, fmt.Errorf("decap: status of %s: %w", ifname, err)
		}
		for _, k := range keys {
			set.add(keyPrefix(k))
		}
	}
	slices.SortFunc(s.Allow, comparePrefix)
	slices.SortFunc(s.Local, netip.Addr.Compare)
	if s.Counters, err = readCounters(ms.counters); err != nil {
		return Status{}, fmt.Errorf("decap: status of %s: %w", ifname, err)
	}
	return s, nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// ReadCounters reads the counters of the decap program attached to ifname
// (they live as long as the attachment).
func ReadCounters(ifname string) (Counters, error) {
	st, err := ours(ifname, "counters of")
	if err != nil {
		return Counters{}, err
	}
	ms, err := openMaps(st.progID)
	if err != nil {
		return Counters{}, fmt.Errorf("decap: counters of %s: %w", ifname, err)
	}
	defer ms.close()
	c, err := readCounters(ms.counters)
	if err != nil {
		return Counters{}, fmt.Errorf("decap: counters of %s: %w", ifname, err)
	}
	return c, nil
}

func readCounters(m *ebpf.Map) (Counters, error) {
	var c Counters
	err := bpf.SumPerCPU(m, c[:])
	return c, err
}
