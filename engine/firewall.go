package engine

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/firewall"
)

// The firewall (package firewall's rules in bpf.Firewall's maps) is apart
// from the plan: its rules change through reload and through the control
// socket, and a change writes the firewall maps only. The rule set, its
// compilation and the counter indexes are guarded by fwState.mu; a change
// compiles on a copy of the indexes and stores the result only once the
// maps took it, so a refused change leaves everything as it was.

// firewallMaps is the datapath's firewall as the engine drives it
// (bpf.Firewall of the steer or lb program).
type firewallMaps interface {
	Set(map[bpf.FirewallPrefix]bpf.FirewallEntry) error
	RuleCounters(rules []uint32) ([]bpf.FirewallCounter, error)
	VIPCounters(slots []uint32) ([]bpf.FirewallVIPCounters, error)
	ClearCounters(rules, slots []uint32) error
}

type fwState struct {
	mu       sync.Mutex
	maps     firewallMaps
	rules    firewall.Rules
	policies []firewall.Policy
	idx      *firewall.Index
	compiled firewall.Compiled
	timer    *time.Timer // the next expiry of a runtime rule
	closed   bool
}

// ErrNoFirewall: the firewall maps are not loaded (yet).
var ErrNoFirewall = errors.New("engine: the firewall is not loaded")

// fwStart installs cfg's rules before the program is attached, so the
// first frame already meets them. A nil maps (a fake program in tests)
// keeps the rules without a datapath.
func (e *Engine) fwStart(maps *bpf.Firewall, cfg *config.Config) error {
	f := &e.fw
	f.mu.Lock()
	defer f.mu.Unlock()
	f.idx = firewall.NewIndex()
	f.rules, f.policies = firewall.NewRules(cfg.FirewallRules()), cfg.FirewallPolicies()
	if maps == nil {
		return nil
	}
	f.maps = maps
	return f.apply(f.rules, f.policies, nil)
}

// apply compiles rules for policies (plus extra, entries kept from VIPs a
// reload is removing) and writes them; it stores the new state only on
// success. Called with mu held.
func (f *fwState) apply(rules firewall.Rules, policies []firewall.Policy, extra firewall.Compiled) error {
	if f.maps == nil {
		return ErrNoFirewall
	}
	idx := f.idx.Clone()
	c, err := firewall.Compile(policies, rules.All(), idx)
	if err != nil {
		return err
	}
	fresh, freshSlots := idx.TakeFresh()
	if err := f.maps.ClearCounters(fresh, freshSlots); err != nil {
		return err
	}
	if err := f.maps.Set(toBPF(c, extra)); err != nil {
		return err
	}
	f.idx, f.rules, f.policies, f.compiled = idx, rules, policies, c
	return nil
}

func toBPF(cs ...firewall.Compiled) map[bpf.FirewallPrefix]bpf.FirewallEntry {
	out := map[bpf.FirewallPrefix]bpf.FirewallEntry{}
	for _, c := range cs {
		for k, e := range c {
			p := bpf.FirewallPrefix{VIP: bpf.NewVIPKey(k.VIP.Addr, k.VIP.Port, uint8(k.VIP.Proto)), Src: k.Prefix}
			if _, ok := out[p]; !ok {
				out[p] = bpf.FirewallEntry{Deny: e.Deny, Rule: e.Rule, Slot: e.Slot, SYNRate: e.SYNRate}
			}
		}
	}
	return out
}

// fwReload is a reload's firewall change, prepared before the reload
// commits anything.
type fwReload struct {
	rules    firewall.Rules
	policies []firewall.Policy
	lines    []string
}

// fwPrepare computes the rules after a reload to cfg: the file's rules
// and the runtime rules kept (see firewall.Rules.WithFile), checked by a
// compilation that is thrown away.
func (e *Engine) fwPrepare(cfg *config.Config) (*fwReload, error) {
	f := &e.fw
	f.mu.Lock()
	defer f.mu.Unlock()
	r := &fwReload{policies: cfg.FirewallPolicies()}
	var dropped []firewall.Dropped
	r.rules, dropped = f.rules.WithFile(cfg.FirewallRules(), r.policies)
	idx := f.idx
	if idx == nil {
		idx = firewall.NewIndex()
	}
	if _, err := firewall.Compile(r.policies, r.rules.All(), idx.Clone()); err != nil {
		return nil, cfg.Errorf("firewall", "%v", err)
	}
	if f.rules.Runtime() > 0 {
		r.lines = append(r.lines, fmt.Sprintf("firewall: %d runtime rules kept", r.rules.Runtime()))
	}
	for _, d := range dropped {
		r.lines = append(r.lines, fmt.Sprintf("firewall: runtime rule %v dropped: %s", d.Rule, d.Reason))
	}
	return r, nil
}

// fwStage writes the new rules while the old VIPs are still in the VIP
// map: a VIP the reload removes keeps its old entries until fwCommit, so
// it is never unprotected while it still takes traffic.
func (e *Engine) fwStage(r *fwReload) error {
	f := &e.fw
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.maps == nil { // an engine without a datapath program (tests)
		f.rules, f.policies = r.rules, r.policies
		return nil
	}
	keep := map[firewall.VIP]bool{}
	for _, p := range r.policies {
		keep[p.VIP] = true
	}
	gone := firewall.Compiled{}
	for k, en := range f.compiled {
		if !keep[k.VIP] {
			gone[k] = en
		}
	}
	return f.apply(r.rules, r.policies, gone)
}

// fwCommit drops the entries of removed VIPs once the VIP map no longer
// has them; fwUndo restores old after a commit that failed.
func (e *Engine) fwCommit() error {
	f := &e.fw
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.maps == nil {
		return nil
	}
	return f.apply(f.rules, f.policies, nil)
}

func (e *Engine) fwUndo(rules firewall.Rules, policies []firewall.Policy) error {
	f := &e.fw
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.maps == nil {
		f.rules, f.policies = rules, policies
		return nil
	}
	return f.apply(rules, policies, nil)
}

// fwSnapshot returns the rules and policies in force, for fwUndo.
func (e *Engine) fwSnapshot() (firewall.Rules, []firewall.Policy) {
	e.fw.mu.Lock()
	defer e.fw.mu.Unlock()
	return e.fw.rules, e.fw.policies
}

// FirewallAdd adds a runtime rule; it takes effect at once and, with an
// expiry, ends by itself.
func (e *Engine) FirewallAdd(r firewall.Rule) error {
	f := &e.fw
	f.mu.Lock()
	defer f.mu.Unlock()
	next, err := f.rules.Add(r)
	if err == nil {
		err = f.apply(next, f.policies, nil)
	}
	if err != nil {
		return err
	}
	e.log.Info("firewall rule added", "rule", r.String(), "origin", firewall.Runtime.String())
	e.fwArm()
	return nil
}

// FirewallDel deletes a runtime rule; want, if not zero, must be its
// action.
func (e *Engine) FirewallDel(k firewall.Key, want firewall.Action) error {
	f := &e.fw
	f.mu.Lock()
	defer f.mu.Unlock()
	next, old, err := f.rules.Del(k)
	if err == nil && want != 0 && old.Action != want {
		err = fmt.Errorf("%v's rule for %v is %v, not %v", k.VIP, k.Prefix, old.Action, want)
	}
	if err == nil {
		err = f.apply(next, f.policies, nil)
	}
	if err != nil {
		return err
	}
	e.log.Info("firewall rule deleted", "rule", old.String())
	e.fwArm()
	return nil
}

// fwArm sets the timer to the next expiry. Called with mu held.
func (e *Engine) fwArm() {
	f := &e.fw
	if f.timer != nil {
		f.timer.Stop()
		f.timer = nil
	}
	next := f.rules.NextExpiry()
	if next.IsZero() || f.closed {
		return
	}
	f.timer = time.AfterFunc(time.Until(next), e.fwExpire)
}

// fwExpire removes the runtime rules whose time is up.
func (e *Engine) fwExpire() {
	f := &e.fw
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return
	}
	next, gone := f.rules.Expire(time.Now())
	if len(gone) > 0 {
		if err := f.apply(next, f.policies, nil); err != nil {
			// Retried by the timer below: an expired rule that stays
			// in force is logged, never silent.
			e.log.Error("firewall: expire rules", "err", err)
			f.timer = time.AfterFunc(time.Second, e.fwExpire)
			return
		}
		for _, r := range gone {
			e.log.Info("firewall rule expired", "rule", r.String())
		}
	}
	e.fwArm()
}

// fwClose stops the expiry timer.
func (e *Engine) fwClose() {
	f := &e.fw
	f.mu.Lock()
	defer f.mu.Unlock()
	f.closed = true
	if f.timer != nil {
		f.timer.Stop()
	}
}

// FirewallStats are the firewall's rules and drop counters.
type FirewallStats struct {
	// Entries is how many (VIP, prefix) entries the datapath holds.
	Entries int                 `json:"entries"`
	Rules   []FirewallRuleStats `json:"rules"`
	VIPs    []FirewallVIPStats  `json:"vips"`
	Error   string              `json:"error,omitempty"`
}

// FirewallRuleStats is one rule. Origin is "file", "runtime", or
// "allow-list" for the implicit deny of a VIP's allow list. Deny rules
// count their drops (a global rule over every VIP).
type FirewallRuleStats struct {
	VIP     string     `json:"vip"` // "global" for a global rule
	Prefix  string     `json:"prefix"`
	Action  string     `json:"action"`
	Origin  string     `json:"origin"`
	Expires *time.Time `json:"expires,omitempty"`
	Packets uint64     `json:"packets"`
	Bytes   uint64     `json:"bytes"`
}

// FirewallVIPStats are one VIP's firewall drops.
type FirewallVIPStats struct {
	VIP               string `json:"vip"`
	SYNRateLimit      uint32 `json:"syn_rate_limit,omitempty"`
	DeniedPackets     uint64 `json:"denied_packets"`
	DeniedBytes       uint64 `json:"denied_bytes"`
	SYNLimitedPackets uint64 `json:"syn_limited_packets"`
	SYNLimitedBytes   uint64 `json:"syn_limited_bytes"`
}

// FirewallStats returns every rule with its counters, then every VIP with
// entries.
func (e *Engine) FirewallStats() FirewallStats {
	f := &e.fw
	f.mu.Lock()
	defer f.mu.Unlock()
	var s FirewallStats
	if f.maps == nil {
		s.Error = ErrNoFirewall.Error()
		return s
	}
	s.Entries = len(f.compiled)
	var idx []uint32
	var rows []int
	add := func(r FirewallRuleStats, k firewall.Key) {
		if i, ok := f.idx.Rule(k); ok {
			idx = append(idx, i)
			rows = append(rows, len(s.Rules))
		}
		s.Rules = append(s.Rules, r)
	}
	explicit := map[firewall.Key]bool{}
	for _, r := range f.rules.All() {
		explicit[r.Key()] = true
		row := FirewallRuleStats{VIP: r.VIP.String(), Prefix: r.Prefix.String(), Action: r.Action.String(), Origin: r.Origin.String()}
		if !r.Expires.IsZero() {
			t := r.Expires.UTC()
			row.Expires = &t
		}
		if r.Action == firewall.Deny {
			add(row, r.Key())
		} else {
			s.Rules = append(s.Rules, row)
		}
	}
	var slots []uint32
	for _, p := range f.policies {
		for _, z := range []netip.Prefix{netip.PrefixFrom(netip.IPv4Unspecified(), 0), netip.PrefixFrom(netip.IPv6Unspecified(), 0)} {
			k := firewall.Key{VIP: p.VIP, Prefix: z}
			if en, ok := f.compiled[k]; ok && en.Deny && !explicit[k] {
				add(FirewallRuleStats{VIP: p.VIP.String(), Prefix: z.String(), Action: "deny", Origin: "allow-list"}, k)
			}
		}
		if slot, ok := f.idx.Slot(p.VIP); ok {
			slots = append(slots, slot)
			s.VIPs = append(s.VIPs, FirewallVIPStats{VIP: p.VIP.String(), SYNRateLimit: p.SYNRate})
		}
	}
	rc, err := f.maps.RuleCounters(idx)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	for i, c := range rc {
		s.Rules[rows[i]].Packets, s.Rules[rows[i]].Bytes = c.Packets, c.Bytes
	}
	vc, err := f.maps.VIPCounters(slots)
	if err != nil {
		s.Error = err.Error()
		return s
	}
	for i, c := range vc {
		v := &s.VIPs[i]
		v.DeniedPackets, v.DeniedBytes = c.Denied.Packets, c.Denied.Bytes
		v.SYNLimitedPackets, v.SYNLimitedBytes = c.SYNLimited.Packets, c.SYNLimited.Bytes
	}
	return s
}
