package firewall

import (
	"cmp"
	"fmt"
	"net/netip"
	"slices"
)

// Capacities of the datapath's maps (bpf.FirewallMaxEntries and friends;
// a test in package bpf checks they agree).
const (
	MaxEntries = 1 << 18
	MaxRules   = 1 << 17
	MaxVIPs    = 4096
)

// Policy is what a VIP's entries carry besides its rules: its SYN limit.
type Policy struct {
	VIP VIP
	// SYNRate is the most TCP SYNs (without ACK) a second per source /32
	// or /64 to the VIP; 0: no limit.
	SYNRate uint32
}

// Entry is one compiled (VIP, source prefix) entry.
type Entry struct {
	Deny    bool
	Rule    uint32 // counter index of a deny entry's rule
	Slot    uint32 // the VIP's counter slot
	SYNRate uint32
}

// Compiled is the datapath's view of a rule set.
type Compiled map[Key]Entry

// zeroPrefix is the prefix of length 0 of v's family.
func zeroPrefix(v VIP) netip.Prefix {
	if v.Addr.Is4() {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0)
	}
	return netip.PrefixFrom(netip.IPv6Unspecified(), 0)
}

// Compile returns the entries of rules for the VIPs of vips. Rule and VIP
// counter indexes come from idx (kept for what is still there, freed for
// what is gone, so compile on a Clone when the result may be thrown away).
// It fails on a rule that is invalid, given twice, or names no VIP of
// vips, and when the entries or indexes exceed the maps.
func Compile(vips []Policy, rules []Rule, idx *Index) (Compiled, error) {
	known := make(map[VIP]Policy, len(vips))
	for _, p := range vips {
		known[p.VIP] = p
	}
	seen := make(map[Key]bool, len(rules))
	var global []Rule
	perVIP := map[VIP][]Rule{}
	for _, r := range rules {
		if err := r.Check(); err != nil {
			return nil, err
		}
		if seen[r.Key()] {
			return nil, fmt.Errorf("rule %v: %v has a rule for %v already", r, r.VIP, r.Prefix)
		}
		seen[r.Key()] = true
		if r.VIP.Global() {
			global = append(global, r)
			continue
		}
		if _, ok := known[r.VIP]; !ok {
			return nil, fmt.Errorf("rule %v: no such VIP", r)
		}
		perVIP[r.VIP] = append(perVIP[r.VIP], r)
	}
	out := Compiled{}
	usedRules, usedSlots := map[Key]bool{}, map[VIP]bool{}
	for _, p := range vips {
		v := p.VIP
		ents := map[netip.Prefix]Entry{}
		deny := func(k Key) Entry {
			usedRules[k] = true
			return Entry{Deny: true, Rule: idx.rule(k)}
		}
		for _, g := range global {
			if g.Prefix.Addr().Is4() == v.Addr.Is4() {
				ents[g.Prefix] = deny(g.Key())
			}
		}
		zero := zeroPrefix(v)
		if slices.ContainsFunc(perVIP[v], func(r Rule) bool { return r.Action == Allow }) {
			if _, ok := ents[zero]; !ok {
				ents[zero] = deny(Key{v, zero})
			}
		}
		for _, r := range perVIP[v] {
			if r.Action == Deny {
				ents[r.Prefix] = deny(r.Key())
			} else {
				ents[r.Prefix] = Entry{}
			}
		}
		if _, ok := ents[zero]; !ok && p.SYNRate > 0 {
			ents[zero] = Entry{}
		}
		if len(ents) == 0 {
			continue
		}
		usedSlots[v] = true
		slot := idx.slot(v)
		for pfx, e := range ents {
			e.Slot, e.SYNRate = slot, p.SYNRate
			out[Key{v, pfx}] = e
		}
	}
	idx.release(usedRules, usedSlots)
	switch {
	case len(out) > MaxEntries:
		return nil, fmt.Errorf("%d firewall entries (each VIP's rules, the global rules once per VIP of their family, one default per VIP with an allow list or SYN limit): the maps hold %d", len(out), MaxEntries)
	case idx.nextRule > MaxRules:
		return nil, fmt.Errorf("%d deny rules (global ones count once): the counters hold %d", idx.nextRule, MaxRules)
	case idx.nextSlot > MaxVIPs:
		return nil, fmt.Errorf("%d VIPs with firewall rules: the counters hold %d", idx.nextSlot, MaxVIPs)
	}
	return out, nil
}

// Index hands out counter indexes: one per deny rule (a global rule has
// one for all VIPs) and one slot per VIP with entries, stable while the
// rule or VIP stays.
type Index struct {
	rules     map[Key]uint32
	slots     map[VIP]uint32
	freeRules []uint32
	freeSlots []uint32
	nextRule  uint32
	nextSlot  uint32
	// fresh: indexes handed out since the last TakeFresh, whose counters
	// still hold a former owner's drops.
	freshRules, freshSlots []uint32
}

// NewIndex returns an empty Index.
func NewIndex() *Index {
	return &Index{rules: map[Key]uint32{}, slots: map[VIP]uint32{}}
}

// Clone returns an independent copy.
func (x *Index) Clone() *Index {
	c := *x
	c.rules, c.slots = make(map[Key]uint32, len(x.rules)), make(map[VIP]uint32, len(x.slots))
	for k, v := range x.rules {
		c.rules[k] = v
	}
	for k, v := range x.slots {
		c.slots[k] = v
	}
	c.freeRules = slices.Clone(x.freeRules)
	c.freeSlots = slices.Clone(x.freeSlots)
	c.freshRules = slices.Clone(x.freshRules)
	c.freshSlots = slices.Clone(x.freshSlots)
	return &c
}

func take(free *[]uint32, next *uint32, fresh *[]uint32) uint32 {
	if n := len(*free); n > 0 {
		i := (*free)[n-1]
		*free = (*free)[:n-1]
		*fresh = append(*fresh, i)
		return i
	}
	i := *next
	*next++
	return i // never used before: its counters are zero
}

func (x *Index) rule(k Key) uint32 {
	if i, ok := x.rules[k]; ok {
		return i
	}
	i := take(&x.freeRules, &x.nextRule, &x.freshRules)
	x.rules[k] = i
	return i
}

func (x *Index) slot(v VIP) uint32 {
	if i, ok := x.slots[v]; ok {
		return i
	}
	i := take(&x.freeSlots, &x.nextSlot, &x.freshSlots)
	x.slots[v] = i
	return i
}

// release frees the indexes of the rules and VIPs not in use.
func (x *Index) release(rules map[Key]bool, slots map[VIP]bool) {
	for k, i := range x.rules {
		if !rules[k] {
			delete(x.rules, k)
			x.freeRules = append(x.freeRules, i)
		}
	}
	for v, i := range x.slots {
		if !slots[v] {
			delete(x.slots, v)
			x.freeSlots = append(x.freeSlots, i)
		}
	}
	// Sorted so that the order indexes are reused in is deterministic.
	slices.SortFunc(x.freeRules, func(a, b uint32) int { return cmp.Compare(b, a) })
	slices.SortFunc(x.freeSlots, func(a, b uint32) int { return cmp.Compare(b, a) })
}

// Rule returns the counter index of a deny rule's key.
func (x *Index) Rule(k Key) (uint32, bool) {
	i, ok := x.rules[k]
	return i, ok
}

// Slot returns the counter slot of a VIP.
func (x *Index) Slot(v VIP) (uint32, bool) {
	i, ok := x.slots[v]
	return i, ok
}

// TakeFresh returns the reused indexes handed out since the last call,
// whose counters must be cleared before the entries using them are
// installed, and forgets them.
func (x *Index) TakeFresh() (rules, slots []uint32) {
	rules, slots = x.freshRules, x.freshSlots
	x.freshRules, x.freshSlots = nil, nil
	return rules, slots
}
