package flowtable_test

import (
	"fmt"
	"time"

	"github.com/xlbproject/xlb/flowtable"
	"github.com/xlbproject/xlb/hash"
)

// A worker keeps a flow on the backend it was first given while the plan
// still accepts that backend, and re-picks on a SYN or when the backend is
// gone.
func Example() {
	table, err := flowtable.New[flowtable.Key4](flowtable.Config{Entries: 1 << 16})
	if err != nil {
		panic(err)
	}
	epoch := time.Now()
	// The plan: which backend IDs it accepts (a bitmap in the datapath),
	// and a stand-in for its Maglev lookup.
	valid := map[uint32]bool{1: true, 2: true, 3: true}
	pick := func(h uint32) uint32 {
		for i := range uint32(3) {
			if id := 1 + (h+i)%3; valid[id] {
				return id
			}
		}
		return 0
	}

	forward := func(k flowtable.Key4, syn bool) uint32 {
		now := uint32(time.Since(epoch) / time.Millisecond) // once per batch
		h := hash.Flow4(k.Src, k.Dst, k.Ports, k.Proto)
		e, ok := table.Lookup(h, &k, now)
		if !ok || syn || !valid[e.Backend] {
			e = flowtable.Entry{Backend: pick(h), VIP: 0}
			table.Upsert(h, &k, now, e)
		}
		return e.Backend
	}

	k := flowtable.Key4{Src: 0x010012c6, Dst: 0x01ff13c6, Ports: 0x50000004, Proto: 6}
	first := forward(k, true)
	fmt.Println("same backend while valid:", forward(k, false) == first)
	valid[first] = false // removed from the plan, or down
	second := forward(k, false)
	fmt.Println("re-picked when invalid:", second != first && valid[second])
	s := table.Stats()
	fmt.Println("hits", s.Hits, "misses", s.Misses, "inserts", s.Inserts, "updates", s.Updates, "entries", s.Entries)
	// Output:
	// same backend while valid: true
	// re-picked when invalid: true
	// hits 2 misses 1 inserts 1 updates 1 entries 1
}
