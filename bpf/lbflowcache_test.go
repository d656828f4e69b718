package bpf

import (
	"runtime"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/datapath/packet"
	"github.com/xlbproject/xlb/hash"
)

// onCPU0 keeps the calling goroutine on CPU 0 until the test ends: the
// flow caches are per CPU, and BPF_PROG_TEST_RUN runs the program on the
// caller's CPU.
func onCPU0(t *testing.T) {
	t.Helper()
	runtime.LockOSThread()
	var old, one unix.CPUSet
	if err := unix.SchedGetaffinity(0, &old); err != nil {
		t.Fatal(err)
	}
	one.Set(0)
	if err := unix.SchedSetaffinity(0, &one); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := unix.SchedSetaffinity(0, &old); err != nil {
			t.Error(err)
		}
		runtime.UnlockOSThread()
	})
}

// cacheSlot is where CPU 0's flow cache keeps frame's flow (an IPv4 one):
// its bucket's index and the way, -1 if the bucket does not hold it.
func cacheSlot(t *testing.T, lb *LB, frame []byte) (uint32, lbFcBucket4, int) {
	t.Helper()
	var fl packet.Flow
	if packet.Parse(frame, &fl) != packet.OK || fl.Family != 4 {
		t.Fatal("cacheSlot: not an IPv4 flow")
	}
	buckets := lb.objs.FlowCache.MaxEntries()
	if cpus, err := ebpf.PossibleCPU(); err != nil {
		t.Fatal(err)
	} else {
		buckets /= uint32(cpus)
	}
	i := hash.Flow4(fl.Src, fl.Dst, fl.Ports, fl.Proto) & (buckets - 1) // CPU 0's slice comes first
	var b lbFcBucket4
	if err := lb.objs.FlowCache.Lookup(i, &b); err != nil {
		t.Fatal(err)
	}
	for w, e := range b.E {
		if e.Saddr == fl.Src && e.Daddr == fl.Dst && e.Ports == fl.Ports && uint8(e.Pv) == fl.Proto {
			return i, b, w
		}
	}
	return i, b, -1
}

// TestLBFlowCache: established frames take their backend from the CPU's
// flow cache; the cache writes their time through to the flow table once
// per 2^flow_sync jiffies, puts back a flow the table lost and drops an
// entry the table contradicts; a SYN that moves a flow voids every cache,
// one that keeps its backend does not; a pending handshake is left to the
// table; a new flow's SYN makes no cache entry.
func TestLBFlowCache(t *testing.T) {
	lb := loadTestLB(t)
	onCPU0(t)
	if err := lb.SetTimeouts(time.Hour, time.Hour); err != nil {
		t.Fatal(err)
	}
	sync := uint64(1) << lb.settings.FlowSync
	ack := tcpFrame(t, vipTCP, 42000, 80, "A", 0, false, 0)
	syn := tcpFrame(t, vipTCP, 42000, 80, "S", 0, false, 0)
	first, _ := lbBackendOf(t, lb, ack)
	if _, _, w := cacheSlot(t, lb, ack); w < 0 {
		t.Fatal("the flow's first frame left no cache entry")
	}
	members := lbTables(t)[tab4].members
	other := members[0]
	if other == first {
		other = members[1]
	}
	setTable := func(id uint32) {
		t.Helper()
		fv, ok := flowOf(t, lb, ack)
		if !ok {
			t.Fatal("no flow table entry")
		}
		fv.Backend = id
		setFlow(t, lb, ack, fv)
	}
	ageCache := func() {
		t.Helper()
		i, b, w := cacheSlot(t, lb, ack)
		if w < 0 {
			t.Fatal("no cache entry")
		}
		b.E[w].Seen -= sync // into the block before
		if err := lb.objs.FlowCache.Put(i, b); err != nil {
			t.Fatal(err)
		}
	}

	// The cache answers: the table says otherwise and is not read.
	setTable(LBBackendID(other, lbTestGen))
	if got, hit := lbBackendOf(t, lb, ack); got != first || !hit {
		t.Fatalf("cached flow went to %d (hit %v), want the cache's %d", got, hit, first)
	}
	// Crossing a block, the hit reads the table, finds another backend
	// and drops the entry: the next frame follows the table.
	ageCache()
	lbBackendOf(t, lb, ack)
	if got, hit := lbBackendOf(t, lb, ack); got != other || !hit {
		t.Fatalf("after the table contradicted the cache: backend %d (hit %v), want the table's %d", got, hit, other)
	}
	// Write-through: the table's time follows the cache's hits.
	fv, _ := flowOf(t, lb, ack)
	fv.Seen -= 10 * sync
	setFlow(t, lb, ack, fv)
	ageCache()
	now, _, err := lb.clock()
	if err != nil {
		t.Fatal(err)
	}
	lbBackendOf(t, lb, ack)
	if fv, _ := flowOf(t, lb, ack); fv.Seen < now {
		t.Errorf("a hit crossing a block left the table's time at %d, want at least %d", fv.Seen, now)
	}
	// A flow the table lost is put back with the cache's backend.
	deleteFlow(t, lb, ack)
	ageCache()
	if got, hit := lbBackendOf(t, lb, ack); got != other || !hit {
		t.Fatalf("flow lost by the table: backend %d (hit %v), want the cache's %d", got, hit, other)
	}
	if fv, ok := flowOf(t, lb, ack); !ok || fv.Backend != LBBackendID(other, lbTestGen) {
		t.Fatalf("the table did not get the flow back: %+v (found %v)", fv, ok)
	}

	epoch := func() uint32 {
		t.Helper()
		var e uint32
		if err := lb.objs.FlowEpoch.Get(&e); err != nil {
			t.Fatal(err)
		}
		return e
	}
	// A SYN that keeps the flow's backend leaves the caches alone, and
	// its handshake is pending: the next frame takes the table's path
	// and its RTT sample.
	if err := lb.SetTable(0, fill(lbTestTableSize, LBBackendID(other, lbTestGen))); err != nil {
		t.Fatal(err)
	}
	e0 := epoch()
	if got, _ := lbBackendOf(t, lb, syn); got != other || epoch() != e0 {
		t.Fatalf("SYN keeping backend %d: went to %d, epoch %d -> %d", other, got, e0, epoch())
	}
	if _, b, w := cacheSlot(t, lb, ack); w < 0 || b.E[w].Pv&0x100 == 0 {
		t.Fatal("the SYN's cache entry is not marked pending")
	}
	if fv, _ := flowOf(t, lb, ack); fv.Pad == 0 {
		t.Fatal("the SYN left no pending handshake in the table")
	}
	lbBackendOf(t, lb, ack)
	if fv, _ := flowOf(t, lb, ack); fv.Pad != 0 {
		t.Error("the first ACK after the SYN did not take the table's path")
	}
	// A SYN that moves the flow voids every CPU's cache.
	if err := lb.SetTable(0, fill(lbTestTableSize, LBBackendID(first, lbTestGen))); err != nil {
		t.Fatal(err)
	}
	if got, _ := lbBackendOf(t, lb, syn); got != first || epoch() != e0+1 {
		t.Fatalf("SYN moving the flow to %d: went to %d, epoch %d -> %d", first, got, e0, epoch())
	}
	// A new flow's SYN makes a table entry and no cache entry (a SYN
	// flood does not push established flows out of the cache); its next
	// frame makes the cache entry.
	fresh := tcpFrame(t, vipTCP, 42001, 80, "S", 0, false, 0)
	lbBackendOf(t, lb, fresh)
	if _, ok := flowOf(t, lb, fresh); !ok {
		t.Error("a new flow's SYN made no flow table entry")
	}
	if _, _, w := cacheSlot(t, lb, fresh); w >= 0 {
		t.Error("a new flow's SYN made a cache entry")
	}
	lbBackendOf(t, lb, tcpFrame(t, vipTCP, 42001, 80, "A", 0, false, 0))
	if _, _, w := cacheSlot(t, lb, fresh); w < 0 {
		t.Error("a new flow's first ACK made no cache entry")
	}
}

// TestFlowSync: the write-through period is the largest power of two
// within a sixteenth of the shorter timeout.
func TestFlowSync(t *testing.T) {
	for _, tc := range []struct {
		tcp, udp uint64
		want     uint32
	}{
		{1, 1, 0}, {16, 16, 0}, {31, 1000, 0}, {32, 1000, 1}, {250 * 3600, 250 * 30, 8}, {1000 * 30, 1000 * 60, 10},
	} {
		if got := flowSync(tc.tcp, tc.udp); got != tc.want {
			t.Errorf("flowSync(%d, %d) = %d, want %d", tc.tcp, tc.udp, got, tc.want)
		}
		if p := uint64(1) << flowSync(tc.tcp, tc.udp); p > max(1, min(tc.tcp, tc.udp)/16) {
			t.Errorf("flowSync(%d, %d): period %d beyond a sixteenth", tc.tcp, tc.udp, p)
		}
	}
}
