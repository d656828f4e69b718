package splice

import (
	"bytes"
	"net/netip"
	"testing"

	"github.com/google/gopacket/layers"

	"github.com/xlbproject/xlb/bpf"
)

// step is one frame of a scenario: built from s, arriving in direction
// dir; want is the model's verdict, check what the rewritten frame must
// hold beyond the generic checks (rewriteChecks).
type step struct {
	name  string
	dir   Direction
	s     seg
	patch func([]byte) // applied to the built frame (malformed headers)
	want  Verdict
	check func(t *testing.T, d decoded)
}

type scenario struct {
	name  string
	v6    bool
	edit  func(*Pair)
	steps []step
}

// cb and bc are segments of the client and of the backend connection as
// their peers send them.
func cb(v6 bool, seq, ack uint32, opts ...layers.TCPOption) seg {
	s := seg{src: client4, dst: vip4, seq: seq, ack: ack, ackf: true, window: 1000, opts: opts}
	if v6 {
		s.src, s.dst = client6, vip6
	}
	return s
}

func bc(v6 bool, seq, ack uint32, opts ...layers.TCPOption) seg {
	s := seg{src: backend4, dst: lb4, seq: seq, ack: ack, ackf: true, window: 1000, opts: opts}
	if v6 {
		s.src, s.dst = backend6, lb6
	}
	return s
}

func with(s seg, f func(*seg)) seg { f(&s); return s }

func wantTS(val, ecr uint32) func(t *testing.T, d decoded) {
	return func(t *testing.T, d decoded) {
		t.Helper()
		if len(d.ts) != 2 || d.ts[0] != val || d.ts[1] != ecr {
			t.Errorf("timestamps %v, want [%d %d]", d.ts, val, ecr)
		}
	}
}

func wantSACK(edges ...uint32) func(t *testing.T, d decoded) {
	return func(t *testing.T, d decoded) {
		t.Helper()
		if len(d.sack) != len(edges) {
			t.Fatalf("SACK edges %v, want %v", d.sack, edges)
		}
		for i := range edges {
			if d.sack[i] != edges[i] {
				t.Errorf("SACK edges %#x, want %#x", d.sack, edges)
			}
		}
	}
}

func wantWindow(w uint16) func(t *testing.T, d decoded) {
	return func(t *testing.T, d decoded) {
		t.Helper()
		if d.tcp.Window != w {
			t.Errorf("window %d, want %d", d.tcp.Window, w)
		}
	}
}

func setDataOffset(f []byte, words byte) {
	_, _, l4, _ := headers(f)
	f[l4+12] = words << 4
}

func u32(x int) uint32 { return uint32(x) }

func payload(n int) []byte { return bytes.Repeat([]byte{'x'}, n) }

// The pair (testPair): SC = 1e6, RC = 5000, SB = 0xfffffff0, RB = 77; the
// timestamp clocks TC = 100000, TB = 900.
func scenarios() []scenario {
	sb := uint32(0xffff_fff0)
	var out []scenario
	for _, v6 := range []bool{false, true} {
		fam := "ipv4 "
		if v6 {
			fam = "ipv6 "
		}
		out = append(out, scenario{name: fam + "data both ways, timestamps, sequence wrap", v6: v6, steps: []step{
			{name: "client's first segment", dir: ClientToBackend,
				s:    with(cb(v6, 5_000, 1_000_000, nop, nop, ts(50_000, 100_000)), func(s *seg) { s.payload = payload(100) }),
				want: Rewritten, check: wantTS(901, 0)},
			{name: "backend's answer", dir: BackendToClient,
				s:    with(bc(v6, 77, sb+100, nop, nop, ts(2_000, 901)), func(s *seg) { s.payload = payload(10) }),
				want: Rewritten, check: wantTS(100_001, 50_000)},
			{name: "client's next, past the wrap", dir: ClientToBackend,
				s:    with(cb(v6, 5_100, 1_000_010, nop, nop, ts(50_010, 100_001)), func(s *seg) { s.payload = payload(100) }),
				want: Rewritten, check: wantTS(911, 2_000)},
			{name: "backend echoing a value from before the splice", dir: BackendToClient,
				s: bc(v6, 87, sb+200, nop, nop, ts(2_001, 850)), want: Rewritten, check: wantTS(100_002, 0)},
			{name: "client retransmitting from before the splice", dir: ClientToBackend,
				s: cb(v6, 4_000, 999_000, nop, nop, ts(50_011, 99_000)), want: Rewritten, check: wantTS(912, 0)},
		}})
		out = append(out, scenario{name: fam + "FIN both ways", v6: v6, edit: func(p *Pair) {
			p.Client.Timestamps, p.Backend.Timestamps = false, false
		}, steps: []step{
			{name: "client FIN", dir: ClientToBackend, s: with(cb(v6, 5_000, 1_000_000), func(s *seg) { s.fin = true }), want: Rewritten},
			{name: "backend FIN", dir: BackendToClient, s: with(bc(v6, 77, sb+1), func(s *seg) { s.fin = true }), want: Rewritten},
			{name: "client's last ACK", dir: ClientToBackend, s: cb(v6, 5_001, 1_000_001), want: Rewritten},
		}})
		out = append(out, scenario{name: fam + "RST without ACK", v6: v6, steps: []step{
			{name: "backend RST", dir: BackendToClient, s: with(bc(v6, 77, 12345), func(s *seg) { s.ackf, s.rst = false, true }),
				want: Rewritten, check: func(t *testing.T, d decoded) {
					if d.tcp.Ack != 12345 {
						t.Errorf("the ack of a segment without ACK became %d", d.tcp.Ack)
					}
				}},
		}})
		out = append(out, scenario{name: fam + "TTL 1", v6: v6, steps: []step{
			{name: "expired", dir: ClientToBackend, s: with(cb(v6, 5_000, 1_000_000), func(s *seg) { s.ttl = 1 }), want: Expired},
			{name: "TTL 2", dir: ClientToBackend, s: with(cb(v6, 5_000, 1_000_000), func(s *seg) { s.ttl = 2 }), want: Rewritten},
		}})
	}
	out = append(out,
		scenario{name: "differing window scales", edit: func(p *Pair) {
			p.Client.SndWscale, p.Backend.RcvWscale = 9, 2
			p.Backend.SndWscale, p.Client.RcvWscale = 2, 9
		}, steps: []step{
			{name: "scaled up", dir: ClientToBackend, s: with(cb(false, 5_000, 1_000_000), func(s *seg) { s.window = 100 }),
				want: Rewritten, check: wantWindow(12_800)},
			{name: "clamped", dir: ClientToBackend, s: cb(false, 5_000, 1_000_000), want: Rewritten, check: wantWindow(65_535)},
			{name: "scaled down, rounded down", dir: BackendToClient, s: bc(false, 77, sb), want: Rewritten, check: wantWindow(7)},
			{name: "zero window", dir: BackendToClient, s: with(bc(false, 77, sb), func(s *seg) { s.window = 0 }), want: Rewritten, check: wantWindow(0)},
		}},
		scenario{name: "SACK translated", steps: []step{
			{name: "two blocks after timestamps", dir: BackendToClient,
				s:    bc(false, 77, sb, nop, nop, ts(2_000, 0), nop, nop, sack(sb+200, sb+300, 0x10, 0x20)),
				want: Rewritten, check: wantSACK(5_200, 5_300, 5_000+0x10+0x10, 5_000+0x20+0x10)},
			{name: "four blocks, D-SACK first", dir: ClientToBackend,
				s:    cb(false, 5_000, 1_000_000, nop, nop, sack(999_000, 999_100, 1_000_100, 1_000_200, 1_000_300, 1_000_400, 1_000_500, 1_000_600)),
				want: Rewritten, check: wantSACK(u32(77-1_000), u32(77-900), 177, 277, 377, 477, 577, 677)},
			{name: "odd offsets", dir: BackendToClient,
				s:    bc(false, 77, sb, nop, sack(sb+200, sb+300), nop, ts(3_000, 0), nop, nop, nop),
				want: Rewritten, check: func(t *testing.T, d decoded) { wantSACK(5_200, 5_300)(t, d); wantTS(101_001, 0)(t, d) }},
		}},
		scenario{name: "SACK stripped toward a peer without it", edit: func(p *Pair) { p.Client.SACK = false }, steps: []step{
			{name: "blocks become NOPs", dir: BackendToClient, s: bc(false, 77, sb, nop, nop, sack(sb+200, sb+300)),
				want: Rewritten, check: func(t *testing.T, d decoded) {
					if d.sack != nil || !bytes.Equal(d.tcp.Contents[20:], bytes.Repeat([]byte{1}, 12)) {
						t.Errorf("options % x, want NOPs", d.tcp.Contents[20:])
					}
				}},
			{name: "translated toward the backend", dir: ClientToBackend, s: cb(false, 5_000, 1_000_000, nop, nop, sack(1_000_100, 1_000_200)),
				want: Rewritten, check: wantSACK(177, 277)},
		}},
		scenario{name: "malformed options", steps: []step{
			{name: "zero length option first", dir: ClientToBackend,
				s: with(cb(false, 5_000, 1_000_000), func(s *seg) { s.raw = []byte{30, 0, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2} }), want: Rewritten,
				check: func(t *testing.T, d decoded) {
					if !bytes.Equal(d.tcp.Contents[20:], []byte{30, 0, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2}) {
						t.Errorf("options changed: % x", d.tcp.Contents[20:])
					}
				}},
			{name: "length past the header", dir: ClientToBackend,
				s: with(cb(false, 5_000, 1_000_000), func(s *seg) { s.raw = []byte{1, 1, 5, 30, 0, 0, 0, 1, 0, 0, 0, 2} }), want: Rewritten},
			{name: "SACK of 11 bytes, timestamps of 9", dir: ClientToBackend,
				s: with(cb(false, 5_000, 1_000_000), func(s *seg) {
					s.raw = []byte{5, 11, 0, 0, 0, 1, 0, 0, 0, 2, 9, 8, 9, 0, 0, 0, 1, 0, 0, 0, 2, 1, 1, 1}
				}), want: Rewritten},
			{name: "timestamps after EOL", dir: ClientToBackend,
				s:    with(cb(false, 5_000, 1_000_000), func(s *seg) { s.raw = []byte{0, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2} }),
				want: Rewritten},
			{name: "option kind as the last byte", dir: ClientToBackend,
				s:    with(cb(false, 5_000, 1_000_000), func(s *seg) { s.raw = []byte{1, 1, 1, 8} }),
				want: Rewritten},
			{name: "data offset past the frame", dir: ClientToBackend, s: cb(false, 5_000, 1_000_000),
				patch: func(f []byte) { setDataOffset(f, 15) }, want: Malformed},
			{name: "data offset 4", dir: ClientToBackend, s: cb(false, 5_000, 1_000_000),
				patch: func(f []byte) { setDataOffset(f, 4) }, want: Malformed},
		}},
		scenario{name: "headers around", steps: []step{
			{name: "802.1Q tag", dir: ClientToBackend, s: with(cb(false, 5_000, 1_000_000, nop, nop, ts(7, 0)), func(s *seg) { s.vlan = true }),
				want: Rewritten},
			{name: "IPv4 options", dir: BackendToClient, s: with(bc(false, 77, sb, nop, nop, ts(7, 901)), func(s *seg) { s.ipv4HeaderOpt = true }),
				want: Rewritten},
		}},
	)
	return out
}

// rewriteChecks are what every rewritten frame must hold: valid checksums
// (decode), the other connection's addresses, ports and MACs, TTL - 1,
// the translated seq and ack.
func rewriteChecks(t *testing.T, in seg, e Entry, d decoded) {
	t.Helper()
	v := e.Dir
	if [6]byte(d.eth.DstMAC) != v.Dmac || [6]byte(d.eth.SrcMAC) != v.Smac {
		t.Errorf("MACs %v -> %v", d.eth.SrcMAC, d.eth.DstMAC)
	}
	ttl := in.ttl
	if ttl == 0 {
		ttl = 64
	}
	if d.ip4 != nil {
		if netip.AddrFrom4([4]byte(d.ip4.SrcIP.To4())) != netip.AddrFrom4([4]byte(v.Saddr[:4])) ||
			netip.AddrFrom4([4]byte(d.ip4.DstIP.To4())) != netip.AddrFrom4([4]byte(v.Daddr[:4])) || d.ip4.TTL != ttl-1 {
			t.Errorf("IPv4 %v -> %v TTL %d", d.ip4.SrcIP, d.ip4.DstIP, d.ip4.TTL)
		}
	} else if [16]byte(d.ip6.SrcIP) != v.Saddr || [16]byte(d.ip6.DstIP) != v.Daddr || d.ip6.HopLimit != ttl-1 {
		t.Errorf("IPv6 %v -> %v hop limit %d", d.ip6.SrcIP, d.ip6.DstIP, d.ip6.HopLimit)
	}
	if uint16(d.tcp.SrcPort) != uint16(v.Sport[0])<<8|uint16(v.Sport[1]) || uint16(d.tcp.DstPort) != uint16(v.Dport[0])<<8|uint16(v.Dport[1]) {
		t.Errorf("ports %d -> %d", d.tcp.SrcPort, d.tcp.DstPort)
	}
	if d.tcp.Seq != in.seq+v.SeqDelta {
		t.Errorf("seq %d -> %d, want %d", in.seq, d.tcp.Seq, in.seq+v.SeqDelta)
	}
	wantAck := in.ack
	if in.ackf {
		wantAck += v.AckDelta
	}
	if d.tcp.Ack != wantAck {
		t.Errorf("ack %d -> %d, want %d", in.ack, d.tcp.Ack, wantAck)
	}
	if d.tcp.FIN != in.fin || d.tcp.RST != in.rst || d.tcp.ACK != in.ackf {
		t.Errorf("flags changed")
	}
}

// buildPair is the scenario's pair and entries (slot s).
func buildPair(t *testing.T, sc scenario, s Slot) (Pair, [2]Entry) {
	t.Helper()
	p := testPair(sc.v6)
	if sc.edit != nil {
		sc.edit(&p)
	}
	e, err := Plan(p, s)
	if err != nil {
		t.Fatal(err)
	}
	return p, e
}

func (st step) frame(t *testing.T) []byte {
	f := st.s.frame(t)
	if st.patch != nil {
		st.patch(f)
	}
	return f
}

// TestRewrite runs the scenarios through the Go model and checks the
// rewritten frames with gopacket.
func TestRewrite(t *testing.T) {
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			_, e := buildPair(t, sc, 0)
			var pair bpf.SplicePair
			for _, st := range sc.steps {
				f := st.frame(t)
				orig := append([]byte(nil), f...)
				got := Rewrite(f, &e[st.dir].Dir, &pair)
				if got != st.want {
					t.Fatalf("%s: verdict %v, want %v", st.name, got, st.want)
				}
				if got != Rewritten {
					if !bytes.Equal(f, orig) {
						t.Errorf("%s: a frame that was not rewritten changed", st.name)
					}
					continue
				}
				d := decode(t, f)
				rewriteChecks(t, st.s, e[st.dir], d)
				if st.check != nil {
					st.check(t, d)
				}
			}
		})
	}
}

// TestRewriteState: FIN and RST set the pair's state bits, and each
// direction records the last seq and ack as they arrived.
func TestRewriteState(t *testing.T) {
	for _, sc := range scenarios() {
		_, e := buildPair(t, sc, 0)
		var pair bpf.SplicePair
		var want bpf.SplicePair
		for _, st := range sc.steps {
			if Rewrite(st.frame(t), &e[st.dir].Dir, &pair) != Rewritten {
				continue
			}
			want.LastSeq[st.dir], want.LastAck[st.dir] = st.s.seq, st.s.ack
			if st.s.fin {
				want.State |= 1 << st.dir
			}
			if st.s.rst {
				want.State |= bpf.SpliceRST
			}
		}
		if pair.State != want.State || pair.LastSeq != want.LastSeq || pair.LastAck != want.LastAck {
			t.Errorf("%s: state %#x seq %v ack %v, want %#x %v %v", sc.name, pair.State, pair.LastSeq, pair.LastAck,
				want.State, want.LastSeq, want.LastAck)
		}
	}
}
