package splice

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf"
)

// Table is the splice map set of a loaded steer program. Safe for
// concurrent use. It assumes it is the only writer of the maps.
type Table struct {
	maps bpf.SpliceMaps
	ncpu int

	mu   sync.Mutex
	free []Slot                    // free pair slots, the next one last
	used map[Slot][2]bpf.SpliceKey // the entries of each pair in the map
}

// NewTable returns the Table of the steer program's splice maps, which
// must be empty (a freshly loaded program).
func NewTable(m bpf.SpliceMaps) (*Table, error) {
	if m.Splice == nil || m.Pairs == nil || m.Counts == nil {
		return nil, errors.New("splice: the steer program was loaded without splice maps")
	}
	n := m.Pairs.MaxEntries()
	if m.Splice.MaxEntries() != 2*n || m.Counts.MaxEntries() != 2*n {
		return nil, fmt.Errorf("splice: map sizes %d, %d, %d: want 2n, n, 2n",
			m.Splice.MaxEntries(), n, m.Counts.MaxEntries())
	}
	ncpu, err := ebpf.PossibleCPU()
	if err != nil {
		return nil, fmt.Errorf("splice: %w", err)
	}
	t := &Table{maps: m, ncpu: ncpu, free: make([]Slot, n), used: make(map[Slot][2]bpf.SpliceKey)}
	for i := range t.free {
		t.free[i] = Slot(int(n) - 1 - i)
	}
	return t, nil
}

// Cap returns the number of pairs the table holds.
func (t *Table) Cap() int { return int(t.maps.Pairs.MaxEntries()) }

// Len returns the number of pairs in the table.
func (t *Table) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.used)
}

// Insert computes both directions' entries of p (Plan) and inserts them
// with BPF_NOEXIST, after resetting the slot's state and counters. From
// then on the datapath rewrites the pair's packets. On error nothing is
// left behind; ErrFull, ErrOptionsMismatch and ErrFamilyMismatch mean the
// pair stays proxied.
func (t *Table) Insert(p Pair) (Slot, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.free) == 0 {
		return 0, fmt.Errorf("%w: %d pairs", ErrFull, t.Cap())
	}
	s := t.free[len(t.free)-1]
	e, err := Plan(p, s)
	if err != nil {
		return 0, err
	}
	if err := t.maps.Pairs.Update(uint32(s), bpf.SplicePair{}, ebpf.UpdateAny); err != nil {
		return 0, fmt.Errorf("splice: reset pair %d: %w", s, err)
	}
	zero := make([]bpf.SpliceCount, t.ncpu)
	for d := range 2 {
		if err := t.maps.Counts.Update(uint32(s)*2+uint32(d), zero, ebpf.UpdateAny); err != nil {
			return 0, fmt.Errorf("splice: reset counters of pair %d: %w", s, err)
		}
	}
	for i := range e {
		if err := t.maps.Splice.Update(e[i].Key, e[i].Dir, ebpf.UpdateNoExist); err != nil {
			if i == 1 {
				if derr := t.maps.Splice.Delete(e[0].Key); derr != nil {
					err = errors.Join(err, fmt.Errorf("undo: %w", derr))
				}
			}
			if errors.Is(err, ebpf.ErrKeyExist) {
				return 0, fmt.Errorf("splice: %v: %w", Direction(i), err)
			}
			if errors.Is(err, unix.E2BIG) {
				return 0, fmt.Errorf("%w: %v", ErrFull, err)
			}
			return 0, fmt.Errorf("splice: insert %v: %w", Direction(i), err)
		}
	}
	t.free = t.free[:len(t.free)-1]
	t.used[s] = [2]bpf.SpliceKey{e[0].Key, e[1].Key}
	return s, nil
}

// Delete removes both directions' entries of slot s and frees it; packets
// of the pair then go to the kernel.
func (t *Table) Delete(s Slot) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	keys, ok := t.used[s]
	if !ok {
		return fmt.Errorf("splice: delete: pair %d not in use", s)
	}
	var errs []error
	for _, k := range keys {
		if err := t.maps.Splice.Delete(k); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("splice: delete pair %d: %w", s, errors.Join(errs...))
	}
	delete(t.used, s)
	t.free = append(t.free, s)
	return nil
}

// Status returns what the datapath recorded about the pair in slot s.
func (t *Table) Status(s Slot) (Status, error) {
	// Held throughout: a Delete and Insert in between would hand the slot
	// to another pair, whose state this would then report.
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.used[s]; !ok {
		return Status{}, fmt.Errorf("splice: status: pair %d not in use", s)
	}
	var p bpf.SplicePair
	if err := t.maps.Pairs.Lookup(uint32(s), &p); err != nil {
		return Status{}, fmt.Errorf("splice: status of pair %d: %w", s, err)
	}
	st := Status{
		FinFromClient:  p.State&bpf.SpliceFINClient != 0,
		FinFromBackend: p.State&bpf.SpliceFINBackend != 0,
		Reset:          p.State&bpf.SpliceRST != 0,
		LastPacket:     time.Duration(p.LastNs),
		LastSeq:        p.LastSeq,
		LastAck:        p.LastAck,
	}
	var per []bpf.SpliceCount
	for d := range 2 {
		if err := t.maps.Counts.Lookup(uint32(s)*2+uint32(d), &per); err != nil {
			return Status{}, fmt.Errorf("splice: counters of pair %d: %w", s, err)
		}
		for _, c := range per {
			st.Packets[d] += c.Packets
			st.Bytes[d] += c.Bytes
		}
	}
	return st, nil
}
