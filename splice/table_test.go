package splice

import (
	"bytes"
	"errors"
	"sync"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/internal/testenv"
)

// XDP actions (linux/bpf.h).
const (
	xdpDrop     = 1
	xdpPass     = 2
	xdpTX       = 3
	xdpRedirect = 4
)

// loInterface is the ingress interface of BPF_PROG_TEST_RUN without a
// context: the loopback device.
const loInterface = 1

// loadTable loads the steer program with a splice table of pairs pairs.
func loadTable(t testing.TB, pairs int) (*bpf.Steer, *Table) {
	t.Helper()
	testenv.Root(t, "loads the steer program (BPF_PROG_TEST_RUN)")
	s, err := bpf.LoadSteer(bpf.SteerOptions{SpliceTableSize: pairs})
	if err != nil {
		t.Fatalf("LoadSteer: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	m, ok := s.SpliceMaps()
	if !ok {
		t.Fatal("no splice maps")
	}
	tab, err := NewTable(m)
	if err != nil {
		t.Fatal(err)
	}
	return s, tab
}

// run runs frame through the program and returns the verdict and the
// frame as it left.
func run(t testing.TB, s *bpf.Steer, frame []byte) (uint32, []byte) {
	t.Helper()
	opts := ebpf.RunOptions{Data: frame, DataOut: make([]byte, len(frame)+256)}
	v, err := s.Program().Run(&opts)
	if err != nil {
		t.Fatalf("run: %v", err)
	}
	return v, opts.DataOut
}

// xdpAction is the program's verdict for the model's.
func xdpAction(v Verdict, d *bpf.SpliceDir) uint32 {
	switch v {
	case Rewritten:
		if d.Ifindex == loInterface {
			return xdpTX
		}
		return xdpRedirect
	case Expired:
		return xdpDrop
	}
	return xdpPass
}

// TestRewriteMatchesC runs every scenario through the steer program and
// the Go model: same verdicts, same bytes, same pair state; the counters
// account for the rewritten frames; the steer counters say spliced.
func TestRewriteMatchesC(t *testing.T) {
	s, tab := loadTable(t, 4)
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			p, _ := buildPair(t, sc, 0)
			slot, err := tab.Insert(p)
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				if err := tab.Delete(slot); err != nil {
					t.Error(err)
				}
			}()
			_, e := buildPair(t, sc, slot)
			var model bpf.SplicePair
			var packets, nbytes [2]uint64
			for _, st := range sc.steps {
				f := st.frame(t)
				want := append([]byte(nil), f...)
				verdict := Rewrite(want, &e[st.dir].Dir, &model)
				before, _ := s.Counters()
				got, out := run(t, s, f)
				after, _ := s.Counters()
				if wantAct := xdpAction(verdict, &e[st.dir].Dir); got != wantAct {
					t.Fatalf("%s: action %d, want %d (model: %v)", st.name, got, wantAct, verdict)
				}
				if !bytes.Equal(out, want) {
					t.Fatalf("%s: C and Go differ\n   C % x\n  Go % x", st.name, out, want)
				}
				d := bpf.SteerCounters{Seen: 1}
				switch verdict {
				case Rewritten:
					d.Spliced = 1
					packets[st.dir]++
					nbytes[st.dir] += uint64(len(f))
				case Malformed:
					d.Malformed = 1
				case Expired:
					d.SpliceExpired = 1
				}
				if delta := sub(after, before); delta != d {
					t.Errorf("%s: steer counters moved by %+v, want %+v", st.name, delta, d)
				}
			}
			var c bpf.SplicePair
			if err := tab.maps.Pairs.Lookup(uint32(slot), &c); err != nil {
				t.Fatal(err)
			}
			if c.State != model.State || c.LastSeq != model.LastSeq || c.LastAck != model.LastAck || c.TSDelta != model.TSDelta {
				t.Errorf("pair state C %+v, Go %+v", c, model)
			}
			status, err := tab.Status(slot)
			if err != nil {
				t.Fatal(err)
			}
			if status.Packets != packets || status.Bytes != nbytes {
				t.Errorf("counters %v packets %v bytes, want %v %v", status.Packets, status.Bytes, packets, nbytes)
			}
			if (packets != [2]uint64{}) != (status.LastPacket != 0) {
				t.Errorf("last packet at %v after %v packets", status.LastPacket, packets)
			}
			if status.FinFromClient != (c.State&bpf.SpliceFINClient != 0) || status.FinFromBackend != (c.State&bpf.SpliceFINBackend != 0) ||
				status.Reset != (c.State&bpf.SpliceRST != 0) || status.LastSeq != c.LastSeq || status.LastAck != c.LastAck {
				t.Errorf("status %+v from pair %+v", status, c)
			}
		})
	}
}

func sub(a, b bpf.SteerCounters) bpf.SteerCounters {
	return bpf.SteerCounters{Seen: a.Seen - b.Seen, Redirected: a.Redirected - b.Redirected, Passed: a.Passed - b.Passed,
		Malformed: a.Malformed - b.Malformed, NoSocket: a.NoSocket - b.NoSocket, Spliced: a.Spliced - b.Spliced,
		SpliceExpired: a.SpliceExpired - b.SpliceExpired}
}

// TestSpliceStates: FIN each way and RST show in Status.
func TestSpliceStates(t *testing.T) {
	s, tab := loadTable(t, 2)
	slot, err := tab.Insert(testPair(false))
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		s    seg
		want Status
	}{
		{with(cb(false, 5_000, 1_000_000), func(s *seg) { s.fin = true }), Status{FinFromClient: true}},
		{with(bc(false, 77, 0xffff_fff1), func(s *seg) { s.fin = true }), Status{FinFromClient: true, FinFromBackend: true}},
		{with(bc(false, 78, 0xffff_fff1), func(s *seg) { s.rst = true }), Status{FinFromClient: true, FinFromBackend: true, Reset: true}},
	}
	for i, st := range steps {
		if v, _ := run(t, s, st.s.frame(t)); v != xdpTX && v != xdpRedirect {
			t.Fatalf("step %d: verdict %d", i, v)
		}
		got, err := tab.Status(slot)
		if err != nil {
			t.Fatal(err)
		}
		if got.FinFromClient != st.want.FinFromClient || got.FinFromBackend != st.want.FinFromBackend || got.Reset != st.want.Reset {
			t.Errorf("step %d: status %+v, want %+v", i, got, st.want)
		}
	}
}

// TestTable: insert to capacity, ErrFull, a failed insert leaves nothing,
// delete frees the slot and the frames go to the kernel again, a reused
// slot starts from zero.
func TestTable(t *testing.T) {
	s, tab := loadTable(t, 2)
	if tab.Cap() != 2 || tab.Len() != 0 {
		t.Fatalf("Cap %d Len %d", tab.Cap(), tab.Len())
	}
	p1 := testPair(false)
	p2 := testPair(true)
	p3 := testPair(false)
	p3.Client.Remote = netipPort(p3.Client.Remote, 40001)
	p3.Backend.Local = netipPort(p3.Backend.Local, 50001)
	s1, err := tab.Insert(p1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tab.Insert(p1); err == nil || errors.Is(err, ErrFull) {
		t.Errorf("inserting the same pair twice: %v", err)
	}
	// Another client on the same backend connection: its first direction
	// goes in, the second collides and the first must be taken out again.
	half := p1
	half.Client.Remote = netipPort(half.Client.Remote, 40999)
	if _, err := tab.Insert(half); err == nil {
		t.Error("inserted a pair sharing a backend connection")
	}
	if tab.Len() != 1 || countEntries(t, tab) != 2 {
		t.Errorf("after duplicates: Len %d, %d entries", tab.Len(), countEntries(t, tab))
	}
	bad := testPair(false)
	bad.Backend.Timestamps = false
	if _, err := tab.Insert(bad); !errors.Is(err, ErrOptionsMismatch) {
		t.Errorf("options mismatch: %v", err)
	}
	s2, err := tab.Insert(p2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tab.Insert(p3); !errors.Is(err, ErrFull) {
		t.Errorf("third pair in a table of 2: %v", err)
	}
	if tab.Len() != 2 || countEntries(t, tab) != 4 {
		t.Errorf("Len %d, %d entries", tab.Len(), countEntries(t, tab))
	}
	f := cb(false, 5_000, 1_000_000).frame(t)
	if v, _ := run(t, s, f); v != xdpTX {
		t.Errorf("spliced frame: verdict %d", v)
	}
	if err := tab.Delete(s1); err != nil {
		t.Fatal(err)
	}
	if err := tab.Delete(s1); err == nil {
		t.Error("deleted a free slot")
	}
	if v, out := run(t, s, f); v != xdpPass || !bytes.Equal(out, f) {
		t.Errorf("after Delete: verdict %d, changed %v", v, !bytes.Equal(out, f))
	}
	s3, err := tab.Insert(p3)
	if err != nil {
		t.Fatal(err)
	}
	if s3 != s1 {
		t.Errorf("the freed slot %d was not reused (got %d)", s1, s3)
	}
	st, err := tab.Status(s3)
	if err != nil {
		t.Fatal(err)
	}
	if st != (Status{}) {
		t.Errorf("a reused slot starts with %+v", st)
	}
	if _, err := tab.Status(Slot(7)); err == nil {
		t.Error("Status of a slot not in use")
	}
	if err := tab.Delete(s2); err != nil {
		t.Fatal(err)
	}
	if err := tab.Delete(s3); err != nil {
		t.Fatal(err)
	}
	if tab.Len() != 0 || countEntries(t, tab) != 0 {
		t.Errorf("empty table: Len %d, %d entries", tab.Len(), countEntries(t, tab))
	}
}

func countEntries(t *testing.T, tab *Table) int {
	t.Helper()
	var k bpf.SpliceKey
	var v bpf.SpliceDir
	n := 0
	it := tab.maps.Splice.Iterate()
	for it.Next(&k, &v) {
		n++
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestNewTableWithoutSplice: a program loaded without splice has no maps.
func TestNewTableWithoutSplice(t *testing.T) {
	testenv.Root(t, "loads the steer program")
	s, err := bpf.LoadSteer(bpf.SteerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, ok := s.SpliceMaps(); ok {
		t.Error("splice maps without splice")
	}
	if _, err := NewTable(bpf.SpliceMaps{}); err == nil {
		t.Error("NewTable of no maps")
	}
	f := cb(false, 5_000, 1_000_000).frame(t)
	if v, out := run(t, s, f); v != xdpPass || !bytes.Equal(out, f) {
		t.Errorf("verdict %d", v)
	}
}

// BenchmarkSplice measures the steer program on spliced frames (a pair in
// a table of 32768): a pure ACK with timestamps, one with timestamps and
// a SACK block, one with differing window scales and none.
func BenchmarkSplice(b *testing.B) {
	s, tab := loadTable(b, 32768)
	if _, err := tab.Insert(testPair(false)); err != nil {
		b.Fatal(err)
	}
	scaled := testPair(true)
	scaled.Client.SndWscale, scaled.Client.Timestamps, scaled.Backend.Timestamps = 2, false, false
	if _, err := tab.Insert(scaled); err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name  string
		frame []byte
	}{
		{"ack-ts", cb(false, 5_000, 1_000_000, nop, nop, ts(50_000, 100_000)).frame(b)},
		{"ack-ts-sack", cb(false, 5_000, 1_000_000, nop, nop, ts(50_000, 100_000), nop, nop, sack(1_000_100, 1_000_200)).frame(b)},
		{"ipv6-rescaled", cb(true, 5_000, 1_000_000).frame(b)},
	} {
		b.Run(bc.name, func(b *testing.B) {
			_, per, err := s.Program().Benchmark(bc.frame, b.N, b.ResetTimer)
			if err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(per.Nanoseconds()), "ns/pkt")
		})
	}
}

// TestTableConcurrent inserts, reads and deletes pairs from several
// goroutines (run it with -race): every pair gets its own slot and the
// table ends empty.
func TestTableConcurrent(t *testing.T) {
	_, tab := loadTable(t, 64)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				p := testPair(false)
				p.Client.Remote = netipPort(p.Client.Remote, uint16(1000+g*100+i))
				p.Backend.Local = netipPort(p.Backend.Local, uint16(1000+g*100+i))
				s, err := tab.Insert(p)
				if err != nil {
					errs <- err
					return
				}
				if _, err := tab.Status(s); err != nil {
					errs <- err
					return
				}
				if err := tab.Delete(s); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if tab.Len() != 0 || countEntries(t, tab) != 0 {
		t.Errorf("Len %d, %d entries left", tab.Len(), countEntries(t, tab))
	}
}
