package splice

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/xlbproject/xlb/bpf"
)

// fuzzPairs are the pairs FuzzRewrite's inputs pick from: both families,
// SACK on either side or none, timestamps or none, assorted window scales.
func fuzzPair(i int) Pair {
	p := testPair(i&1 == 1)
	p.Client.SACK, p.Backend.SACK = i&2 != 0, i&4 != 0
	p.Client.Timestamps, p.Backend.Timestamps = i&8 != 0, i&8 != 0
	p.Client.SndWscale, p.Backend.RcvWscale = uint8(i%15), uint8(i*5%15)
	p.Backend.SndWscale, p.Client.RcvWscale = uint8(i*7%15), uint8(i*11%15)
	p.Client.Remote = netipPort(p.Client.Remote, 40000+uint16(i))
	p.Backend.Local = netipPort(p.Backend.Local, 50000+uint16(i))
	return p
}

const fuzzPairs = 16

// FuzzRewrite runs frames with arbitrary TCP options, flags, sequence
// numbers, windows and TTLs, whole or cut short, through the steer program
// and the Go model: they must agree on the verdict, every byte and the
// pair state; a rewritten frame whose checksum was valid stays valid.
func FuzzRewrite(f *testing.F) {
	f.Add(uint8(8), []byte{1, 1, 8, 10, 0, 0, 1, 0, 0, 0, 0, 0}, uint32(5000), uint32(1_000_000), uint8(0x10), uint16(1000), uint8(64), uint8(0))
	f.Add(uint8(0x1f), []byte{1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2, 1}, uint32(77), uint32(0xffff_fff0), uint8(0x11), uint16(7), uint8(2), uint8(0))
	f.Add(uint8(0x0e), []byte{5, 34, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 1, 1},
		uint32(1), uint32(2), uint8(0x14), uint16(65535), uint8(1), uint8(0))
	f.Add(uint8(0x09), []byte{8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0}, uint32(0), uint32(0), uint8(0x04), uint16(0), uint8(64), uint8(9))
	s, tab := loadTable(f, fuzzPairs)
	var entries [fuzzPairs][2]Entry
	for i := range fuzzPairs {
		slot, err := tab.Insert(fuzzPair(i))
		if err != nil {
			f.Fatal(err)
		}
		if entries[i], err = Plan(fuzzPair(i), slot); err != nil {
			f.Fatal(err)
		}
	}
	f.Fuzz(func(t *testing.T, cfg uint8, opts []byte, seq, ack uint32, flags uint8, window uint16, ttl uint8, cut uint8) {
		i, dir := int(cfg&15), Direction(cfg>>4&1)
		p := fuzzPair(i)
		var sg seg
		if dir == ClientToBackend {
			sg = cb(p.Client.Remote.Addr().Is6(), seq, ack)
			sg.src, sg.dst = p.Client.Remote, p.Client.Local
		} else {
			sg = bc(p.Backend.Remote.Addr().Is6(), seq, ack)
			sg.src, sg.dst = p.Backend.Remote, p.Backend.Local
		}
		opts = opts[:min(len(opts), 40)&^3]
		sg.raw, sg.window, sg.ttl, sg.payload = opts, window, max(ttl, 1), []byte("xlb")
		fr := sg.frame(t)
		_, _, l4, _ := headers(fr)
		fr[l4+13] = flags
		fixTCPChecksum(fr)
		if n := len(fr) - int(cut); int(cut) > 0 && n >= 14 {
			fr = fr[:n]
		}

		e := &entries[i][dir].Dir
		var model bpf.SplicePair
		if err := tab.maps.Pairs.Lookup(e.Pair, &model); err != nil {
			t.Fatal(err)
		}
		want := append([]byte(nil), fr...)
		verdict := Rewrite(want, e, &model)
		got, out := run(t, s, fr)
		if wantAct := xdpAction(verdict, e); got != wantAct {
			t.Fatalf("action %d, want %d (model: %v)", got, wantAct, verdict)
		}
		if !bytes.Equal(out, want) {
			t.Fatalf("C and Go differ\n   C % x\n  Go % x", out, want)
		}
		var c bpf.SplicePair
		if err := tab.maps.Pairs.Lookup(e.Pair, &c); err != nil {
			t.Fatal(err)
		}
		if c.State != model.State || c.LastSeq != model.LastSeq || c.LastAck != model.LastAck || c.TSDelta != model.TSDelta {
			t.Fatalf("pair state C %+v, Go %+v", c, model)
		}
		if verdict == Rewritten && cut == 0 && !tcpChecksumOK(out) {
			t.Fatalf("checksum broken: % x", out)
		}
	})
}

// tcpChecksumOK sums the pseudo-header and the TCP segment (up to the IP
// length) of a frame headers() accepts, checksum included.
func tcpChecksumOK(f []byte) bool {
	g := append([]byte(nil), f...)
	_, _, l4, _ := headers(g)
	old := binary.BigEndian.Uint16(g[l4+16:])
	fixTCPChecksum(g)
	// 0 and 0xffff are the same ones'-complement number.
	n := binary.BigEndian.Uint16(g[l4+16:])
	return old == n || old^n == 0xffff
}
