package engine

import (
	"fmt"
	"net/netip"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/datapath"
)

// Resolver answers, from a config alone, which backend a new flow gets: the
// same VIP match, flow hash and Maglev tables as the workers. Two instances
// given the same backends agree on every flow, whatever order their files
// list them in, which is what lets several xlb instances sit behind ECMP.
type Resolver struct {
	cfg  *config.Config
	plan *datapath.Plan
}

// NewResolver builds the tables of cfg.
func NewResolver(cfg *config.Config) (*Resolver, error) {
	tables, err := buildTables(cfg, nil)
	if err != nil {
		return nil, err
	}
	ids := newIDs(maxIndexes)
	if _, err := ids.assign(cfg); err != nil {
		return nil, err
	}
	spec := planSpec(specInput{cfg: cfg, tables: tables, counters: keepCounters(nil, cfg, 1), ids: ids})
	p, err := datapath.NewPlan(spec)
	if err != nil {
		return nil, err
	}
	return &Resolver{cfg: cfg, plan: p}, nil
}

// Lookup returns the backend a new flow from src to dst would be sent to.
func (r *Resolver) Lookup(proto config.Protocol, src, dst netip.AddrPort) (config.VIP, config.Backend, error) {
	vi, bi, err := r.plan.Lookup(uint8(proto), src, dst)
	switch {
	case vi < 0:
		return config.VIP{}, config.Backend{}, fmt.Errorf("engine: lookup %s/%s: %w", dst, proto, err)
	case err != nil:
		return r.cfg.VIPs[vi], config.Backend{}, fmt.Errorf("engine: lookup: vip %s: %w", r.cfg.VIPs[vi], err)
	}
	return r.cfg.VIPs[vi], r.cfg.VIPs[vi].Backends[bi], nil
}
