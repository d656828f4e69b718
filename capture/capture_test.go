package capture

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/internal/frametest"
)

func TestParseRequest(t *testing.T) {
	q := 3
	for _, c := range []struct {
		name, in string
		want     Filter
		err      string
	}{
		{name: "empty", in: ``, want: Filter{Queue: -1, Direction: Both, Snaplen: DefaultSnaplen}},
		{name: "all", in: `{"vip":"198.18.100.1:80/tcp","backend":"198.18.0.11","queue":3,"direction":"tx","snaplen":128,"count":5,"duration":"2s"}`,
			want: Filter{VIP: netip.MustParseAddrPort("198.18.100.1:80"), VIPProto: 6, Backend: netip.MustParseAddr("198.18.0.11"), Queue: q, Direction: TX, Snaplen: 128, Count: 5, Duration: 2e9}},
		{name: "v6 udp any port", in: `{"vip":"[2001:db8::1]:0/udp"}`,
			want: Filter{VIP: netip.MustParseAddrPort("[2001:db8::1]:0"), VIPProto: 17, Queue: -1, Direction: Both, Snaplen: DefaultSnaplen}},
		{name: "mapped backend", in: `{"backend":"::ffff:198.18.0.11"}`,
			want: Filter{Backend: netip.MustParseAddr("198.18.0.11"), Queue: -1, Direction: Both, Snaplen: DefaultSnaplen}},
		{name: "no proto", in: `{"vip":"198.18.100.1:80"}`, err: "ADDR:PORT/PROTO"},
		{name: "bad proto", in: `{"vip":"198.18.100.1:80/sctp"}`, err: "want tcp or udp"},
		{name: "bad backend", in: `{"backend":"nope"}`, err: "backend"},
		{name: "queue", in: `{"queue":-2}`, err: "out of range"},
		{name: "direction", in: `{"direction":"up"}`, err: "direction"},
		{name: "snaplen", in: `{"snaplen":10}`, err: "snaplen"},
		{name: "duration", in: `{"duration":"-1s"}`, err: "positive"},
		{name: "unknown field", in: `{"vips":"x"}`, err: "unknown field"},
		{name: "not json", in: `{`, err: "capture request"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := ParseRequest([]byte(c.in))
			switch {
			case c.err != "":
				if err == nil || !bytes.Contains([]byte(err.Error()), []byte(c.err)) {
					t.Fatalf("error %v, want one with %q", err, c.err)
				}
			case err != nil:
				t.Fatal(err)
			case got != c.want:
				t.Fatalf("got %+v\nwant %+v", got, c.want)
			}
		})
	}
}

// frame4 is a TCP frame from 198.18.0.2 to dst:dport.
func frame4(t testing.TB, dst string, dport uint16, udp bool) []byte {
	t.Helper()
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, EthernetType: layers.EthernetTypeIPv4}
	ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: net.IPv4(198, 18, 0, 2), DstIP: net.ParseIP(dst)}
	var l4 gopacket.SerializableLayer
	if udp {
		ip.Protocol = layers.IPProtocolUDP
		u := &layers.UDP{SrcPort: 9, DstPort: layers.UDPPort(dport)}
		_ = u.SetNetworkLayerForChecksum(ip)
		l4 = u
	} else {
		ip.Protocol = layers.IPProtocolTCP
		tc := &layers.TCP{SrcPort: 9, DstPort: layers.TCPPort(dport), SYN: true, Window: 512}
		_ = tc.SetNetworkLayerForChecksum(ip)
		l4 = tc
	}
	return frametest.Serialize(t, eth, ip, l4)
}

func TestFilterMatch(t *testing.T) {
	tcp80 := frame4(t, "198.18.100.1", 80, false)
	tcp81 := frame4(t, "198.18.100.1", 81, false)
	udp80 := frame4(t, "198.18.100.1", 80, true)
	other := frame4(t, "198.18.100.2", 80, false)
	be := netip.MustParseAddr("198.18.0.11")
	for _, c := range []struct {
		vip     string
		frame   []byte
		backend netip.Addr
		want    bool
	}{
		{"", tcp80, netip.Addr{}, true},
		{"", []byte{1, 2, 3}, netip.Addr{}, true}, // no VIP: even a runt matches
		{"198.18.100.1:80/tcp", tcp80, be, true},
		{"198.18.100.1:80/tcp", tcp81, be, false},
		{"198.18.100.1:0/tcp", tcp81, be, true},
		{"198.18.100.1:80/tcp", udp80, be, false},
		{"198.18.100.1:80/udp", udp80, be, true},
		{"198.18.100.1:80/tcp", other, be, false},
		{"[2001:db8::1]:80/tcp", tcp80, be, false},
		{"198.18.100.1:80/tcp", []byte{1, 2, 3}, be, false},
	} {
		r := Request{VIP: c.vip}
		f, err := r.Filter()
		if err != nil {
			t.Fatal(err)
		}
		if got := f.MatchRX(c.frame); got != c.want {
			t.Errorf("vip %q frame to %d bytes: MatchRX %t, want %t", c.vip, len(c.frame), got, c.want)
		}
	}
	f, _ := Request{Backend: "198.18.0.11"}.Filter()
	if !f.MatchBackend(be) || f.MatchBackend(netip.MustParseAddr("198.18.0.12")) || f.MatchBackend(netip.Addr{}) {
		t.Error("backend filter")
	}
	if q := 2; !(&Filter{Queue: -1}).Wants(5) || (&Filter{Queue: q}).Wants(5) || !(&Filter{Queue: q}).Wants(2) {
		t.Error("queue filter")
	}
}

func newRing(t testing.TB, slots int) *Ring {
	t.Helper()
	f, _ := Request{Snaplen: 64}.Filter()
	r, err := NewRing(f, slots)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// put is the worker's side: reserve, copy, commit (or lose).
func put(r *Ring, seq uint64) bool {
	m, buf, ok := r.Reserve()
	if !ok {
		r.Lose()
		return false
	}
	binary.BigEndian.PutUint64(buf, seq)
	*m = Meta{Time: int64(seq), OrigLen: 100, CapLen: 8, Dir: RX}
	r.Commit()
	return true
}

func TestRingFullLoses(t *testing.T) {
	r := newRing(t, 4)
	for i := range 6 {
		if got, want := put(r, uint64(i)), i < 4; got != want {
			t.Fatalf("put %d: %t, want %t", i, got, want)
		}
	}
	if r.Lost() != 2 {
		t.Fatalf("lost %d, want 2", r.Lost())
	}
	// A reserved slot that is not committed is not the consumer's.
	var seen []uint64
	n, err := r.Drain(func(m *Meta, data []byte) error {
		seen = append(seen, binary.BigEndian.Uint64(data))
		return nil
	})
	if err != nil || n != 4 || len(seen) != 4 || seen[3] != 3 {
		t.Fatalf("drained %d %v: %v", n, seen, err)
	}
	if _, _, ok := r.Reserve(); !ok {
		t.Fatal("no room after a drain")
	}
	// An error from fn keeps the slot.
	put(r, 9)
	boom := errors.New("boom")
	if n, err := r.Drain(func(*Meta, []byte) error { return boom }); n != 0 || err != boom {
		t.Fatalf("drain with an error: %d %v", n, err)
	}
	if n, _ := r.Drain(func(*Meta, []byte) error { return nil }); n != 1 {
		t.Fatalf("slot not kept after an error: %d", n)
	}
	if _, err := NewRing(r.Filter, 3); err == nil {
		t.Error("ring of 3 slots accepted")
	}
}

// TestRingSPSC: a producer and a consumer on two goroutines; every frame is
// either received once, in order, or counted lost (run with -race).
func TestRingSPSC(t *testing.T) {
	r := newRing(t, 16)
	const frames = 100000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range uint64(frames) {
			put(r, i)
		}
	}()
	var got uint64
	last := int64(-1)
	done := false
	for !done {
		_, _ = r.Drain(func(m *Meta, data []byte) error {
			seq := binary.BigEndian.Uint64(data)
			if int64(seq) <= last || m.Time != int64(seq) {
				t.Fatalf("frame %d after %d (meta %d)", seq, last, m.Time)
			}
			last = int64(seq)
			got++
			return nil
		})
		done = got+r.Lost() == frames
	}
	wg.Wait()
	t.Logf("%d received, %d lost", got, r.Lost())
}

func TestProducerAllocs(t *testing.T) {
	r := newRing(t, 16)
	f, _ := Request{VIP: "198.18.100.1:80/tcp", Backend: "198.18.0.11"}.Filter()
	fr := frame4(t, "198.18.100.1", 80, false)
	v := Verdict{Kind: Forwarded, V4: true, Backend: [16]byte{198, 18, 0, 11}}
	if n := testing.AllocsPerRun(100, func() {
		if f.MatchRX(fr) && f.MatchBackend(v.BackendAddr()) {
			put(r, 1)
		}
		_, _ = r.Drain(func(*Meta, []byte) error { return nil })
	}); n != 0 {
		t.Errorf("%v allocations per captured frame", n)
	}
}

func TestRecordRoundTrip(t *testing.T) {
	m := Meta{Time: 1234567890123, OrigLen: 1514, Queue: 3, Dir: TX}
	data := []byte{1, 2, 3, 4}
	b := AppendFrame(nil, &m, "queue 3 tx: backend 198.18.0.11", data)
	b, err := AppendEnd(b, Summary{Captured: 1, Lost: map[int]uint64{3: 7}})
	if err != nil {
		t.Fatal(err)
	}
	r := NewReader(bytes.NewReader(b))
	rec, err := r.Next()
	if err != nil {
		t.Fatal(err)
	}
	if rec.End || rec.Time != m.Time || rec.OrigLen != 1514 || rec.Queue != 3 || rec.Dir != TX || rec.Comment != "queue 3 tx: backend 198.18.0.11" || !bytes.Equal(rec.Data, data) {
		t.Fatalf("frame record %+v", rec)
	}
	rec, err = r.Next()
	if err != nil || !rec.End || rec.Summary.Captured != 1 || rec.Summary.Lost[3] != 7 {
		t.Fatalf("end record %+v %v", rec, err)
	}
	if _, err := r.Next(); !errors.Is(err, ErrTruncated) {
		t.Fatalf("after the end: %v", err)
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"vip":"198.18.100.1:80/tcp","queue":0,"direction":"rx","snaplen":96,"count":3,"duration":"1s"}`,
		`{"backend":"2001:db8::2"}`, `{"vip":"[2001:db8::1]:0/17"}`, `{"queue":null}`, `[]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fl, err := ParseRequest(b)
		if err != nil {
			return
		}
		if fl.Snaplen < 64 || fl.Snaplen > MaxSnaplen || fl.Direction&^Both != 0 || fl.Direction == 0 || fl.Queue < -1 || fl.Duration < 0 {
			t.Fatalf("accepted %q as %+v", b, fl)
		}
		if fl.VIP.IsValid() && fl.VIPProto != 6 && fl.VIPProto != 17 {
			t.Fatalf("accepted %q with protocol %d", b, fl.VIPProto)
		}
	})
}

func FuzzDecodeRecord(f *testing.F) {
	m := Meta{Time: 1, OrigLen: 60, Queue: 1, Dir: RX}
	frame := AppendFrame(nil, &m, "queue 1 rx: dropped: no_vip", make([]byte, 60))
	end, _ := AppendEnd(nil, Summary{Captured: 2, Lost: map[int]uint64{0: 1}})
	f.Add(frame[4:])
	f.Add(end[4:])
	f.Add([]byte{1})
	f.Fuzz(func(t *testing.T, b []byte) {
		rec, err := DecodeRecord(b)
		if err != nil || rec.End {
			return
		}
		if len(rec.Data) > int(rec.OrigLen) || len(rec.Comment) > MaxComment || (rec.Dir != RX && rec.Dir != TX) {
			t.Fatalf("accepted %x as %+v", b, rec)
		}
		// What decodes encodes back to the same bytes.
		m := Meta{Time: rec.Time, OrigLen: rec.OrigLen, Queue: rec.Queue, Dir: rec.Dir}
		if again := AppendFrame(nil, &m, rec.Comment, rec.Data); !bytes.Equal(again[4:], b) {
			t.Fatalf("re-encoded %x as %x", b, again[4:])
		}
	})
}
