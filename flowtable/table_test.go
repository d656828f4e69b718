package flowtable

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/hash"
)

const (
	tcp = 6
	udp = 17
)

// key4 returns a client flow 198.18.x.y:port -> 198.18.255.1:80 with the
// words loaded as packet.Flow loads them, and its flow hash.
func key4(i int, proto uint8) (Key4, uint32) {
	src := [4]byte{198, 18, byte(i >> 8), byte(i)}
	dst := [4]byte{198, 18, 255, 1}
	ports := [4]byte{byte(i >> 8), byte(i), 0, 80}
	k := Key4{
		Src:   binary.LittleEndian.Uint32(src[:]),
		Dst:   binary.LittleEndian.Uint32(dst[:]),
		Ports: binary.LittleEndian.Uint32(ports[:]),
		Proto: proto,
	}
	return k, hash.Flow4(k.Src, k.Dst, k.Ports, k.Proto)
}

// key6 returns a client flow 2001:db8::x:y -> 2001:db8:ffff::1 port 80.
func key6(i int, proto uint8) (Key6, uint32) {
	k := Key6{
		Src:   [16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)},
		Dst:   [16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff, 0xff, 15: 1},
		Proto: proto,
	}
	ports := [4]byte{byte(i >> 8), byte(i), 0, 80}
	k.Ports = binary.LittleEndian.Uint32(ports[:])
	return k, hash.Flow6(&k.Src, &k.Dst, k.Ports, k.Proto)
}

func mustNew[K Key](t testing.TB, cfg Config) *Table[K] {
	t.Helper()
	tb, err := New[K](cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// peek finds k without side effects: its entry and deadline, expired or not.
func (t *Table[K]) peek(h uint32, k *K) (Entry, uint32, bool) {
	b := t.bucket(h)
	for w := range Ways {
		if b.tag[w] == h|1 && b.slot[w].key == *k {
			return b.slot[w].val, b.dead[w], true
		}
	}
	return Entry{}, 0, false
}

// occupied counts the non-empty slots by scanning the whole table.
func (t *Table[K]) occupied() int {
	n := 0
	for i := range t.buckets {
		for w := range Ways {
			if t.buckets[i].tag[w] != 0 {
				n++
			}
		}
	}
	return n
}

func TestNew(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		cap     int
		tcp     uint32
		udp     uint32
		wantErr string
	}{
		{name: "defaults", cfg: Config{}, cap: DefaultEntries, tcp: 900_000, udp: 30_000},
		{name: "rounds up", cfg: Config{Entries: 1000}, cap: 1024, tcp: 900_000, udp: 30_000},
		{name: "at least one bucket", cfg: Config{Entries: 1}, cap: Ways, tcp: 900_000, udp: 30_000},
		{name: "timeouts", cfg: Config{Entries: 64, TCPTimeout: time.Minute, UDPTimeout: 1500 * time.Millisecond}, cap: 64, tcp: 60_000, udp: 1500},
		{name: "max timeout", cfg: Config{Entries: 8, TCPTimeout: MaxTimeout, UDPTimeout: time.Millisecond}, cap: 8, tcp: 86_400_000, udp: 1},
		{name: "negative entries", cfg: Config{Entries: -1}, wantErr: "entries -1"},
		{name: "too many entries", cfg: Config{Entries: MaxEntries + 1}, wantErr: "entries 268435457"},
		{name: "tcp timeout too short", cfg: Config{TCPTimeout: time.Microsecond}, wantErr: "tcp timeout 1µs"},
		{name: "udp timeout negative", cfg: Config{UDPTimeout: -time.Second}, wantErr: "udp timeout -1s"},
		{name: "udp timeout too long", cfg: Config{UDPTimeout: 25 * 24 * time.Hour}, wantErr: "udp timeout 600h0m0s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb, err := New[Key4](tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) || !strings.HasPrefix(err.Error(), "flowtable: ") {
					t.Fatalf("New(%+v) error %v, want one mentioning %q", tc.cfg, err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tb.Cap() != tc.cap || tb.tcp != tc.tcp || tb.udp != tc.udp {
				t.Errorf("cap %d tcp %d udp %d, want %d %d %d", tb.Cap(), tb.tcp, tb.udp, tc.cap, tc.tcp, tc.udp)
			}
			if s := tb.Stats(); s.Capacity != uint64(tc.cap) || tb.Len() != 0 {
				t.Errorf("stats %+v len %d", s, tb.Len())
			}
		})
	}
}

func TestSlotSizes(t *testing.T) {
	t4, t6 := mustNew[Key4](t, Config{Entries: 8}), mustNew[Key6](t, Config{Entries: 8})
	if got := t4.Bytes() / Ways; got != 32 {
		t.Errorf("IPv4 bytes per entry %d, want 32", got)
	}
	if got := t6.Bytes() / Ways; got != 56 {
		t.Errorf("IPv6 bytes per entry %d, want 56", got)
	}
}

func TestLookup(t *testing.T) {
	tb := mustNew[Key4](t, Config{Entries: 1024})
	k1, h1 := key4(1, tcp)
	k2, h2 := key4(2, tcp)
	tb.Upsert(h1, &k1, 100, Entry{Backend: 7, VIP: 3})
	for _, tc := range []struct {
		name string
		h    uint32
		k    Key4
		want Entry
		ok   bool
	}{
		{"hit", h1, k1, Entry{Backend: 7, VIP: 3}, true},
		{"other flow", h2, k2, Entry{}, false},
		{"same hash other key", h1, k2, Entry{}, false},
		{"same key other hash", h2, k1, Entry{}, false},
		{"other protocol", h1, Key4{Src: k1.Src, Dst: k1.Dst, Ports: k1.Ports, Proto: udp}, Entry{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tb.Lookup(tc.h, &tc.k, 200)
			if got != tc.want || ok != tc.ok {
				t.Errorf("Lookup = %+v, %v; want %+v, %v", got, ok, tc.want, tc.ok)
			}
		})
	}
	s := tb.Stats()
	if s.Hits != 1 || s.Misses != 4 || s.Inserts != 1 || s.Entries != 1 {
		t.Errorf("stats %+v", s)
	}
}

// TestDistinctKeys puts flows that differ in one field only, all with the
// same flow hash, in one table: none may answer for another.
func TestDistinctKeys(t *testing.T) {
	t.Run("ipv4", func(t *testing.T) {
		base, _ := key4(1, tcp)
		keys := []Key4{base, base, base, base, base}
		keys[1].Src ^= 1 << 24
		keys[2].Dst ^= 1 << 24
		keys[3].Ports ^= 1 << 16
		keys[4].Proto = udp
		checkDistinct(t, keys)
	})
	t.Run("ipv6", func(t *testing.T) {
		base, _ := key6(1, tcp)
		keys := []Key6{base, base, base, base, base, base}
		keys[1].Src[15] ^= 1
		keys[2].Dst[0] ^= 1
		keys[3].Ports ^= 1
		keys[4].Proto = udp
		// An IPv4-mapped address is an IPv6 key like any other here; IPv4
		// flows live in their own Table[Key4] and cannot meet it.
		keys[5].Src = [16]byte{10: 0xff, 11: 0xff, 12: 198, 13: 18, 15: 1}
		checkDistinct(t, keys)
	})
}

func checkDistinct[K Key](t *testing.T, keys []K) {
	tb := mustNew[K](t, Config{Entries: 64})
	const h = 0x12345678
	for i := range keys {
		tb.Upsert(h, &keys[i], 0, Entry{Backend: uint32(i)})
	}
	for i := range keys {
		e, ok := tb.Lookup(h, &keys[i], 1)
		if !ok || e.Backend != uint32(i) {
			t.Errorf("key %d: Lookup = %+v, %v", i, e, ok)
		}
	}
	if tb.Len() != len(keys) {
		t.Errorf("Len %d, want %d", tb.Len(), len(keys))
	}
}

func TestExpiry(t *testing.T) {
	cfg := Config{Entries: 64, TCPTimeout: 10 * time.Second, UDPTimeout: 2 * time.Second}
	for _, tc := range []struct {
		name  string
		proto uint8
		start uint32
		idle  uint32 // ms without a packet before the last lookup
		hit   bool
	}{
		{"tcp within timeout", tcp, 1000, 9_999, true},
		{"tcp at timeout", tcp, 1000, 10_000, false},
		{"udp outlived by tcp timeout", udp, 1000, 5_000, false},
		{"udp within timeout", udp, 1000, 1_999, true},
		{"udp at timeout", udp, 1000, 2_000, false},
		{"other protocol uses udp timeout", 47, 1000, 2_000, false},
		{"tcp across clock wrap", tcp, 1<<32 - 3000, 9_999, true},
		{"udp expires across clock wrap", udp, 1<<32 - 1000, 2_000, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := mustNew[Key4](t, cfg)
			k, h := key4(1, tc.proto)
			tb.Upsert(h, &k, tc.start, Entry{Backend: 1})
			// A hit half a timeout later pushes the deadline forward.
			half := tb.timeout(&k) / 2
			if _, ok := tb.Lookup(h, &k, tc.start+half); !ok {
				t.Fatal("miss half a timeout after insert")
			}
			_, ok := tb.Lookup(h, &k, tc.start+half+tc.idle)
			if ok != tc.hit {
				t.Fatalf("hit %v, want %v", ok, tc.hit)
			}
			s := tb.Stats()
			if !tc.hit && (s.Expired != 1 || s.Entries != 0 || s.Misses != 1) {
				t.Errorf("expired entry: stats %+v", s)
			}
			if tc.hit && (s.Expired != 0 || s.Entries != 1 || s.Hits != 2) {
				t.Errorf("live entry: stats %+v", s)
			}
		})
	}
}

// TestEviction fills one bucket (equal flow hashes) and checks which entry
// a ninth flow replaces.
func TestEviction(t *testing.T) {
	const h = 0xdeadbeef
	for _, tc := range []struct {
		name    string
		protos  [Ways]uint8 // 0: tcp
		touched []int       // looked up at now=100, 101, ... before the insert
		now     uint32      // time of the ninth insert
		expired bool        // the victim has expired rather than been evicted
		victim  int
	}{
		{name: "oldest goes", now: 200, victim: 0},
		{name: "touched entries stay", touched: []int{0, 1, 2}, now: 200, victim: 3},
		{name: "least recently used goes", touched: []int{7, 6, 5, 4, 3, 2, 1, 0}, now: 200, victim: 7},
		{name: "udp closer to its deadline than older tcp", protos: [Ways]uint8{3: udp}, now: 200, victim: 3},
		{name: "expired slot reused first", protos: [Ways]uint8{5: udp}, touched: []int{0}, now: 600, expired: true, victim: 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tb := mustNew[Key4](t, Config{Entries: 1 << 10, TCPTimeout: 1000 * time.Millisecond, UDPTimeout: 500 * time.Millisecond})
			var keys [Ways + 1]Key4
			for i := range keys {
				p := uint8(tcp)
				if i < Ways && tc.protos[i] != 0 {
					p = tc.protos[i]
				}
				keys[i], _ = key4(i, p)
			}
			for i := range Ways {
				tb.Upsert(h, &keys[i], uint32(i), Entry{Backend: uint32(i)}) // 0 is the oldest
			}
			for j, i := range tc.touched {
				if _, ok := tb.Lookup(h, &keys[i], 100+uint32(j)); !ok {
					t.Fatalf("key %d missing before the insert", i)
				}
			}
			before := tb.Stats()
			tb.Upsert(h, &keys[Ways], tc.now, Entry{Backend: 99})
			for i := range keys {
				_, _, present := tb.peek(h, &keys[i])
				if present != (i != tc.victim) {
					t.Errorf("key %d present %v, victim %d", i, present, tc.victim)
				}
			}
			s := tb.Stats()
			wantEvict, wantExpired := uint64(1), uint64(0)
			if tc.expired {
				wantEvict, wantExpired = 0, 1
			}
			if s.Evictions-before.Evictions != wantEvict || s.Expired-before.Expired != wantExpired ||
				s.Inserts-before.Inserts != 1 || s.Entries != Ways {
				t.Errorf("stats before %+v after %+v", before, s)
			}
		})
	}
}

// TestUpsertRepick is the SYN path: a second decision for the same flow
// replaces the first, in place.
func TestUpsertRepick(t *testing.T) {
	tb := mustNew[Key6](t, Config{Entries: 64})
	k, h := key6(1, tcp)
	tb.Upsert(h, &k, 10, Entry{Backend: 1, VIP: 2})
	tb.Upsert(h, &k, 20, Entry{Backend: 5, VIP: 2})
	if e, ok := tb.Lookup(h, &k, 30); !ok || e.Backend != 5 {
		t.Fatalf("after re-pick Lookup = %+v, %v", e, ok)
	}
	s := tb.Stats()
	if s.Inserts != 1 || s.Updates != 1 || s.Entries != 1 || tb.occupied() != 1 {
		t.Errorf("stats %+v, occupied %d", s, tb.occupied())
	}
	// Re-picking an expired flow is a new entry, in the slot it had.
	tb.Upsert(h, &k, 30+tb.tcp, Entry{Backend: 6})
	s = tb.Stats()
	if s.Inserts != 2 || s.Expired != 1 || s.Entries != 1 || tb.occupied() != 1 {
		t.Errorf("stats %+v, occupied %d", s, tb.occupied())
	}
}

func TestDelete(t *testing.T) {
	tb := mustNew[Key4](t, Config{Entries: 64, UDPTimeout: time.Second})
	k1, h1 := key4(1, udp)
	k2, h2 := key4(2, udp)
	tb.Upsert(h1, &k1, 0, Entry{Backend: 1})
	tb.Upsert(h2, &k2, 0, Entry{Backend: 2})
	for _, tc := range []struct {
		name string
		h    uint32
		k    Key4
		now  uint32
		want bool
	}{
		{"live", h1, k1, 10, true},
		{"again", h1, k1, 10, false},
		{"expired", h2, k2, 1000, false},
		{"absent", h2, k1, 10, false},
	} {
		if got := tb.Delete(tc.h, &tc.k, tc.now); got != tc.want {
			t.Errorf("%s: Delete = %v, want %v", tc.name, got, tc.want)
		}
	}
	if _, ok := tb.Lookup(h1, &k1, 20); ok {
		t.Error("deleted flow still found")
	}
	if s := tb.Stats(); s.Deletes != 1 || s.Expired != 1 || s.Entries != 0 {
		t.Errorf("stats %+v", s)
	}
}

func TestSweep(t *testing.T) {
	// 300 flows in 512 buckets: none is full, whatever the bucket seed.
	tb := mustNew[Key4](t, Config{Entries: 4096, TCPTimeout: 10 * time.Second, UDPTimeout: time.Second})
	for i := range 300 {
		k, h := key4(i, uint8([]int{tcp, udp}[i%2]))
		tb.Upsert(h, &k, 0, Entry{Backend: uint32(i)})
	}
	if n := tb.Sweep(500, tb.Cap()); n != 0 || tb.Len() != 300 {
		t.Fatalf("nothing expired yet: swept %d, len %d", n, tb.Len())
	}
	// Sweeping in small steps visits every bucket once per round.
	swept := 0
	for range len(tb.buckets) / 4 {
		swept += tb.Sweep(5000, 4)
	}
	if swept != 150 || tb.Len() != 150 || tb.occupied() != 150 || tb.Stats().Expired != 150 {
		t.Fatalf("swept %d, len %d, occupied %d, stats %+v", swept, tb.Len(), tb.occupied(), tb.Stats())
	}
	// Long after the clock wrapped past the TCP deadlines, a sweep in time
	// keeps them from coming back to life.
	tb.Sweep(1<<31-1, tb.Cap())
	if tb.Len() != 0 {
		t.Fatalf("len %d after every deadline", tb.Len())
	}
}

var sinkEntry Entry

func TestZeroAllocs(t *testing.T) {
	t.Run("ipv4", func(t *testing.T) { checkAllocs(t, key4) })
	t.Run("ipv6", func(t *testing.T) { checkAllocs(t, key6) })
}

func checkAllocs[K Key](t *testing.T, mk func(int, uint8) (K, uint32)) {
	tb := mustNew[K](t, Config{Entries: 64})
	k1, h1 := mk(1, tcp)
	k2, h2 := mk(2, udp)
	now := uint32(0)
	allocs := testing.AllocsPerRun(1000, func() {
		now++
		tb.Upsert(h1, &k1, now, Entry{Backend: now})
		sinkEntry, _ = tb.Lookup(h1, &k1, now)
		sinkEntry, _ = tb.Lookup(h2, &k2, now)
		tb.Upsert(h2, &k2, now, Entry{Backend: now})
		tb.Update(h2, &k2, now, Entry{Backend: now + 1})
		tb.Delete(h2, &k2, now)
		tb.Sweep(now, 2)
	})
	if allocs != 0 {
		t.Errorf("%v allocations per run, want 0", allocs)
	}
}

func TestSetTimeouts(t *testing.T) {
	tb, err := New[Key4](Config{Entries: 64, TCPTimeout: time.Second, UDPTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	k := Key4{Src: 1, Dst: 2, Ports: 3, Proto: 17}
	tb.Upsert(7, &k, 0, Entry{Backend: 1})
	if err := tb.SetTimeouts(time.Second, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// The old deadline holds until the next hit, which applies the new one.
	if _, ok := tb.Lookup(7, &k, 500); !ok {
		t.Fatal("miss before the old deadline")
	}
	if _, ok := tb.Lookup(7, &k, 9000); !ok {
		t.Fatal("miss before the new deadline")
	}
	if _, ok := tb.Lookup(7, &k, 20000); ok {
		t.Fatal("hit after the new deadline")
	}
	for _, bad := range [][2]time.Duration{{0, time.Second}, {time.Second, MaxTimeout + 1}} {
		if err := tb.SetTimeouts(bad[0], bad[1]); err == nil {
			t.Errorf("SetTimeouts(%v, %v) accepted", bad[0], bad[1])
		}
	}
}

// TestCensus: Census visits every live entry once and skips expired ones
// that are not yet reclaimed.
func TestCensus(t *testing.T) {
	tab, err := New[Key4](Config{Entries: 1024, TCPTimeout: time.Second, UDPTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 300 {
		proto := uint8(udp)
		if i < 100 {
			proto = tcp // these expire first
		}
		k, h := key4(i, proto)
		tab.Upsert(h, &k, 0, Entry{Backend: uint32(i % 3), VIP: uint32(proto)})
	}
	// count returns the live entries by protocol (kept in VIP) and by backend.
	count := func(now uint32) (byProto, byBackend map[uint32]int) {
		byProto, byBackend = map[uint32]int{}, map[uint32]int{}
		visit := func(e Entry) { byProto[e.VIP]++; byBackend[e.Backend]++ }
		// In uneven steps, as a worker walks it between batches, the
		// last one "the rest" (math.MaxInt) from the middle.
		i := 0
		for step := 1; i < tab.Buckets()/2; step = step*2 + 1 {
			i = tab.Census(now, i, step, visit)
		}
		if end := tab.Census(now, i, math.MaxInt, visit); end != tab.Buckets() {
			t.Fatalf("Census(%d, MaxInt) ended at bucket %d of %d", i, end, tab.Buckets())
		}
		return byProto, byBackend
	}
	// A full bucket may evict a few of the 300 (the bucket index has a
	// random seed), never most.
	early, _ := count(500)
	if live := early[tcp] + early[udp]; live != int(tab.Stats().Entries) || early[tcp] < 90 || early[udp] < 180 {
		t.Errorf("census at 0.5s: %v, table holds %d", early, tab.Stats().Entries)
	}
	late, byBackend := count(2000) // every TCP flow idle past its 1 s
	if late[tcp] != 0 || late[udp] != early[udp] || byBackend[0]+byBackend[1]+byBackend[2] != early[udp] || byBackend[2] == 0 {
		t.Errorf("census at 2s: %v by backend %v, want the %d UDP flows only", late, byBackend, early[udp])
	}
}
