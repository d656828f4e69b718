package bpf

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/cilium/ebpf"
)

// Capacities of the firewall maps (firewall.h).
const (
	// FirewallMaxEntries is how many (VIP, source prefix) entries the
	// firewall holds: every VIP's rules, the global rules once per VIP,
	// and one default entry per VIP with an allow list or a SYN limit.
	FirewallMaxEntries = 1 << 18
	// FirewallMaxRules bounds rule indexes (FirewallEntry.Rule).
	FirewallMaxRules = 1 << 17
	// FirewallMaxVIPs bounds VIP counter slots (FirewallEntry.Slot).
	FirewallMaxVIPs = 4096
	// FirewallSYNBuckets is how many (VIP, source) SYN buckets the LRU
	// holds.
	FirewallSYNBuckets = 65536
)

// ErrFirewallFull: more firewall entries than FirewallMaxEntries.
var ErrFirewallFull = errors.New("bpf: more firewall entries than the maps hold")

// FirewallPrefix is a firewall entry's key: a VIP (the key it matched in
// the vips map, so a VIP on every port is (addr, 0, proto)) and a source
// prefix of the VIP's family.
type FirewallPrefix struct {
	VIP VIPKey
	Src netip.Prefix
}

// FirewallEntry is what a matching frame gets.
type FirewallEntry struct {
	// Deny drops the frame (counted on Rule and Slot); otherwise it goes
	// on, through the SYN limit if SYNRate is set.
	Deny bool
	// Rule is the rule's counter index (< FirewallMaxRules).
	Rule uint32
	// Slot is the VIP's counter index (< FirewallMaxVIPs).
	Slot uint32
	// SYNRate is the VIP's limit of TCP SYNs (without ACK) per second per
	// source /32 or /64, 0 for none; every entry of a VIP carries it.
	SYNRate uint32
}

// Actions of fw_value (FW_ALLOW, FW_DENY).
const (
	fwAllow = 1
	fwDeny  = 2
)

// fwKey mirrors struct fw_key, fwValue struct fw_value.
type fwKey struct {
	Prefixlen uint32
	VIP       VIPKey
	Src       [16]byte
}

type fwValue struct {
	Rule        uint32
	VIP         uint32
	SYNInterval uint32
	Action      uint32
}

// vipBits is the part of fw_key.prefixlen that covers the VIP key.
const vipBits = 8 * 20

func (p FirewallPrefix) key() (fwKey, error) {
	src := p.Src.Masked()
	if !src.IsValid() {
		return fwKey{}, fmt.Errorf("bpf: firewall: invalid source prefix %v", p.Src)
	}
	addr, bits := src.Addr(), src.Bits()
	if addr.Is4() {
		bits += 96
	}
	fam := uint8(6)
	if addr.Is4() {
		fam = 4
	}
	if fam != p.VIP.Family {
		return fwKey{}, fmt.Errorf("bpf: firewall: source %v is not of VIP %v's family", p.Src, p.VIP)
	}
	return fwKey{Prefixlen: uint32(vipBits + bits), VIP: p.VIP, Src: netip.AddrFrom16(addr.As16()).As16()}, nil
}

func (e FirewallEntry) value() (fwValue, error) {
	switch {
	case e.Rule >= FirewallMaxRules:
		return fwValue{}, fmt.Errorf("bpf: firewall: rule index %d out of range (max %d)", e.Rule, FirewallMaxRules-1)
	case e.Slot >= FirewallMaxVIPs:
		return fwValue{}, fmt.Errorf("bpf: firewall: VIP slot %d out of range (max %d)", e.Slot, FirewallMaxVIPs-1)
	case e.SYNRate > uint32(time.Second):
		return fwValue{}, fmt.Errorf("bpf: firewall: SYN rate %d/s above %d/s", e.SYNRate, time.Second)
	}
	v := fwValue{Rule: e.Rule, VIP: e.Slot, Action: fwAllow}
	if e.Deny {
		v.Action = fwDeny
	}
	if e.SYNRate > 0 {
		v.SYNInterval = uint32(uint64(time.Second) / uint64(e.SYNRate))
	}
	return v, nil
}

// FirewallCounter is a drop counter summed over CPUs.
type FirewallCounter struct {
	Packets, Bytes uint64
}

// FirewallVIPCounters are one VIP slot's drops: by the rules, by the SYN
// limit.
type FirewallVIPCounters struct {
	Denied, SYNLimited FirewallCounter
}

// fwVIPCounter mirrors struct fw_vip_counter.
type fwVIPCounter struct {
	Denied, SYNLimited FirewallCounter
}

// Firewall writes the firewall maps of a loaded steer or lb program (see
// firewall.h): two copies of the rules, one in use. Set is atomic for the
// datapath. Safe for concurrent use.
type Firewall struct {
	mu        sync.Mutex
	outer     *ebpf.Map
	tries     [2]*ebpf.Map
	active    int
	content   [2]map[fwKey]fwValue
	ruleStats *ebpf.Map
	vipStats  *ebpf.Map
}

// newFirewall starts with no rules: the outer map's element is empty until
// a Set installs some.
func newFirewall(outer, a, b, ruleStats, vipStats *ebpf.Map) (*Firewall, error) {
	return &Firewall{outer: outer, tries: [2]*ebpf.Map{a, b}, ruleStats: ruleStats, vipStats: vipStats,
		content: [2]map[fwKey]fwValue{{}, {}}}, nil
}

// Set replaces the firewall's entries with want. It writes the change
// into the standby copy, swaps that copy in (the kernel returns from the
// swap only when no program still runs on the old copy), then writes the
// change into the old copy, the next standby. A frame sees the entries
// before or after the change, never a mix. On an error before the swap
// nothing changed for the datapath; a standby left behind by an error
// after it is brought up to date by the next Set. With no entries the swap
// empties the outer map's element instead: the programs then skip the trie
// (a NULL from an inlined array load) rather than look up an empty one,
// which a frame paid as a call.
func (f *Firewall) Set(want map[FirewallPrefix]FirewallEntry) error {
	if len(want) > FirewallMaxEntries {
		return fmt.Errorf("%w: %d entries, at most %d", ErrFirewallFull, len(want), FirewallMaxEntries)
	}
	w := make(map[fwKey]fwValue, len(want))
	for p, e := range want {
		k, err := p.key()
		if err != nil {
			return err
		}
		v, err := e.value()
		if err != nil {
			return err
		}
		w[k] = v
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	standby := 1 - f.active
	if err := f.sync(standby, w); err != nil {
		return errors.Join(err, f.sync(standby, f.content[f.active]))
	}
	if err := f.install(standby, len(w) > 0); err != nil {
		return errors.Join(fmt.Errorf("bpf: firewall: swap the rules: %w", err), f.sync(standby, f.content[f.active]))
	}
	f.active = standby
	// An error here leaves the standby behind; the next Set's first sync
	// diffs against what it really holds.
	_ = f.sync(1-standby, w)
	return nil
}

// install points the outer map at trie i, or empties its element if use is
// false. Either returns once no program still runs on what it held before.
func (f *Firewall) install(i int, use bool) error {
	if use {
		return f.outer.Put(uint32(0), f.tries[i])
	}
	if err := f.outer.Delete(uint32(0)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return err
	}
	return nil
}

// sync makes trie i hold want, keeping content[i] equal to what it holds.
func (f *Firewall) sync(i int, want map[fwKey]fwValue) error {
	m, have := f.tries[i], f.content[i]
	for k, v := range want {
		if old, ok := have[k]; ok && old == v {
			continue
		}
		if err := m.Put(k, v); err != nil {
			return fmt.Errorf("bpf: firewall: write %v: %w", k.prefix(), err)
		}
		have[k] = v
	}
	for k := range have {
		if _, ok := want[k]; ok {
			continue
		}
		if err := m.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			return fmt.Errorf("bpf: firewall: delete %v: %w", k.prefix(), err)
		}
		delete(have, k)
	}
	return nil
}

func (k fwKey) prefix() FirewallPrefix {
	bits := int(k.Prefixlen) - vipBits
	a := netip.AddrFrom16(k.Src)
	if k.VIP.Family == 4 {
		a, bits = a.Unmap(), bits-96
	}
	return FirewallPrefix{VIP: k.VIP, Src: netip.PrefixFrom(a, bits)}
}

// Len returns how many entries the datapath uses.
func (f *Firewall) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.content[f.active])
}

// RuleCounters returns the drops of the given rule indexes, summed over
// CPUs.
func (f *Firewall) RuleCounters(rules []uint32) ([]FirewallCounter, error) {
	out := make([]FirewallCounter, len(rules))
	var per []FirewallCounter
	for i, r := range rules {
		if err := f.ruleStats.Lookup(r, &per); err != nil {
			return nil, fmt.Errorf("bpf: firewall: rule %d counters: %w", r, err)
		}
		for _, c := range per {
			out[i].Packets += c.Packets
			out[i].Bytes += c.Bytes
		}
	}
	return out, nil
}

// VIPCounters returns the drops of the given VIP slots, summed over CPUs.
func (f *Firewall) VIPCounters(slots []uint32) ([]FirewallVIPCounters, error) {
	out := make([]FirewallVIPCounters, len(slots))
	var per []fwVIPCounter
	for i, s := range slots {
		if err := f.vipStats.Lookup(s, &per); err != nil {
			return nil, fmt.Errorf("bpf: firewall: VIP slot %d counters: %w", s, err)
		}
		for _, c := range per {
			out[i].Denied.Packets += c.Denied.Packets
			out[i].Denied.Bytes += c.Denied.Bytes
			out[i].SYNLimited.Packets += c.SYNLimited.Packets
			out[i].SYNLimited.Bytes += c.SYNLimited.Bytes
		}
	}
	return out, nil
}

// ClearCounters zeroes the counters of rule indexes and VIP slots about to
// be given to new rules and VIPs.
func (f *Firewall) ClearCounters(rules, slots []uint32) error {
	n, err := ebpf.PossibleCPU()
	if err != nil {
		return fmt.Errorf("bpf: firewall: %w", err)
	}
	zr, zv := make([]FirewallCounter, n), make([]fwVIPCounter, n)
	for _, r := range rules {
		if err := f.ruleStats.Put(r, zr); err != nil {
			return fmt.Errorf("bpf: firewall: clear rule %d counters: %w", r, err)
		}
	}
	for _, s := range slots {
		if err := f.vipStats.Put(s, zv); err != nil {
			return fmt.Errorf("bpf: firewall: clear VIP slot %d counters: %w", s, err)
		}
	}
	return nil
}
