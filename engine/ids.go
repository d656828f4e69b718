package engine

import (
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/datapath"
)

// maxIndexes is the backend ID index space (datapath.IDIndexBits).
const maxIndexes = 1 << datapath.IDIndexBits

// ids hands out the stable IDs that flow tables store, and recycles them.
//
// A backend ID is an index (the low datapath.IDIndexBits bits: its slot in
// the plan and in the native backends map) and a generation (the high
// bits). An index is free again as soon as its backend leaves the
// committed config; when it is given to another backend its generation is
// bumped, so a flow that still carries the old ID re-picks instead of
// following the index to the newcomer. A long-running instance under
// backend churn therefore never runs out of IDs: it needs as many indexes
// as backends it has at once. Both datapaths check the whole ID (the Go
// flow table, and the native lb program against its backends map), so the
// rule is the same in both modes.
//
// VIP IDs are never reused (a removed VIP forgets its ID; added again it
// gets a new one, and its old flows re-pick).
//
// An ids is changed only on a clone that a reload commits or drops whole.
type ids struct {
	limit    int      // indexes usable: maxIndexes, or the lb program's MaxBackends
	gen      []uint16 // per index ever used: the generation of its next or current ID
	backends map[backendKey]uint32
	free     []uint32 // indexes ready for reuse, oldest first
	vips     map[vipID]uint32
	nextVIP  uint32
}

func newIDs(limit int) *ids {
	return &ids{limit: min(limit, maxIndexes), backends: map[backendKey]uint32{}, vips: map[vipID]uint32{}}
}

func (a *ids) clone() *ids {
	c := *a
	c.gen = slices.Clone(a.gen)
	c.backends = maps.Clone(a.backends)
	c.free = slices.Clone(a.free)
	c.vips = maps.Clone(a.vips)
	return &c
}

// ErrIDsExhausted: a config has more backends than the ID space holds.
var ErrIDsExhausted = errors.New("backend IDs exhausted")

// assign gives every VIP and backend of cfg an ID: those already
// known keep theirs, those gone release theirs, new ones get one. It
// returns the indexes it gave to new backends.
func (a *ids) assign(cfg *config.Config) (fresh []uint32, err error) {
	wantVIPs := map[vipID]bool{}
	want := map[backendKey]bool{}
	var order []backendKey
	for _, v := range cfg.VIPs {
		wantVIPs[idOf(v)] = true
		for _, b := range v.Backends {
			k := backendKey{idOf(v), b.Address}
			want[k] = true
			order = append(order, k)
		}
	}
	for k := range a.vips {
		if !wantVIPs[k] {
			delete(a.vips, k)
		}
	}
	for _, v := range cfg.VIPs {
		if _, ok := a.vips[idOf(v)]; !ok {
			a.vips[idOf(v)] = a.nextVIP
			a.nextVIP++
		}
	}
	// Release in index order, so that reuse does not depend on map order.
	var gone []uint32
	for k, id := range a.backends {
		if !want[k] {
			delete(a.backends, k)
			gone = append(gone, datapath.IDIndex(id))
		}
	}
	slices.Sort(gone)
	for _, x := range gone {
		a.gen[x]++
		a.free = append(a.free, x)
	}
	for _, k := range order {
		if _, ok := a.backends[k]; ok {
			continue
		}
		var x uint32
		switch {
		case len(a.free) > 0:
			x, a.free = a.free[0], a.free[1:]
		case len(a.gen) < a.limit:
			x = uint32(len(a.gen))
			a.gen = append(a.gen, 0)
		default:
			return nil, fmt.Errorf("engine: %w: %d backends, room for %d", ErrIDsExhausted, len(order), a.limit)
		}
		a.backends[k] = uint32(a.gen[x])<<datapath.IDIndexBits | x
		fresh = append(fresh, x)
	}
	return fresh, nil
}

// indexes is how many indexes have ever been used: the length of the native
// backends array.
func (a *ids) indexes() int { return len(a.gen) }
