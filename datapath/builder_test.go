package datapath

import (
	"net/netip"
	"testing"

	"github.com/xlbproject/xlb/hash"
)

// The tests build plans straight from the Spec types with this small
// builder: tvip and tbe say what a test cares about, planSet fills in the
// rest the way the control plane would (tables, stable IDs, counters).

// tbe is a test backend.
type tbe struct {
	addr   string
	weight uint32 // the table's weight (0: drained)
	mac    byte   // next hop 02:00:00:00:00:mac; 0: unresolved
	down   bool   // health checks hold it down
}

// tvip is a test VIP; proto 0 means TCP.
type tvip struct {
	addr     string
	port     uint16
	proto    uint8
	fwd      Forward
	gue      uint16
	noEcho   bool
	backends []tbe
}

// planSet builds successive plans that share stable IDs and counters, as
// the control plane's do, so flow tables see the same IDs across plans.
type planSet struct {
	ids      map[string]uint32 // "vip backend" or "vip"
	counters map[string]*BackendCounters
}

func newPlanSet() *planSet {
	return &planSet{ids: map[string]uint32{}, counters: map[string]*BackendCounters{}}
}

func (ps *planSet) id(name string) uint32 {
	id, ok := ps.ids[name]
	if !ok {
		id = uint32(len(ps.ids))
		ps.ids[name] = id
	}
	return id
}

// spec is the PlanSpec of vips, with the test outer sources.
func (ps *planSet) spec(tb testing.TB, vips ...tvip) PlanSpec {
	tb.Helper()
	s := PlanSpec{Source: lbAddr, Source6: lbAddr6}
	for _, v := range vips {
		vs := VIPSpec{Addr: netip.MustParseAddr(v.addr), Port: v.port, Proto: v.proto, Forward: v.fwd, GUEPort: v.gue, ICMPEcho: !v.noEcho}
		if vs.Proto == 0 {
			vs.Proto = 6
		}
		name := vipName(vs)
		vs.ID = ps.id(name)
		hb := make([]hash.Backend, len(v.backends))
		for i, b := range v.backends {
			bs := BackendSpec{Addr: netip.MustParseAddr(b.addr), Down: b.down}
			key := name + " " + b.addr
			bs.ID = ps.id(key)
			if ps.counters[key] == nil {
				ps.counters[key] = NewBackendCounters(1)
			}
			bs.Counters = ps.counters[key]
			if b.mac != 0 {
				bs.MAC, bs.Resolved = [6]byte{0x02, 0, 0, 0, 0, b.mac}, true
			}
			w := b.weight
			if b.down {
				w = 0
			}
			hb[i] = hash.Backend{Addr: bs.Addr, Weight: w}
			vs.Backends = append(vs.Backends, bs)
		}
		t, err := hash.Build(hb, hash.DefaultTableSize)
		if err != nil {
			tb.Fatal(err)
		}
		vs.Table = t
		s.VIPs = append(s.VIPs, vs)
	}
	return s
}

// plan builds the Plan of vips.
func (ps *planSet) plan(tb testing.TB, vips ...tvip) *Plan {
	tb.Helper()
	p, err := NewPlan(ps.spec(tb, vips...))
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

func TestNewPlanErrors(t *testing.T) {
	ps := newPlanSet()
	good := ps.spec(t, tvip{addr: "198.18.100.1", port: 80, backends: []tbe{{addr: "198.18.0.11", weight: 1, mac: 0x11}}})
	dup := good
	dup.VIPs = append(dup.VIPs, good.VIPs[0])
	noTable := ps.spec(t, tvip{addr: "198.18.100.1", port: 80})
	noTable.VIPs[0].Table = nil
	noCounters := ps.spec(t, tvip{addr: "198.18.100.1", port: 80, backends: []tbe{{addr: "198.18.0.11", weight: 1}}})
	noCounters.VIPs[0].Backends[0].Counters = nil
	for name, s := range map[string]PlanSpec{"duplicate vip": dup, "no table": noTable, "no counters": noCounters} {
		if _, err := NewPlan(s); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := NewPlan(good); err != nil {
		t.Fatal(err)
	}
}
