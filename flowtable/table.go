package flowtable

import (
	"fmt"
	"math/rand/v2"
	"time"
	"unsafe"
)

// Ways is the associativity: a flow can live in any of the Ways slots of the
// one bucket its hash selects. Eight ways put the tags and deadlines of a
// bucket in one 64-byte cache line and make a full bucket (a flow evicted
// by unrelated flows) rare until the table is nearly full.
const Ways = 8

// Defaults for the zero Config. See the package documentation for why.
const (
	DefaultEntries    = 1 << 18
	DefaultTCPTimeout = 900 * time.Second
	DefaultUDPTimeout = 30 * time.Second
)

// Bounds of Config. Timeouts are at most MaxTimeout so that the wrapping
// millisecond clock can still tell a deadline in the past from one in the
// future (2^31 ms is about 24.8 days); MaxEntries keeps the bucket index in
// 32 bits and the table's size within reason.
const (
	MaxEntries = 1 << 28
	MaxTimeout = 24 * time.Hour
)

const protoTCP = 6

// Key4 identifies an IPv4 flow. Src, Dst and Ports are the words hash.Flow4
// takes and packet.Flow holds (the packet's bytes loaded little-endian), so
// a key is built from a parsed packet without byte swaps.
type Key4 struct {
	Src, Dst uint32
	Ports    uint32 // source then destination port as on the wire; 0 without ports
	Proto    uint8  // IP protocol number
}

// Key6 identifies an IPv6 flow: the addresses as they sit in the packet,
// and Ports and Proto as in Key4.
type Key6 struct {
	Src, Dst [16]byte
	Ports    uint32
	Proto    uint8
}

// Key is the set of key types a Table can hold: one table per address
// family, so an IPv4 entry is not padded to the size of an IPv6 one.
type Key interface {
	Key4 | Key6
}

// Entry is what the table remembers for a flow. Both fields are the caller's
// identifiers; the table never interprets them. They must name the backend
// and VIP stably across plan changes (an ID, not a position in a slice that
// a reload reorders), because the entry outlives the plan that created it.
type Entry struct {
	Backend uint32
	VIP     uint32
}

// Config sizes a Table. The zero value selects the defaults.
type Config struct {
	// Entries is the capacity, rounded up to a power of two of at least
	// Ways. 0 selects DefaultEntries.
	Entries int
	// TCPTimeout is how long a TCP flow's entry stays valid without a
	// packet. 0 selects DefaultTCPTimeout.
	TCPTimeout time.Duration
	// UDPTimeout is the same for every other protocol, UDP included.
	// 0 selects DefaultUDPTimeout.
	UDPTimeout time.Duration
}

// Stats are the table's counters. They are plain values: a snapshot taken by
// the owner with Table.Stats, which other goroutines may read once the owner
// publishes it (an atomic.Pointer, or a copy into atomics once per batch).
type Stats struct {
	Hits      uint64 // Lookup found a live entry
	Misses    uint64 // Lookup found none (absent or expired)
	Inserts   uint64 // Upsert created an entry
	Updates   uint64 // Upsert overwrote a live entry of the same flow
	Deletes   uint64 // Delete removed a live entry
	Evictions uint64 // a live entry was replaced because its bucket was full
	Expired   uint64 // idle entries reclaimed (by Lookup, Upsert, Delete or Sweep)
	Entries   uint64 // occupied slots, including expired ones not yet reclaimed
	Capacity  uint64 // slots in the table
}

// Table is the flow table of one worker. It is not safe for concurrent use:
// the worker that owns it is the only one to call its methods.
type Table[K Key] struct {
	buckets []bucket[K]
	shift   uint32 // 32 - log2(len(buckets))
	seed    uint32 // per-table secret mixed into the bucket index
	tcp     uint32 // TCP idle timeout, ms
	udp     uint32 // idle timeout of every other protocol, ms
	cursor  uint32 // next bucket Sweep visits
	stats   Stats
}

// bucket keeps its tags and deadlines together in its first cache line, so
// a miss usually reads that line only and a hit one more.
type bucket[K Key] struct {
	tag  [Ways]uint32 // hash|1 of the flow in each way; 0 marks an empty way
	dead [Ways]uint32 // idle deadline of each way, ms on the caller's clock
	slot [Ways]slot[K]
}

type slot[K Key] struct {
	key K
	val Entry
}

// New returns an empty table with all its memory allocated.
func New[K Key](cfg Config) (*Table[K], error) {
	if cfg.Entries == 0 {
		cfg.Entries = DefaultEntries
	}
	if cfg.TCPTimeout == 0 {
		cfg.TCPTimeout = DefaultTCPTimeout
	}
	if cfg.UDPTimeout == 0 {
		cfg.UDPTimeout = DefaultUDPTimeout
	}
	if cfg.Entries < 0 || cfg.Entries > MaxEntries {
		return nil, fmt.Errorf("flowtable: entries %d out of range [1, %d]", cfg.Entries, MaxEntries)
	}
	if err := checkTimeouts(cfg.TCPTimeout, cfg.UDPTimeout); err != nil {
		return nil, err
	}
	n := 1 // buckets
	bits := uint32(0)
	for n*Ways < cfg.Entries {
		n <<= 1
		bits++
	}
	t := &Table[K]{
		buckets: make([]bucket[K], n),
		shift:   32 - bits,
		seed:    rand.Uint32(),
		tcp:     uint32(cfg.TCPTimeout / time.Millisecond),
		udp:     uint32(cfg.UDPTimeout / time.Millisecond),
	}
	t.stats.Capacity = uint64(n * Ways)
	adviseHugePages(t.buckets)
	return t, nil
}

// Cap returns the number of slots.
func (t *Table[K]) Cap() int { return len(t.buckets) * Ways }

// Len returns the number of occupied slots, expired ones not yet reclaimed
// included.
func (t *Table[K]) Len() int { return int(t.stats.Entries) }

// Bytes returns the memory the table holds, for sizing and logs.
func (t *Table[K]) Bytes() int { return len(t.buckets) * int(unsafe.Sizeof(bucket[K]{})) }

// Stats returns a snapshot of the counters. Only the owner may call it.
func (t *Table[K]) Stats() Stats { return t.stats }

// Lookup returns the entry of flow k, whose flow hash is h, and refreshes
// its idle deadline to now plus the protocol's timeout. now is the caller's
// millisecond clock. An expired entry is reclaimed and reported as a miss.
// The caller must give the same h for the same k every time (hash.Flow4 or
// hash.Flow6 of the key's fields).
func (t *Table[K]) Lookup(h uint32, k *K, now uint32) (Entry, bool) {
	b := t.bucket(h)
	tag := h | 1
	for w := range Ways {
		if b.tag[w] != tag || b.slot[w].key != *k {
			continue
		}
		if expired(b.dead[w], now) {
			t.reclaim(b, w)
			break
		}
		b.dead[w] = now + t.timeout(k)
		t.stats.Hits++
		return b.slot[w].val, true
	}
	t.stats.Misses++
	return Entry{}, false
}

// Upsert stores e for flow k, replacing any entry k had: a TCP SYN or a
// flow whose backend the caller no longer accepts takes a fresh decision
// this way. A new entry goes into an empty or expired way of its bucket, or
// else replaces the live entry of that bucket closest to its idle deadline
// (with one protocol, the least recently used one), counted as an eviction.
// It reports whether it created an entry rather than overwrote k's.
func (t *Table[K]) Upsert(h uint32, k *K, now uint32, e Entry) (created bool) {
	b := t.bucket(h)
	tag := h | 1
	free, victim := -1, 0
	var left uint32 = 1<<32 - 1 // time the victim has left
	for w := range Ways {
		switch {
		case b.tag[w] == 0:
			if free < 0 {
				free = w
			}
		case expired(b.dead[w], now):
			t.reclaim(b, w)
			if free < 0 {
				free = w
			}
		case b.tag[w] == tag && b.slot[w].key == *k:
			b.dead[w] = now + t.timeout(k)
			b.slot[w].val = e
			t.stats.Updates++
			return false
		default:
			if l := b.dead[w] - now; l < left {
				left, victim = l, w
			}
		}
	}
	if free < 0 {
		free = victim
		t.stats.Evictions++
	} else {
		t.stats.Entries++
	}
	t.stats.Inserts++
	b.tag[free] = tag
	b.dead[free] = now + t.timeout(k)
	b.slot[free] = slot[K]{key: *k, val: e}
	return true
}

// Update stores e for flow k and refreshes its idle deadline if k has a
// live entry, and reports whether it had: Upsert that never creates. A
// worker past its SYN rate re-picks a reused 5-tuple this way without
// taking a slot for a flow it does not track yet. Its loop is Lookup's and
// Delete's, written out in each: a shared helper returning the way cost
// Lookup 4-5 ns a hit and 3 a miss in BenchmarkTable.
func (t *Table[K]) Update(h uint32, k *K, now uint32, e Entry) bool {
	b := t.bucket(h)
	tag := h | 1
	for w := range Ways {
		if b.tag[w] != tag || b.slot[w].key != *k {
			continue
		}
		if expired(b.dead[w], now) {
			t.reclaim(b, w)
			return false
		}
		b.dead[w] = now + t.timeout(k)
		b.slot[w].val = e
		t.stats.Updates++
		return true
	}
	return false
}

// Delete removes the entry of flow k and reports whether it was live at now;
// an entry already past its deadline is reclaimed as expired and reported
// false.
func (t *Table[K]) Delete(h uint32, k *K, now uint32) bool {
	b := t.bucket(h)
	tag := h | 1
	for w := range Ways {
		if b.tag[w] != tag || b.slot[w].key != *k {
			continue
		}
		if expired(b.dead[w], now) {
			t.reclaim(b, w)
			return false
		}
		b.tag[w] = 0
		t.stats.Entries--
		t.stats.Deletes++
		return true
	}
	return false
}

// Sweep reclaims the expired entries of the next n buckets, continuing where
// the previous call stopped, and returns how many it reclaimed. Lookup and
// Upsert reclaim what they meet, so Sweep only keeps Len and Stats.Entries
// close to the live count and, more importantly, guarantees that no entry
// idles long enough for the wrapping clock to make it look live again: the
// whole table must be swept within 2^31 ms - MaxTimeout (about 23 days),
// which a few buckets per worker loop iteration achieve many times over.
func (t *Table[K]) Sweep(now uint32, n int) int {
	reclaimed := 0
	mask := uint32(len(t.buckets) - 1)
	for range min(n, len(t.buckets)) {
		b := &t.buckets[t.cursor&mask]
		t.cursor++
		for w := range Ways {
			if b.tag[w] != 0 && expired(b.dead[w], now) {
				t.reclaim(b, w)
				reclaimed++
			}
		}
	}
	return reclaimed
}

// Buckets is the number of buckets, the unit Census walks the table in.
func (t *Table[K]) Buckets() int { return len(t.buckets) }

// Census calls visit with every live entry of the n buckets from bucket
// from on (fewer at the end of the table), and returns the bucket after the
// last it visited: Buckets() once the walk is done. It is for counters an
// operator reads now and then (flows per backend), walked in steps so that
// no batch waits long, never per packet. Like every other method it belongs
// to the owner goroutine.
func (t *Table[K]) Census(now uint32, from, n int, visit func(Entry)) int {
	from = min(max(from, 0), len(t.buckets))
	end := from + min(max(n, 0), len(t.buckets)-from) // n may be math.MaxInt
	for i := from; i < end; i++ {
		b := &t.buckets[i]
		for w := range Ways {
			if b.tag[w] != 0 && !expired(b.dead[w], now) {
				visit(b.slot[w].val)
			}
		}
	}
	return end
}

// bucket maps a flow hash to its bucket. The flow hash has a public, fixed
// seed (every instance must agree on it), so the table first mixes it with
// its own secret seed through murmur3's finalizer: without knowing the seed,
// a sender cannot cheaply choose flows that all land in one bucket to evict
// the flows already there.
func (t *Table[K]) bucket(h uint32) *bucket[K] {
	x := h ^ t.seed
	x ^= x >> 16
	x *= 0x85ebca6b
	x ^= x >> 13
	x *= 0xc2b2ae35
	x ^= x >> 16
	return &t.buckets[x>>t.shift]
}

// timeout returns the idle timeout of k's protocol in ms.
func checkTimeouts(tcp, udp time.Duration) error {
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"tcp", tcp}, {"udp", udp}} {
		if d.v < time.Millisecond || d.v > MaxTimeout {
			return fmt.Errorf("flowtable: %s timeout %v out of range [1ms, %v]", d.name, d.v, MaxTimeout)
		}
	}
	return nil
}

// SetTimeouts changes the idle timeouts (a config reload). Entries keep the
// deadline they have until their next hit, which applies the new timeout.
// Like every other method it belongs to the table's owner goroutine.
func (t *Table[K]) SetTimeouts(tcp, udp time.Duration) error {
	if err := checkTimeouts(tcp, udp); err != nil {
		return err
	}
	t.tcp, t.udp = uint32(tcp/time.Millisecond), uint32(udp/time.Millisecond)
	return nil
}

func (t *Table[K]) timeout(k *K) uint32 {
	var proto uint8
	switch k := any(k).(type) {
	case *Key4:
		proto = k.Proto
	case *Key6:
		proto = k.Proto
	}
	if proto == protoTCP {
		return t.tcp
	}
	return t.udp
}

func (t *Table[K]) reclaim(b *bucket[K], w int) {
	b.tag[w] = 0
	t.stats.Entries--
	t.stats.Expired++
}

// expired reports whether deadline is not after now, on a clock that wraps:
// correct while the two are less than 2^31 ms apart.
func expired(deadline, now uint32) bool { return int32(deadline-now) <= 0 }
