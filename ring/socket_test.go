package ring

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// labConfig is small on purpose: a TX ring of 32 makes batches overflow it.
func labConfig() Config {
	return Config{
		FrameSize: 2048, FrameCount: 1024, Headroom: 64,
		FillSize: 512, CompletionSize: 512, RxSize: 512, TxSize: 32,
		ZeroCopy: ZeroCopyAuto, NeedWakeup: true, TxBudget: 32,
	}
}

// receiveTests receives until want test frames are in, recycling any other
// frame, and returns the descriptors of the test frames by sequence number.
func receiveTests(t *testing.T, s *Socket, want int, deadline time.Time) map[uint32]Desc {
	t.Helper()
	got := make(map[uint32]Desc)
	var batch [64]Desc
	for len(got) < want && time.Now().Before(deadline) {
		n := s.Receive(batch[:])
		if n == 0 {
			if _, err := s.Poll(100, false); err != nil {
				t.Fatal(err)
			}
			continue
		}
		for _, d := range batch[:n] {
			seq, ok := frameSeq(s.Frame(d))
			if !ok {
				s.Recycle(d.Addr)
				continue
			}
			if _, dup := got[seq]; dup {
				t.Fatalf("frame %d received twice", seq)
			}
			got[seq] = d
		}
		s.Refill()
	}
	return got
}

// transmitAll queues descs, reaping completions and kicking whenever the TX
// ring is full, and waits until every frame has completed. It reports how
// many Transmit calls queued fewer than asked.
func transmitAll(t *testing.T, s *Socket, descs []Desc, deadline time.Time) (short int) {
	t.Helper()
	for sent := 0; sent < len(descs) || s.TxPending() > 0; {
		if time.Now().After(deadline) {
			t.Fatalf("transmitted %d of %d, %d still pending", sent, len(descs), s.TxPending())
		}
		if sent < len(descs) {
			n := s.Transmit(descs[sent:])
			if n < len(descs)-sent {
				short++
			}
			sent += n
		}
		if err := s.Kick(); err != nil {
			t.Fatal(err)
		}
		if s.Complete() == 0 && s.TxPending() > 0 {
			if _, err := s.Poll(10, true); err != nil {
				t.Fatal(err)
			}
		}
	}
	return short
}

// TestSocketRoundTrip sends UDP frames from B, receives them on the socket,
// swaps the MACs in place (and, in the second round, prepends a header to
// every other frame in the headroom), transmits them back in one batch much
// larger than the TX ring, and checks that every frame arrives at B intact.
// B runs no XDP program: copy-mode AF_XDP transmits an skb through veth's
// normal xmit path, which the peer receives like any other.
func TestSocketRoundTrip(t *testing.T) {
	l := newVethLab(t)
	cfg := labConfig()
	s, err := l.openXSK(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if s.ZeroCopy() {
		t.Fatal("veth bound in zero-copy mode; it has no AF_XDP zero-copy support")
	}
	l.redirectAll(t, s)
	tx := l.packetSocket(t, 0)
	rx := l.packetSocket(t, unix.ETH_P_ALL)

	const n = 200
	for round := range uint32(2) { // the second round runs on recycled frames
		frames := make([][]byte, n)
		for i := range frames {
			frames[i] = l.udpFrame(t, round*n+uint32(i))
		}
		deadline := time.Now().Add(10 * time.Second)
		send(t, tx, frames)
		got := receiveTests(t, s, n, deadline)
		if len(got) != n {
			st, _ := s.Stats()
			t.Fatalf("round %d: received %d of %d frames (stats %+v)", round, len(got), n, st)
		}

		descs := make([]Desc, 0, n)
		for i := range uint32(n) {
			d := got[round*n+i]
			f := s.Frame(d)
			if !bytes.Equal(f, frames[i]) {
				t.Fatalf("frame %d received as\n%x\nwant\n%x", i, f, frames[i])
			}
			if d.Addr%uint64(cfg.FrameSize) != unix.XDP_PACKET_HEADROOM+uint64(cfg.Headroom) {
				t.Errorf("frame %d at offset %d in its frame, want %d", i, d.Addr%uint64(cfg.FrameSize), unix.XDP_PACKET_HEADROOM+cfg.Headroom)
			}
			var mac [6]byte
			copy(mac[:], f[0:6])
			copy(f[0:6], f[6:12])
			copy(f[6:12], mac[:])
			if round == 1 && i%2 == 1 {
				d = prepend(s, d, l.b.MAC[:], l.a.MAC[:])
			}
			descs = append(descs, d)
		}

		freeBefore := len(s.free)
		short := transmitAll(t, s, descs, deadline)
		if short == 0 {
			t.Errorf("round %d: a batch of %d never overflowed a TX ring of %d", round, n, cfg.TxSize)
		}
		if got := len(s.free) - freeBefore; got != n {
			t.Errorf("round %d: %d frames back on the free list after completion, want %d", round, got, n)
		}
		for _, a := range s.free {
			if a%uint64(cfg.FrameSize) != 0 {
				t.Fatalf("free list holds %#x, not a frame base", a)
			}
		}

		echoed := capture(t, rx, n, deadline)
		if len(echoed) != n {
			st, _ := s.Stats()
			t.Fatalf("round %d: %d of %d frames came back (stats %+v)", round, len(echoed), n, st)
		}
		for i := range uint32(n) {
			want := append([]byte(nil), frames[i]...)
			copy(want[0:6], l.b.MAC[:])
			copy(want[6:12], l.a.MAC[:])
			if round == 1 && i%2 == 1 {
				want = append(outerHeader(l.b.MAC[:], l.a.MAC[:]), want...)
			}
			if !bytes.Equal(echoed[round*n+i], want) {
				t.Fatalf("frame %d came back as\n%x\nwant\n%x", i, echoed[round*n+i], want)
			}
		}
		s.Refill()
	}

	st, err := s.Stats()
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	if st.TxInvalidDescs != 0 || st.RxInvalidDescs != 0 {
		t.Errorf("invalid descriptors: %+v", st)
	}
	t.Logf("stats %+v", st)
}

// outerHeader is the Ethernet header the round-trip test prepends: an
// encapsulation in miniature, with the local experimental EtherType.
func outerHeader(dst, src []byte) []byte {
	h := make([]byte, 14)
	copy(h[0:6], dst)
	copy(h[6:12], src)
	h[12], h[13] = 0x88, 0xb5
	return h
}

// prepend writes outerHeader into the headroom before d, as the datapath
// writes an IPIP header, and returns the grown descriptor.
func prepend(s *Socket, d Desc, dst, src []byte) Desc {
	h := outerHeader(dst, src)
	d.Addr -= uint64(len(h))
	d.Len += uint32(len(h))
	copy(s.Frame(d), h)
	return d
}

// allocSink keeps the compiler from dropping the work of the alloc test.
var allocSink int

// TestSocketZeroAllocs runs the worker's batch calls on a socket with
// traffic in its RX ring and checks that they allocate nothing.
func TestSocketZeroAllocs(t *testing.T) {
	l := newVethLab(t)
	s, err := l.openXSK(t, labConfig())
	if err != nil {
		t.Fatal(err)
	}
	l.redirectAll(t, s)
	tx := l.packetSocket(t, 0)
	const n = 256
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = l.udpFrame(t, uint32(i))
	}
	send(t, tx, frames)
	deadline := time.Now().Add(10 * time.Second)
	for atomic.LoadUint32(s.rx.producer)-s.rx.cachedCons < n && time.Now().Before(deadline) {
		if _, err := s.Poll(100, false); err != nil {
			t.Fatal(err)
		}
	}

	var batch, out [4]Desc
	received := 0
	allocs := testing.AllocsPerRun(50, func() {
		k := s.Receive(batch[:])
		received += k
		// Drop every other frame, send the rest back.
		m := 0
		for i, d := range batch[:k] {
			if i%2 == 1 {
				s.Recycle(d.Addr)
				continue
			}
			out[m] = d
			m++
		}
		sent := s.Transmit(out[:m])
		for _, d := range out[sent:m] {
			s.Recycle(d.Addr)
		}
		_ = s.Kick()
		allocSink += s.Complete() + s.Refill()
	})
	if allocs != 0 {
		t.Errorf("batch calls allocate %v times per run", allocs)
	}
	if received == 0 {
		t.Error("received nothing: the allocation check ran on empty rings")
	}
}

// TestSocketModes checks the zero-copy modes on veth, which has no AF_XDP
// zero-copy: "auto" falls back to copy mode, "on" fails at bind.
func TestSocketModes(t *testing.T) {
	l := newVethLab(t)
	for _, tc := range []struct {
		mode    string
		wantErr bool
	}{
		{ZeroCopyAuto, false},
		{ZeroCopyOff, false},
		{ZeroCopyOn, true},
	} {
		t.Run(tc.mode, func(t *testing.T) {
			cfg := labConfig()
			cfg.ZeroCopy = tc.mode
			cfg.BusyPoll, cfg.BusyPollBudget = true, 64
			s, err := l.openXSK(t, cfg)
			if tc.wantErr {
				if err == nil {
					t.Fatal("Open succeeded")
				}
				if want := "ring: bind " + l.a.Name + " queue 0: "; !strings.HasPrefix(err.Error(), want) {
					t.Errorf("error %q, want prefix %q", err, want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s.ZeroCopy() {
				t.Error("ZeroCopy() = true on veth")
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestSocketOpenFailureUndoes checks that a failed Open leaves no file
// descriptor or mapping behind, and names the interface.
func TestSocketOpenFailureUndoes(t *testing.T) {
	l := newVethLab(t)
	cfg := labConfig()
	cfg.ZeroCopy = ZeroCopyOff
	// Warm up: the first Open in the process may open runtime or library files.
	s, err := l.openXSK(t, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()

	fdsBefore, socketMapsBefore, vmBefore := countFDs(t), countSocketMaps(t), vmSize(t)
	bad := cfg
	bad.FrameCount = 8192 // 16 MiB a try: a leaked UMEM shows in VmSize
	for i := range 20 {
		bad.Ifindex = 1<<30 + i // no such interface: fails at bind, after everything else
		bad.Ifname = "nosuch"
		var err error
		if err = l.a.Host.Do(func() error { _, err := Open(bad); return err }); err == nil {
			t.Fatal("Open on a missing interface succeeded")
		}
		if !strings.HasPrefix(err.Error(), "ring: bind nosuch queue 0: ") || !errors.Is(err, unix.ENODEV) {
			t.Fatalf("error %q, want a bind error wrapping ENODEV", err)
		}
	}
	if fds := countFDs(t); fds != fdsBefore {
		t.Errorf("after 20 failed Opens: %d fds, was %d", fds, fdsBefore)
	}
	if maps := countSocketMaps(t); maps != socketMapsBefore {
		t.Errorf("after 20 failed Opens: %d ring mappings, was %d", maps, socketMapsBefore)
	}
	if grown := vmSize(t) - vmBefore; grown > 100<<20 {
		t.Errorf("after 20 failed Opens of 16 MiB UMEMs the address space grew by %d MiB", grown>>20)
	}
}

// TestSocketClose checks that Close is idempotent and that the system-call
// methods report ErrClosed afterwards.
func TestSocketClose(t *testing.T) {
	l := newVethLab(t)
	s, err := l.openXSK(t, labConfig())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := s.Stats(); !errors.Is(err, ErrClosed) {
		t.Errorf("Stats after Close: %v", err)
	}
	if _, err := s.Poll(0, false); !errors.Is(err, ErrClosed) {
		t.Errorf("Poll after Close: %v", err)
	}
	if err := s.Kick(); !errors.Is(err, ErrClosed) {
		t.Errorf("Kick after Close: %v", err)
	}
}

func countFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// countSocketMaps counts the mappings of sockets: the rings.
func countSocketMaps(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Count(b, []byte(" socket:["))
}

// vmSize is the process's address-space size in bytes.
func vmSize(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, ln := range strings.Split(string(b), "\n") {
		if f := strings.Fields(ln); len(f) == 3 && f[0] == "VmSize:" && f[2] == "kB" {
			kb, err := strconv.Atoi(f[1])
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmSize in /proc/self/status")
	return 0
}
