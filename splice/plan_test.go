package splice

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/xlbproject/xlb/bpf"
)

func TestPlan(t *testing.T) {
	tests := []struct {
		name   string
		edit   func(*Pair)
		check  func(t *testing.T, e [2]Entry)
		errIs  error
		anyErr bool
	}{
		{name: "deltas wrap around 2^32", check: func(t *testing.T, e [2]Entry) {
			cb, bc := e[ClientToBackend].Dir, e[BackendToClient].Dir
			// SB - RC = 0xfffffff0 - 5000, RB - SC = 77 - 1e6 (mod 2^32).
			if cb.SeqDelta != 0xffff_fff0-5_000 || cb.AckDelta != uint32(77-1_000_000+1<<32) {
				t.Errorf("client to backend deltas %#x %#x", cb.SeqDelta, cb.AckDelta)
			}
			// The mirror: SC - RB, RC - SB; each direction's seq delta is
			// minus the other's ack delta.
			if bc.SeqDelta != 1_000_000-77 || bc.AckDelta != uint32(5_000-0xffff_fff0+1<<32) ||
				bc.SeqDelta != -cb.AckDelta || bc.AckDelta != -cb.SeqDelta {
				t.Errorf("backend to client deltas %#x %#x", bc.SeqDelta, bc.AckDelta)
			}
			for seq := uint32(4_990); seq != 5_010; seq++ { // across the wrap of the backend's space
				if got := seq + cb.SeqDelta; got-0xffff_fff0 != seq-5_000 {
					t.Errorf("seq %d -> %#x", seq, got)
				}
			}
		}},
		{name: "keys and rewrites", check: func(t *testing.T, e [2]Entry) {
			k, v := e[ClientToBackend].Key, e[ClientToBackend].Dir
			if k.Family != 4 || netip.AddrFrom4([4]byte(k.Saddr[:4])) != client4.Addr() ||
				netip.AddrFrom4([4]byte(k.Daddr[:4])) != vip4.Addr() || k.Sport != [2]byte{0x9c, 0x40} || k.Dport != [2]byte{1, 0xbb} {
				t.Errorf("client to backend key %+v", k)
			}
			if netip.AddrFrom4([4]byte(v.Saddr[:4])) != lb4.Addr() || netip.AddrFrom4([4]byte(v.Daddr[:4])) != backend4.Addr() ||
				v.Sport != [2]byte{0xc3, 0x50} || v.Dport != [2]byte{1, 0xbb} || v.Dmac != macBackend || v.Smac != macLB ||
				v.Ifindex != 1 || v.Pair != 3 || v.Dir != 0 {
				t.Errorf("client to backend rewrite %+v", v)
			}
			k, v = e[BackendToClient].Key, e[BackendToClient].Dir
			if netip.AddrFrom4([4]byte(k.Saddr[:4])) != backend4.Addr() || netip.AddrFrom4([4]byte(v.Daddr[:4])) != client4.Addr() ||
				v.Ifindex != 2 || v.Dir != 1 || v.Pair != 3 || v.Dmac != macClient {
				t.Errorf("backend to client %+v %+v", k, v)
			}
		}},
		{name: "timestamps bases", check: func(t *testing.T, e [2]Entry) {
			cb, bc := e[ClientToBackend].Dir, e[BackendToClient].Dir
			if cb.TSBase != 901 || bc.TSBase != 100_001 || cb.TSecrBase != bc.TSBase || bc.TSecrBase != cb.TSBase {
				t.Errorf("bases %d/%d, %d/%d", cb.TSBase, cb.TSecrBase, bc.TSBase, bc.TSecrBase)
			}
			if cb.Flags != bpf.SpliceSACKXlate|bpf.SpliceTSXlate || bc.Flags != cb.Flags {
				t.Errorf("flags %#x %#x", cb.Flags, bc.Flags)
			}
		}},
		{name: "differing window scales", edit: func(p *Pair) {
			p.Client.SndWscale, p.Client.RcvWscale = 2, 9
			p.Backend.SndWscale, p.Backend.RcvWscale = 14, 0
		}, check: func(t *testing.T, e [2]Entry) {
			cb, bc := e[ClientToBackend].Dir, e[BackendToClient].Dir
			if cb.WscaleIn != 2 || cb.WscaleOut != 0 || bc.WscaleIn != 14 || bc.WscaleOut != 9 {
				t.Errorf("scales %d>>%d, %d>>%d", cb.WscaleIn, cb.WscaleOut, bc.WscaleIn, bc.WscaleOut)
			}
		}},
		{name: "SACK on one side only", edit: func(p *Pair) { p.Backend.SACK = false }, check: func(t *testing.T, e [2]Entry) {
			if f := e[ClientToBackend].Dir.Flags; f != bpf.SpliceSACKStrip|bpf.SpliceTSXlate {
				t.Errorf("to the backend without SACK: flags %#x", f)
			}
			if f := e[BackendToClient].Dir.Flags; f != bpf.SpliceSACKXlate|bpf.SpliceTSXlate {
				t.Errorf("to the client with SACK: flags %#x", f)
			}
		}},
		{name: "no timestamps either side", edit: func(p *Pair) { p.Client.Timestamps, p.Backend.Timestamps = false, false },
			check: func(t *testing.T, e [2]Entry) {
				if e[0].Dir.Flags&bpf.SpliceTSXlate != 0 || e[1].Dir.Flags&bpf.SpliceTSXlate != 0 {
					t.Error("timestamps translated without timestamps")
				}
			}},
		{name: "timestamps on one side only", edit: func(p *Pair) { p.Backend.Timestamps = false }, errIs: ErrOptionsMismatch},
		{name: "IPv4 client, IPv6 backend", edit: func(p *Pair) { p.Backend.Local, p.Backend.Remote = lb6, backend6 }, errIs: ErrFamilyMismatch},
		{name: "v4-mapped addresses are IPv4", edit: func(p *Pair) {
			p.Client.Remote = netip.AddrPortFrom(netip.AddrFrom16(client4.Addr().As16()), client4.Port())
		}, check: func(t *testing.T, e [2]Entry) {
			if e[0].Key.Family != 4 || netip.AddrFrom4([4]byte(e[0].Key.Saddr[:4])) != client4.Addr() {
				t.Errorf("key %+v", e[0].Key)
			}
		}},
		{name: "invalid address", edit: func(p *Pair) { p.Client.Remote = netip.AddrPort{} }, anyErr: true},
		{name: "port 0", edit: func(p *Pair) { p.Backend.Local = netip.AddrPortFrom(lb4.Addr(), 0) }, anyErr: true},
		{name: "window scale 15", edit: func(p *Pair) { p.Client.SndWscale = 15 }, anyErr: true},
		{name: "no hop interface", edit: func(p *Pair) { p.ToClient.Ifindex = 0 }, anyErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := testPair(false)
			if tc.edit != nil {
				tc.edit(&p)
			}
			e, err := Plan(p, 3)
			switch {
			case tc.errIs != nil:
				if !errors.Is(err, tc.errIs) {
					t.Fatalf("Plan: %v, want %v", err, tc.errIs)
				}
				return
			case tc.anyErr:
				if err == nil {
					t.Fatal("Plan accepted it")
				}
				return
			case err != nil:
				t.Fatal(err)
			}
			tc.check(t, e)
		})
	}
}
