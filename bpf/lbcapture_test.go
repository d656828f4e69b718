package bpf

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/google/gopacket/layers"
)

// capRecord is an LBCaptureRecord with its own copy of the data.
type capRecord struct {
	LBCaptureRecord
	data []byte
}

func capRead(t *testing.T, c *LBCapture) []capRecord {
	t.Helper()
	var out []capRecord
	if err := c.Read(time.Now().Add(50*time.Millisecond), func(r *LBCaptureRecord) error {
		out = append(out, capRecord{*r, bytes.Clone(r.Data)})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestLBCapture: while a capture runs the program forwards as before and
// copies each frame as received and as sent, with the backend it went to,
// the drop reason, or "answered"; passed frames are not copied; the
// filter's VIP, queue, direction and snaplen apply in the program; one
// capture at a time; once stopped nothing more is copied.
func TestLBCapture(t *testing.T) {
	lb := loadTestLB(t)
	run := func(f []byte) (uint32, []byte, uint16) {
		t.Helper()
		v, out, _, id := lbRun(t, lb, f)
		return v, out, id
	}
	c, err := lb.StartCapture(LBCaptureFilter{Queue: -1, RX: true, TX: true, Snaplen: 2048})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lb.StartCapture(LBCaptureFilter{Queue: -1, RX: true, Snaplen: 64}); !errors.Is(err, ErrCaptureBusy) {
		t.Errorf("second capture: %v, want ErrCaptureBusy", err)
	}
	start := time.Now()
	syn := tcpFrame(t, vipTCP, 45000, 80, "S", 0, false, 10)
	v, out, ipid := run(syn)
	want := lbModel(t, syn, -1, ipid)
	if v != xdpTX || !bytes.Equal(out, want.out) {
		t.Fatalf("forwarding changed while capturing: verdict %d", v)
	}
	empty := tcpFrame(t, vipEmpty, 45000, 80, "S", 0, false, 0)
	if v, _, _ := run(empty); v != xdpDrop {
		t.Fatalf("no_backend frame: verdict %d", v)
	}
	echo := icmp4(t, vipTCP)
	echoWant := lbModel(t, echo, -1, 0)
	if v, _, _ := run(echo); v != xdpTX {
		t.Fatalf("echo: verdict %d", v)
	}
	run(frame4(t, nonVIP, layers.IPProtocolTCP, 80)) // passed: not captured
	recs := capRead(t, c)
	if len(recs) != 5 {
		t.Fatalf("%d records, want 5 (SYN rx, tx; no_backend rx; echo rx, tx): %+v", len(recs), recs)
	}
	id := LBBackendID(want.backend, lbTestGen)
	for i, w := range []struct {
		tx      bool
		verdict LBCaptureVerdict
		data    []byte
	}{
		{false, LBCaptureForwarded, syn},
		{true, LBCaptureForwarded, want.out},
		{false, LBCaptureDropped, empty},
		{false, LBCaptureAnswered, echo},
		{true, LBCaptureAnswered, echoWant.out},
	} {
		r := recs[i]
		if r.TX != w.tx || r.Verdict != w.verdict || !bytes.Equal(r.data, w.data) || r.OrigLen != uint32(len(w.data)) || r.Queue != 0 {
			t.Errorf("record %d: tx %v verdict %d, %d of %d bytes, queue %d; want tx %v verdict %d, %d bytes", i, r.TX, r.Verdict, len(r.data), r.OrigLen, r.Queue, w.tx, w.verdict, len(w.data))
		}
		if d := time.Unix(0, r.Time).Sub(start); d < -time.Second || d > time.Minute {
			t.Errorf("record %d: time %v, %v from the start", i, time.Unix(0, r.Time), d)
		}
	}
	if recs[0].Backend != id || recs[1].Backend != id {
		t.Errorf("forwarded records name backend %#x, %#x, want %#x", recs[0].Backend, recs[1].Backend, id)
	}
	if recs[2].Drop != "no_backend" {
		t.Errorf("dropped record's reason %q, want no_backend", recs[2].Drop)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	run(syn)
	if c, err = lb.StartCapture(LBCaptureFilter{Queue: -1, RX: true, Snaplen: 64}); err != nil {
		t.Fatal(err)
	}
	if recs = capRead(t, c); len(recs) != 0 {
		t.Errorf("a frame after the capture closed was captured: %+v", recs)
	}
	c.Close()

	// The filter: one VIP, received frames only, 64 bytes of each.
	c, err = lb.StartCapture(LBCaptureFilter{Queue: -1, RX: true, Snaplen: 64, VIP: netip.AddrPortFrom(vipTCP, 80), VIPProto: 6})
	if err != nil {
		t.Fatal(err)
	}
	run(syn)
	run(empty)
	run(tcpFrame(t, vip6, 45000, 443, "S", 0, false, 0))
	recs = capRead(t, c)
	if len(recs) != 1 || recs[0].TX || !bytes.Equal(recs[0].data, syn[:64]) || recs[0].OrigLen != uint32(len(syn)) {
		t.Errorf("--vip %v:80/tcp --direction rx --snaplen 64: %d records %+v", vipTCP, len(recs), recs)
	}
	c.Close()

	// Another queue: nothing (BPF_PROG_TEST_RUN runs on queue 0).
	c, err = lb.StartCapture(LBCaptureFilter{Queue: 1, RX: true, TX: true, Snaplen: 2048})
	if err != nil {
		t.Fatal(err)
	}
	run(syn)
	if recs = capRead(t, c); len(recs) != 0 {
		t.Errorf("--queue 1 captured %d frames of queue 0", len(recs))
	}
	c.Close()
}

// TestLBCaptureFull: a ring nobody reads fills; the program then counts
// the frames it could not copy, per queue, and forwards (here: drops, the
// frame's own verdict) every one as before.
func TestLBCaptureFull(t *testing.T) {
	lb := loadTestLB(t)
	c, err := lb.StartCapture(LBCaptureFilter{Queue: -1, RX: true, TX: true, Snaplen: 2048})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	frame := tcpFrame(t, vipEmpty, 45000, 80, "S", 0, false, 1400)
	const n = 4000 // 4 MiB hold about 2700 records of this frame
	before, err := lb.Counters()
	if err != nil {
		t.Fatal(err)
	}
	opts := ebpf.RunOptions{Data: frame, Repeat: n}
	if v, err := lb.Program().Run(&opts); err != nil || v != xdpDrop {
		t.Fatalf("run: %d, %v", v, err)
	}
	after, err := lb.Counters()
	if err != nil {
		t.Fatal(err)
	}
	var got int
	if err := c.Read(time.Now().Add(50*time.Millisecond), func(*LBCaptureRecord) error { got++; return nil }); err != nil {
		t.Fatal(err)
	}
	lost, err := c.Lost()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d frames: %d captured, lost %v", n, got, lost)
	if d := after.Drops["no_backend"] - before.Drops["no_backend"]; d != n {
		t.Errorf("%d frames dropped as no_backend, want %d", d, n)
	}
	if lost[0] == 0 || uint64(got)+lost[0] != n {
		t.Errorf("captured %d + lost %d, want %d with some lost", got, lost[0], n)
	}
}

// FuzzLBCaptureDecode: a ring record of any bytes decodes or fails with an
// error, never a panic, and a decoded record keeps no more than it has.
func FuzzLBCaptureDecode(f *testing.F) {
	rec := func(capLen uint16, verdict, drop uint8, data int) []byte {
		var b []byte
		b = binary.NativeEndian.AppendUint64(b, 1)
		b = binary.NativeEndian.AppendUint32(b, uint32(data))
		b = binary.NativeEndian.AppendUint32(b, 7)
		b = binary.NativeEndian.AppendUint16(b, 0)
		b = binary.NativeEndian.AppendUint16(b, 1)
		b = binary.NativeEndian.AppendUint16(b, capLen)
		b = append(b, 1, verdict, drop, 0, 0, 0, 0, 0, 0, 0)
		return append(b, make([]byte, data)...)
	}
	f.Add(rec(60, 0, 0, 60))
	f.Add(rec(0, 1, byte(lbFirstDrop+11), 0))
	f.Add(rec(100, 1, 255, 10))
	f.Add([]byte{1, 2, 3})
	c := &LBCapture{}
	f.Fuzz(func(t *testing.T, b []byte) {
		var r LBCaptureRecord
		if err := c.decode(b, &r); err != nil {
			return
		}
		if len(r.Data) > LBCaptureMax || len(r.Data) > len(b)-lbCapHdrSize {
			t.Fatalf("record of %d bytes keeps %d", len(b), len(r.Data))
		}
		if r.Verdict == LBCaptureDropped && r.Drop != "" && !slices.Contains(lbDropNames[:], r.Drop) {
			t.Fatalf("drop %q", r.Drop)
		}
	})
}
