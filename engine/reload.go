package engine

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/datapath"
)

// reloadResolveWait bounds how long a reload waits for new backends' next
// hops; the refresher keeps trying after that.
const reloadResolveWait = time.Second

// Reload applies a new config to the running engine without stopping the
// workers, as a transaction: everything that can fail is checked and built
// aside first (capacities, backend IDs, Maglev tables, the plan), then the
// steering map, the native maps, the health targets and the plan are
// committed in that order; a step that fails rolls back the ones before it,
// so a failed reload leaves the running state as it was. cfg must have
// passed CheckHost. The returned lines say what changed.
func (e *Engine) Reload(cfg *config.Config) ([]string, error) {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	e.mu.Lock()
	old := e.cur
	if keys := old.cfg.RestartKeys(cfg); len(keys) > 0 {
		e.mu.Unlock()
		return nil, cfg.Errorf(keys[0], "cannot change %s on a running instance: restart xlb to apply it", strings.Join(keys, ", "))
	}
	next, err := e.prepare(cfg)
	// The firewall goes first (fwStage keeps removed VIPs' rules until the
	// VIP map has dropped them) and is undone if the commit fails.
	var fw *fwReload
	if err == nil {
		fw, err = e.fwPrepare(cfg)
	}
	fwRules, fwPolicies := e.fwSnapshot()
	if err == nil {
		err = e.fwStage(fw)
	}
	if err == nil {
		if err = e.commit(old, next); err != nil {
			err = errors.Join(err, e.fwUndo(fwRules, fwPolicies))
		}
	}
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if err := e.fwCommit(); err != nil {
		e.log.Error("firewall: drop the rules of removed VIPs; the next change retries", "err", err)
	}
	// New backends: look their next hops up now (bounded) and publish
	// again if any was found; the refresher covers the rest.
	if e.resolveAll(time.Now().Add(reloadResolveWait)) {
		if err := e.refreshPlan(); err != nil {
			e.log.Error("publish plan with new next hops; the refresher tries again", "err", err)
		}
	}
	changes := diff(old.cfg, cfg)
	changes = append(changes, fw.lines...)
	e.log.Info("config reloaded", "file", cfg.File, "changes", len(changes))
	for _, c := range changes {
		e.log.Info("reload", "change", c)
	}
	return changes, nil
}

// commit makes next the running state in place of old: steering map,
// native source and maps, health targets, then the plan. If a step fails,
// the steps already taken (the failed one included, which may have applied
// part of itself) are undone in reverse order and the error is returned;
// old stays in force. Called with mu held.
func (e *Engine) commit(old, next *state) (err error) {
	var undo []func() error
	defer func() {
		if err == nil {
			return
		}
		for i := len(undo) - 1; i >= 0; i-- {
			if uerr := undo[i](); uerr != nil {
				e.log.Error("roll back a failed commit: the running state may be inconsistent", "err", uerr)
			}
		}
	}()
	step := func(do, back func() error) error {
		undo = append(undo, back)
		return do()
	}
	if e.steer != nil && old.cfg != next.cfg {
		// Steering first: a VIP that is being removed stops reaching the
		// workers before the plan forgets it (and one being added reaches
		// them a moment before the plan knows it: those count as no_vip).
		err := step(func() error { return e.steer.SetVIPs(vipEntries(next.cfg)) },
			func() error { return e.steer.SetVIPs(vipEntries(old.cfg)) })
		if err != nil {
			return fmt.Errorf("engine: steering map: %w", err)
		}
	}
	if e.lb != nil {
		a, b := old.cfg.Datapath, next.cfg.Datapath
		if a.Source != b.Source {
			err := step(func() error { return e.lb.SetSource(source4(b), e.srcMAC, e.mtu) },
				func() error { return e.lb.SetSource(source4(a), e.srcMAC, e.mtu) })
			if err != nil {
				return fmt.Errorf("engine: native source: %w", err)
			}
		}
		if a.Source6 != b.Source6 {
			err := step(func() error { return e.lb.SetSource6(source6(b)) },
				func() error { return e.lb.SetSource6(source6(a)) })
			if err != nil {
				return fmt.Errorf("engine: native IPv6 source: %w", err)
			}
		}
		if a.FlowTCPTimeout != b.FlowTCPTimeout || a.FlowUDPTimeout != b.FlowUDPTimeout {
			err := step(func() error { return e.lb.SetTimeouts(b.FlowTCPTimeout, b.FlowUDPTimeout) },
				func() error { return e.lb.SetTimeouts(a.FlowTCPTimeout, a.FlowUDPTimeout) })
			if err != nil {
				return fmt.Errorf("engine: native flow timeouts: %w", err)
			}
		}
		if a.ICMPRateLimit != b.ICMPRateLimit || a.ICMPRateBurst != b.ICMPRateBurst {
			err := step(func() error { return e.lb.SetICMPRate(b.ICMPRateLimit, b.ICMPRateBurst) },
				func() error { return e.lb.SetICMPRate(a.ICMPRateLimit, a.ICMPRateBurst) })
			if err != nil {
				return fmt.Errorf("engine: native ICMP rate limit: %w", err)
			}
		}
		if a.FlowSYNRate != b.FlowSYNRate {
			err := step(func() error { return e.lb.SetSYNRate(b.FlowSYNRate) },
				func() error { return e.lb.SetSYNRate(a.FlowSYNRate) })
			if err != nil {
				return fmt.Errorf("engine: native SYN rate: %w", err)
			}
		}
		if err := step(func() error { return e.syncLB(next) }, func() error { return e.syncLB(old) }); err != nil {
			return fmt.Errorf("engine: native maps: %w", err)
		}
	}
	if e.health != nil && old.cfg != next.cfg {
		err := step(func() error { return e.health.Set(next.targets) },
			func() error { return e.health.Set(old.targets) })
		if err != nil {
			return fmt.Errorf("engine: health checks: %w", err)
		}
	}
	if e.lb != nil && old.cfg != next.cfg { // only a new config gives out indexes
		e.baseCounters(old, next)
	}
	e.store(next)
	e.pruneNextHops()
	return nil
}

// baseCounters records, for the indexes next gives to new backends, what
// the lb program has counted on them so far (a previous backend's packets),
// so that Stats shows the new backend's own. Counters that cannot be read
// only make those figures too high: that is logged, not a failed commit.
func (e *Engine) baseCounters(old, next *state) {
	next.base = map[uint32]bpf.LBBackendCounters{}
	for _, id := range next.ids.backends {
		if x := datapath.IDIndex(id); !slices.Contains(next.fresh, x) {
			next.base[x] = old.base[x]
		}
	}
	if len(next.fresh) == 0 {
		return
	}
	c, err := e.lb.BackendCounters()
	if err != nil {
		e.log.Warn("read native backend counters: new backends on reused IDs show their predecessors' counts too", "err", err)
		return
	}
	for _, x := range next.fresh {
		if int(x) < len(c) {
			next.base[x] = c[x]
		}
	}
}

// pruneNextHops forgets the next hops of backends no longer configured.
// Called with mu held.
func (e *Engine) pruneNextHops() {
	keep := map[netip.Addr]bool{}
	for _, v := range e.cur.cfg.VIPs {
		for _, b := range v.Backends {
			keep[b.Address] = true
		}
	}
	for a := range e.nexthops {
		if !keep[a] {
			delete(e.nexthops, a)
		}
	}
}

// diff describes what a reload changes, one line per change, for the log
// and the reply to `xlb reload`. Every line is applied by the commit in
// both modes (config refuses in native mode what the lb program cannot do,
// so no line needs a native caveat).
func diff(old, next *config.Config) []string {
	var out []string
	if a, b := old.Datapath, next.Datapath; a.FlowTCPTimeout != b.FlowTCPTimeout || a.FlowUDPTimeout != b.FlowUDPTimeout {
		out = append(out, fmt.Sprintf("flow timeouts tcp %v udp %v -> tcp %v udp %v", a.FlowTCPTimeout, a.FlowUDPTimeout, b.FlowTCPTimeout, b.FlowUDPTimeout))
	}
	if a, b := old.Datapath, next.Datapath; a.ICMPRateLimit != b.ICMPRateLimit || a.ICMPRateBurst != b.ICMPRateBurst {
		out = append(out, fmt.Sprintf("icmp rate limit %d/s burst %d -> %d/s burst %d", a.ICMPRateLimit, a.ICMPRateBurst, b.ICMPRateLimit, b.ICMPRateBurst))
	}
	if a, b := old.Datapath.FlowSYNRate, next.Datapath.FlowSYNRate; a != b {
		out = append(out, fmt.Sprintf("flow syn rate %d/s -> %d/s", a, b))
	}
	if old.Datapath.Source != next.Datapath.Source {
		out = append(out, fmt.Sprintf("outer source %s -> %s", old.Datapath.Source, next.Datapath.Source))
	}
	if old.Datapath.Source6 != next.Datapath.Source6 {
		out = append(out, fmt.Sprintf("outer IPv6 source %s -> %s", old.Datapath.Source6, next.Datapath.Source6))
	}
	oldVIPs := map[vipID]config.VIP{}
	for _, v := range old.VIPs {
		oldVIPs[idOf(v)] = v
	}
	seen := map[vipID]bool{}
	for _, v := range next.VIPs {
		id := idOf(v)
		seen[id] = true
		o, ok := oldVIPs[id]
		if !ok {
			out = append(out, fmt.Sprintf("vip %s added with %d backends", v, len(v.Backends)))
			continue
		}
		if o.TableSize != v.TableSize {
			out = append(out, fmt.Sprintf("vip %s maglev slots %d -> %d", v, o.TableSize, v.TableSize))
		}
		if o.Forward != v.Forward || o.GUEPort != v.GUEPort {
			out = append(out, fmt.Sprintf("vip %s forward %s (gue port %d) -> %s (gue port %d)", v, o.Forward, o.GUEPort, v.Forward, v.GUEPort))
		}
		if o.ICMPEcho != v.ICMPEcho {
			out = append(out, fmt.Sprintf("vip %s icmp_echo %v -> %v", v, o.ICMPEcho, v.ICMPEcho))
		}
		if o.Fragments != v.Fragments {
			out = append(out, fmt.Sprintf("vip %s fragments %s -> %s", v, o.Fragments, v.Fragments))
		}
		ob := map[netip.Addr]config.Backend{}
		for _, b := range o.Backends {
			ob[b.Address] = b
		}
		nb := map[netip.Addr]bool{}
		for _, b := range v.Backends {
			nb[b.Address] = true
			p, ok := ob[b.Address]
			switch {
			case !ok:
				out = append(out, fmt.Sprintf("vip %s backend %s added (weight %d)", v, b.Address, b.Weight))
			case p.Weight != b.Weight:
				out = append(out, fmt.Sprintf("vip %s backend %s weight %d -> %d", v, b.Address, p.Weight, b.Weight))
			}
			if ok && p.State != b.State {
				out = append(out, fmt.Sprintf("vip %s backend %s state %s -> %s", v, b.Address, p.State, b.State))
			}
			if ok && p.Health != b.Health {
				out = append(out, fmt.Sprintf("vip %s backend %s health check changed", v, b.Address))
			}
			if ok && (p.HasMAC != b.HasMAC || p.MAC != b.MAC) {
				out = append(out, fmt.Sprintf("vip %s backend %s next hop override changed", v, b.Address))
			}
		}
		for _, b := range o.Backends {
			if !nb[b.Address] {
				out = append(out, fmt.Sprintf("vip %s backend %s removed", v, b.Address))
			}
		}
	}
	for _, v := range old.VIPs {
		if !seen[idOf(v)] {
			out = append(out, fmt.Sprintf("vip %s removed", v))
		}
	}
	return out
}
