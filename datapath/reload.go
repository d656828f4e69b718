package datapath

import (
	"fmt"
	"maps"
	"slices"
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
	if keys := restartKeys(old, cfg); len(keys) > 0 {
		return nil, cfg.Errorf(keys[0], "cannot change %s on a running instance: restart xlb to apply it", strings.Join(keys, ", "))
	}
	e.mu.Lock()
	down := maps.Clone(e.down)
	e.mu.Unlock()
	tables, err := buildTables(cfg, down)
	if err != nil {
		return nil, err
	}
	// Steering first: a VIP that is being removed stops reaching the
	// workers before the plan forgets it (and one being added reaches them
	// a moment before the plan knows it: those packets count as no_vip).
	if err := e.steer.SetVIPs(vipEntries(cfg)); err != nil {
		return nil, err
	}
	e.mu.Lock()
	e.cfg, e.tables = cfg, tables
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

// restartKeys lists the settings that size or bind sockets and workers: they
// cannot change under running workers.
func restartKeys(old, next *config.Config) []string {
	a, b := old.Datapath, next.Datapath
	var keys []string
	check := func(key string, same bool) {
		if !same {
			keys = append(keys, key)
		}
	}
	check("datapath.interface", a.Interface == b.Interface)
	check("datapath.queues", slices.Equal(a.Queues, b.Queues))
	check("datapath.cpus", slices.Equal(a.CPUs, b.CPUs))
	check("datapath.xdp_mode", a.XDPMode == b.XDPMode)
	check("datapath.zero_copy", a.ZeroCopy == b.ZeroCopy)
	check("datapath.frame_size", a.FrameSize == b.FrameSize)
	check("datapath.frame_count", a.FrameCount == b.FrameCount)
	check("datapath.headroom", a.Headroom == b.Headroom)
	check("datapath.rx_ring", a.RxRing == b.RxRing)
	check("datapath.tx_ring", a.TxRing == b.TxRing)
	check("datapath.fill_ring", a.FillRing == b.FillRing)
	check("datapath.completion_ring", a.CompletionRing == b.CompletionRing)
	check("datapath.batch_size", a.BatchSize == b.BatchSize)
	check("datapath.need_wakeup", a.NeedWakeup == b.NeedWakeup)
	check("datapath.busy_poll", a.BusyPoll == b.BusyPoll)
	check("datapath.busy_poll_budget", a.BusyPollBudget == b.BusyPollBudget)
	check("datapath.spin", a.Spin == b.Spin)
	check("datapath.tx_budget", a.TxBudget == b.TxBudget)
	check("control.socket", old.Control.Socket == next.Control.Socket)
	return keys
}

// diff describes what a reload changes, one line per change, for the log
// and the reply to `xlb reload`.
func diff(old, next *config.Config) []string {
	var out []string
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
		ob := map[string]config.Backend{}
		for _, b := range o.Backends {
			ob[b.Address.String()] = b
		}
		nb := map[string]bool{}
		for _, b := range v.Backends {
			nb[b.Address.String()] = true
			p, ok := ob[b.Address.String()]
			switch {
			case !ok:
				out = append(out, fmt.Sprintf("vip %s backend %s added (weight %d)", v, b.Address, b.Weight))
			case p.Weight != b.Weight:
				out = append(out, fmt.Sprintf("vip %s backend %s weight %d -> %d", v, b.Address, p.Weight, b.Weight))
			}
			if ok && (p.HasMAC != b.HasMAC || p.MAC != b.MAC) {
				out = append(out, fmt.Sprintf("vip %s backend %s next hop override changed", v, b.Address))
			}
		}
		for _, b := range o.Backends {
			if !nb[b.Address.String()] {
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
