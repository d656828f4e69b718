package engine

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/health"
)

// healthTargets turns the config's health checks into checker targets, and
// says which backend each target ID stands for.
func healthTargets(cfg *config.Config) ([]health.Target, map[string]backendKey) {
	var out []health.Target
	keys := map[string]backendKey{}
	for _, v := range cfg.VIPs {
		for _, b := range v.Backends {
			h := b.Health
			if h.Kind == config.HealthNone {
				continue
			}
			id := healthID(v, b.Address)
			keys[id] = backendKey{idOf(v), b.Address}
			out = append(out, health.Target{ID: id, Addr: b.Address, Spec: h.Spec()})
		}
	}
	return out, keys
}

// carriedDown is the part of the current down set that stays true under
// cfg: backends still present and still checked. (The checker keeps the
// state of a target across a reload, so the tables can be built before it
// is told.)
func carriedDown(down map[backendKey]bool, keys map[string]backendKey) map[backendKey]bool {
	out := map[backendKey]bool{}
	for _, k := range keys {
		if down[k] {
			out[k] = true
		}
	}
	return out
}

// onHealth is the checker's callback. It runs on a prober goroutine and must
// not block on the engine's locks (a reload holds them while it waits for
// probers): it records the news and wakes the refresher.
func (e *Engine) onHealth(s health.Status) {
	e.healthMu.Lock()
	e.healthNews[s.ID] = s.State == health.StateDown
	e.healthMu.Unlock()
	select {
	case e.healthWake <- struct{}{}:
	default:
	}
}

// applyHealth moves backends in or out of their VIPs' tables after health
// state changes: only the affected slots move, and the tracked flows of a
// backend that went down take a fresh decision on their next packet.
func (e *Engine) applyHealth() {
	e.healthMu.Lock()
	news := e.healthNews
	e.healthNews = map[string]bool{}
	e.healthMu.Unlock()
	if len(news) == 0 {
		return
	}
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.cur
	next := *old
	next.down = maps.Clone(old.down)
	changed := map[vipID]bool{}
	for id, down := range news {
		k, ok := old.keys[id]
		if !ok || next.down[k] == down {
			continue // removed by a reload meanwhile, or no change
		}
		changed[k.vip] = true
		if down {
			next.down[k] = true
		} else {
			delete(next.down, k)
		}
	}
	if len(changed) == 0 {
		return
	}
	// Only the VIPs whose backends changed get a new table: the others keep
	// theirs (a table build costs milliseconds per VIP).
	t0 := time.Now()
	next.tables = slices.Clone(old.tables)
	for i, v := range old.cfg.VIPs {
		if !changed[idOf(v)] {
			continue
		}
		t, err := buildTable(v, next.down)
		if err != nil {
			e.log.Error("rebuild table after a health change", "vip", v.String(), "err", err)
			return
		}
		next.tables[i] = t
	}
	err := e.derive(&next)
	if err == nil {
		err = e.commit(old, &next)
	}
	if err != nil {
		e.log.Error("apply a health change; the previous plan stays", "err", err)
		return
	}
	for id, down := range news {
		if k, ok := old.keys[id]; ok && changed[k.vip] && old.down[k] != down {
			if down {
				e.log.Warn("backend down: no new flows, its tracked flows move", "backend", k.backend, "vip", k.vip.String())
			} else {
				e.log.Info("backend up: back in the table", "backend", k.backend, "vip", k.vip.String())
			}
		}
	}
	e.log.Info("tables rebuilt after a health change", "vips", len(changed), "took", time.Since(t0))
}

// healthID names a checked backend: "198.18.100.1:80/tcp 198.18.0.11".
func healthID(v config.VIP, backend netip.Addr) string {
	return fmt.Sprintf("%s %s", v, backend)
}
