package datapath

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/hash"
)

// ErrNoVIP: the flow's destination is not a configured VIP.
var ErrNoVIP = errors.New("not a VIP")

// Resolver answers, from a config alone, which backend a new flow gets: the
// same VIP match, flow hash and Maglev tables as the workers. Two instances
// given the same backends agree on every flow, whatever order their files
// list them in, which is what lets several xlb instances sit behind ECMP.
type Resolver struct {
	plan *Plan
}

// NewResolver builds the tables of cfg.
func NewResolver(cfg *config.Config) (*Resolver, error) {
	tables, err := buildTables(cfg, nil)
	if err != nil {
		return nil, err
	}
	p, err := buildPlan(planInput{cfg: cfg, tables: tables, counters: map[backendKey]*BackendCounters{}, ids: newIDAllocator(), workers: 1})
	if err != nil {
		return nil, err
	}
	return &Resolver{plan: p}, nil
}

// Lookup returns the backend a new flow from src to dst would be sent to.
func (r *Resolver) Lookup(proto config.Protocol, src, dst netip.AddrPort) (config.VIP, config.Backend, error) {
	s, d := src.Addr().Unmap(), dst.Addr().Unmap()
	if s.Is4() != d.Is4() {
		return config.VIP{}, config.Backend{}, fmt.Errorf("datapath: lookup %s -> %s: mixed address families", src, dst)
	}
	var ports [4]byte
	binary.BigEndian.PutUint16(ports[0:], src.Port())
	binary.BigEndian.PutUint16(ports[2:], dst.Port())
	pw := binary.LittleEndian.Uint32(ports[:])
	var k vipKey
	var h uint32
	if d.Is4() {
		sa, da := s.As4(), d.As4()
		k = vipKey4(binary.LittleEndian.Uint32(da[:]), dst.Port(), uint8(proto))
		h = hash.Flow4(binary.LittleEndian.Uint32(sa[:]), binary.LittleEndian.Uint32(da[:]), pw, uint8(proto))
	} else {
		sa, da := s.As16(), d.As16()
		k = vipKey6(&da, dst.Port(), uint8(proto))
		h = hash.Flow6(&sa, &da, pw, uint8(proto))
	}
	vi := r.plan.index.lookup(k)
	if vi < 0 {
		return config.VIP{}, config.Backend{}, fmt.Errorf("datapath: lookup %s/%s: %w", dst, proto, ErrNoVIP)
	}
	v := r.plan.vips[vi]
	bi := v.table.Lookup(h)
	if bi < 0 {
		return v.cfg, config.Backend{}, fmt.Errorf("datapath: lookup: vip %s has no backend with a weight", v.cfg)
	}
	return v.cfg, v.cfg.Backends[bi], nil
}
