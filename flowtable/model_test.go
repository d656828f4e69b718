package flowtable

import (
	"math/rand/v2"
	"testing"
	"time"
)

// The model is a map from key to entry and deadline. It knows the table's
// buckets only to tell when an insert must evict, and then accepts any
// entry among the live ones closest to their deadline, taking the one the
// table actually removed.

const (
	modelKeys = 32 // distinct flows a script plays with
	modelTCP  = 200 * time.Millisecond
	modelUDP  = 60 * time.Millisecond
)

type modelEntry struct {
	val  Entry
	dead uint32
}

type model[K Key] struct {
	t      *testing.T
	tb     *Table[K]
	keys   []K
	hashes []uint32
	m      map[int]modelEntry
	now    uint32
	want   Stats // only the counters the model can predict
}

// newModel builds the key pool: every other flow is TCP, and the last
// quarter reuse the flow hashes of the first quarter, as distinct flows
// whose hashes collide.
func newModel[K Key](t *testing.T, entries int, mk func(int, uint8) (K, uint32)) *model[K] {
	md := &model[K]{
		t:      t,
		tb:     mustNew[K](t, Config{Entries: entries, TCPTimeout: modelTCP, UDPTimeout: modelUDP}),
		m:      make(map[int]modelEntry),
		now:    1<<32 - 1000, // the clock wraps early in every script
		keys:   make([]K, modelKeys),
		hashes: make([]uint32, modelKeys),
	}
	// A fixed bucket seed, so that a failing script replays identically.
	md.tb.seed = 0x5eed
	for i := range modelKeys {
		proto := uint8(tcp)
		if i%2 == 1 {
			proto = udp
		}
		md.keys[i], md.hashes[i] = mk(i, proto)
		if i >= modelKeys*3/4 {
			md.hashes[i] = md.hashes[i-modelKeys*3/4]
		}
	}
	return md
}

func (md *model[K]) live(i int) (modelEntry, bool) {
	e, ok := md.m[i]
	if ok && expired(e.dead, md.now) {
		delete(md.m, i) // the table reclaims it or never shows it again
		return e, false
	}
	return e, ok
}

// run plays a script of two-byte operations: the first byte selects the
// operation (low 3 bits) and the key (the rest), the second is an argument.
func (md *model[K]) run(script []byte) {
	for i := 0; i+1 < len(script); i += 2 {
		op, arg := script[i], script[i+1]
		k := int(op>>3) % modelKeys
		switch op & 7 {
		case 0, 1, 2:
			md.lookup(k)
		case 3:
			md.upsert(k, Entry{Backend: uint32(arg), VIP: uint32(k)})
		case 4:
			md.update(k, Entry{Backend: uint32(arg), VIP: uint32(k)})
		case 5:
			md.del(k)
		case 6:
			// Mostly small steps, so that flows live for tens of
			// operations; now and then a jump past every timeout.
			if arg >= 0xf0 {
				md.now += uint32(arg) * 2
			} else {
				md.now += uint32(arg & 31)
			}
		case 7:
			md.tb.Sweep(md.now, int(arg&15))
		}
		md.check()
	}
	md.tb.Sweep(md.now, md.tb.Cap())
	md.check()
	live := 0
	for i := range md.m {
		if _, ok := md.live(i); ok {
			live++
		}
	}
	if md.tb.Len() != live {
		md.t.Fatalf("after a full sweep Len %d, model has %d live entries", md.tb.Len(), live)
	}
}

func (md *model[K]) lookup(i int) {
	e, want := md.live(i)
	got, ok := md.tb.Lookup(md.hashes[i], &md.keys[i], md.now)
	if ok != want || (ok && got != e.val) {
		md.t.Fatalf("Lookup(key %d) at %d = %+v, %v; model %+v, %v", i, md.now, got, ok, e.val, want)
	}
	if ok {
		md.want.Hits++
		md.m[i] = modelEntry{val: e.val, dead: md.now + md.tb.timeout(&md.keys[i])}
	} else {
		md.want.Misses++
	}
}

func (md *model[K]) upsert(i int, v Entry) {
	defer func() { md.m[i] = modelEntry{val: v, dead: md.now + md.tb.timeout(&md.keys[i])} }()
	if _, ok := md.live(i); ok {
		if md.tb.Upsert(md.hashes[i], &md.keys[i], md.now, v) {
			md.t.Fatalf("Upsert(key %d) over a live entry says it created one", i)
		}
		md.want.Updates++
		return
	}
	// Live flows of the same bucket, and those among them closest to their
	// deadline: the candidates for eviction.
	b := md.tb.bucket(md.hashes[i])
	var same, oldest []int
	var left uint32
	for j := range md.m {
		if md.tb.bucket(md.hashes[j]) != b {
			continue
		}
		e, ok := md.live(j)
		if !ok {
			continue
		}
		same = append(same, j)
		switch l := e.dead - md.now; {
		case len(oldest) == 0 || l < left:
			oldest, left = []int{j}, l
		case l == left:
			oldest = append(oldest, j)
		}
	}
	if !md.tb.Upsert(md.hashes[i], &md.keys[i], md.now, v) {
		md.t.Fatalf("Upsert(key %d) without a live entry says it created none", i)
	}
	md.want.Inserts++
	if len(same) < Ways {
		return
	}
	md.want.Evictions++
	gone := -1
	for _, j := range oldest {
		if _, _, ok := md.tb.peek(md.hashes[j], &md.keys[j]); !ok {
			if gone >= 0 {
				md.t.Fatalf("Upsert(key %d) removed keys %d and %d", i, gone, j)
			}
			gone = j
		}
	}
	if gone < 0 {
		md.t.Fatalf("Upsert(key %d) into a full bucket evicted none of %v", i, oldest)
	}
	delete(md.m, gone)
}

// update is Update: the live entry rewritten, or nothing stored.
func (md *model[K]) update(i int, v Entry) {
	_, want := md.live(i)
	if got := md.tb.Update(md.hashes[i], &md.keys[i], md.now, v); got != want {
		md.t.Fatalf("Update(key %d) = %v, model %v", i, got, want)
	}
	if want {
		md.want.Updates++
		md.m[i] = modelEntry{val: v, dead: md.now + md.tb.timeout(&md.keys[i])}
	}
}

func (md *model[K]) del(i int) {
	_, want := md.live(i)
	if got := md.tb.Delete(md.hashes[i], &md.keys[i], md.now); got != want {
		md.t.Fatalf("Delete(key %d) = %v, model %v", i, got, want)
	}
	if want {
		md.want.Deletes++
	}
	delete(md.m, i)
}

// check compares every live model entry with the table, the predictable
// counters, and the table's entry count with its occupied slots.
func (md *model[K]) check() {
	for i := range md.m {
		e, ok := md.live(i)
		if !ok {
			continue
		}
		v, dead, found := md.tb.peek(md.hashes[i], &md.keys[i])
		if !found || v != e.val || dead != e.dead {
			md.t.Fatalf("key %d: table %+v dead %d found %v; model %+v", i, v, dead, found, e)
		}
	}
	s := md.tb.Stats()
	got := Stats{Hits: s.Hits, Misses: s.Misses, Inserts: s.Inserts, Updates: s.Updates, Deletes: s.Deletes, Evictions: s.Evictions}
	if got != md.want {
		md.t.Fatalf("counters %+v, model %+v", got, md.want)
	}
	if n := md.tb.occupied(); n != md.tb.Len() || n < len(md.m) {
		md.t.Fatalf("occupied %d, Len %d, model %d", n, md.tb.Len(), len(md.m))
	}
}

func TestModel(t *testing.T) {
	for _, entries := range []int{8, 16, 64} {
		for seed := range uint64(20) {
			rng := rand.New(rand.NewPCG(seed, uint64(entries)))
			script := make([]byte, 4000)
			for i := range script {
				script[i] = byte(rng.Uint32())
			}
			newModel(t, entries, key4).run(script)
			newModel(t, entries, key6).run(script)
		}
	}
}

func FuzzTable(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{3, 1, 0, 0, 6, 255, 0, 0})                                             // insert, hit, jump past timeouts, miss
	f.Add([]byte{3, 1, 11, 2, 19, 3, 27, 4, 35, 5, 43, 6, 51, 7, 59, 8, 67, 9, 75, 10}) // ten flows
	f.Add([]byte{3, 1, 3, 2, 5, 0, 5, 0, 7, 15})                                        // update, delete twice, sweep
	f.Add([]byte{4, 1, 3, 1, 4, 2, 0, 0, 6, 255, 4, 3})                                 // update of none, insert, update, expire, update
	f.Fuzz(func(t *testing.T, script []byte) {
		newModel(t, 16, key4).run(script)
		newModel(t, 8, key6).run(script)
	})
}
