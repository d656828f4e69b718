package engine

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/xlbproject/xlb/config"
)

// reloadResolveWait bounds how long a reload waits for new backends' next
// hops; the refresher keeps trying after that.
const reloadResolveWait = time.Second

// Reload applies a new config to the running engine without stopping the
// workers: new Maglev tables are built here, off the datapath, and the plan
// is swapped atomically; the steering program's VIP map is updated in place.
// cfg must have passed CheckHost. On error nothing changes. The returned
// lines say what changed.
func (e *Engine) Reload(cfg *config.Config) ([]string, error) {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	e.mu.Lock()
	old := e.cfg
	e.mu.Unlock()
	if keys := old.RestartKeys(cfg); len(keys) > 0 {
		return nil, cfg.Errorf(keys[0], "cannot change %s on a running instance: restart xlb to apply it", strings.Join(keys, ", "))
	}
	targets, keys := healthTargets(cfg)
	e.mu.Lock()
	down := carriedDown(e.down, keys)
	e.mu.Unlock()
	tables, err := buildTables(cfg, down)
	if err != nil {
		return nil, err
	}
	// Steering first: a VIP that is being removed stops reaching the
	// workers before the plan forgets it (and one being added reaches them
	// a moment before the plan knows it: those packets count as no_vip).
	if e.steer != nil { // native mode writes its VIPs with the plan
		if err := e.steer.SetVIPs(steerEntries(cfg)); err != nil {
			return nil, err
		}
	}
	// The checker keeps the state of targets that stay, which is what
	// carriedDown assumed; new targets start up.
	if err := e.health.Set(targets); err != nil {
		return nil, fmt.Errorf("engine: health checks: %w", err)
	}
	e.mu.Lock()
	e.cfg, e.tables, e.down, e.healthKeys = cfg, tables, down, keys
	err = e.publishLocked()
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	// New backends: look their next hops up now (bounded) and publish
	// again if any was found; the refresher covers the rest.
	if e.resolveAll(time.Now().Add(reloadResolveWait)) {
		if err := e.publish(); err != nil {
			return nil, err
		}
	}
	changes := diff(old, cfg)
	e.log.Info("config reloaded", "file", cfg.File, "changes", len(changes))
	for _, c := range changes {
		e.log.Info("reload", "change", c)
	}
	return changes, nil
}

// diff describes what a reload changes, one line per change, for the log
// and the reply to `xlb reload`.
func diff(old, next *config.Config) []string {
	var out []string
	if a, b := old.Datapath, next.Datapath; a.FlowTCPTimeout != b.FlowTCPTimeout || a.FlowUDPTimeout != b.FlowUDPTimeout {
		out = append(out, fmt.Sprintf("flow timeouts tcp %v udp %v -> tcp %v udp %v", a.FlowTCPTimeout, a.FlowUDPTimeout, b.FlowTCPTimeout, b.FlowUDPTimeout))
	}
	if old.Datapath.Source != next.Datapath.Source {
		out = append(out, fmt.Sprintf("outer source %s -> %s", old.Datapath.Source, next.Datapath.Source))
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
