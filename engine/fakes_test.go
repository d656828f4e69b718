package engine

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/health"
)

// The fakes stand in for the kernel-facing parts so that the control logic
// (reload transactions, ID recycling, health changes) can be tested alone.
// They keep what was written, and fail a named call on demand: the failing
// call first applies what it was given, the worst case for a rollback.

var errInjected = errors.New("injected failure")

// faults names the calls that fail once ("steer.SetVIPs", "lb.SetTable").
type faults map[string]bool

func (f faults) hit(call string) error {
	if f[call] {
		delete(f, call)
		return fmt.Errorf("%s: %w", call, errInjected)
	}
	return nil
}

type fakeSteer struct {
	faults faults
	vips   []bpf.VIPEntry
}

func (s *fakeSteer) SetVIPs(v []bpf.VIPEntry) error {
	s.vips = slices.Clone(v)
	return s.faults.hit("steer.SetVIPs")
}
func (s *fakeSteer) Counters() (bpf.SteerCounters, error) { return bpf.SteerCounters{}, nil }
func (s *fakeSteer) Close() error                         { return nil }

type fakeLB struct {
	faults   faults
	opts     bpf.LBOptions
	src      [4]byte
	src6     [16]byte
	timeouts [2]time.Duration
	icmpRate [2]uint32 // per second, burst
	synRate  uint32
	backends []bpf.LBBackend
	tables   map[uint32][]uint32
	vips     []bpf.VIPEntry
	counts   []bpf.LBBackendCounters // what BackendCounters reads, by index
}

func (l *fakeLB) Options() bpf.LBOptions { return l.opts }
func (l *fakeLB) SetSource(addr [4]byte, _ [6]byte, _ int) error {
	l.src = addr
	return l.faults.hit("lb.SetSource")
}
func (l *fakeLB) SetSource6(addr [16]byte) error {
	l.src6 = addr
	return l.faults.hit("lb.SetSource6")
}
func (l *fakeLB) SetTimeouts(tcp, udp time.Duration) error {
	l.timeouts = [2]time.Duration{tcp, udp}
	return l.faults.hit("lb.SetTimeouts")
}
func (l *fakeLB) SetICMPRate(perSec, burst uint32) error {
	l.icmpRate = [2]uint32{perSec, burst}
	return l.faults.hit("lb.SetICMPRate")
}
func (l *fakeLB) SetSYNRate(perSec uint32) error {
	l.synRate = perSec
	return l.faults.hit("lb.SetSYNRate")
}
func (l *fakeLB) SetBackends(b []bpf.LBBackend) error {
	if len(b) > l.opts.MaxBackends {
		return fmt.Errorf("fake lb: %d backends, room for %d", len(b), l.opts.MaxBackends)
	}
	l.backends = slices.Clone(b)
	return l.faults.hit("lb.SetBackends")
}
func (l *fakeLB) SetTable(vip uint32, slots []uint32) error {
	if len(slots) == 0 || vip >= uint32(l.opts.MaxVIPs) {
		return fmt.Errorf("fake lb: table %d of %d slots", vip, len(slots))
	}
	l.tables[vip] = slices.Clone(slots)
	return l.faults.hit("lb.SetTable")
}
func (l *fakeLB) SetVIPs(v []bpf.VIPEntry) error {
	l.vips = slices.Clone(v)
	return l.faults.hit("lb.SetVIPs")
}
func (l *fakeLB) Counters() (bpf.LBCounters, error) { return bpf.LBCounters{}, nil }
func (l *fakeLB) Firewall() *bpf.Firewall           { return nil }

func (l *fakeLB) BackendCounters() ([]bpf.LBBackendCounters, error) {
	return slices.Clone(l.counts), nil
}
func (l *fakeLB) FlowsByBackend() (map[uint32]uint64, error) { return map[uint32]uint64{}, nil }
func (l *fakeLB) Attach(int, string) (string, error)         { return "native", nil }
func (l *fakeLB) StartCapture(bpf.LBCaptureFilter) (*bpf.LBCapture, error) {
	return nil, bpf.ErrCaptureBusy
}
func (l *fakeLB) Close() error { return nil }

// snapshot is what the program would use: backends, VIPs and the tables the
// VIPs name.
func (l *fakeLB) snapshot() string {
	var b strings.Builder
	fmt.Fprintf(&b, "src %v %v timeouts %v icmp rate %v syn rate %d\nbackends %v\nvips %v\n", l.src, l.src6, l.timeouts, l.icmpRate, l.synRate, l.backends, l.vips)
	for _, v := range l.vips {
		fmt.Fprintf(&b, "table %d %v\n", v.ID, l.tables[v.ID])
	}
	return b.String()
}

type fakeHealth struct {
	faults  faults
	targets []health.Target
}

func (h *fakeHealth) Set(t []health.Target) error {
	h.targets = slices.Clone(t)
	return h.faults.hit("health.Set")
}
func (h *fakeHealth) Status() []health.Status { return nil }
func (h *fakeHealth) Close()                  {}

// offline is an engine on fakes, started for cfg the way Start does it, in
// afxdp or native mode.
type offline struct {
	*Engine
	faults faults
	steer  *fakeSteer
	lb     *fakeLB
	health *fakeHealth
}

func newOffline(t testing.TB, cfg *config.Config, native bool, maxBackends int) *offline {
	t.Helper()
	o := &offline{Engine: newEngine(slog.New(slog.NewTextHandler(io.Discard, nil))), faults: faults{}}
	o.mtu = 1500
	o.health = &fakeHealth{faults: o.faults}
	o.Engine.health = o.health
	if native {
		o.lb = &fakeLB{faults: o.faults, tables: map[uint32][]uint32{}, opts: bpf.LBOptions{
			TableSize: cfg.Datapath.TableSize, MaxVIPs: bpf.DefaultLBMaxVIPs, MaxBackends: maxBackends,
			MaglevSlots: (bpf.DefaultLBMaxVIPs + 1) * int(cfg.Datapath.TableSize),
		}}
		o.Engine.lb = o.lb
	} else {
		o.steer = &fakeSteer{faults: o.faults}
		o.Engine.steer = o.steer
	}
	o.mu.Lock()
	st, err := o.prepare(cfg)
	if err == nil {
		o.store(st)
		if native {
			err = errors.Join(o.setNativeSettings(cfg.Datapath), o.syncLB(st))
		} else {
			err = o.steer.SetVIPs(vipEntries(cfg))
		}
	}
	o.mu.Unlock()
	if err == nil {
		err = o.health.Set(st.targets)
	}
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// kernelState is everything the fakes hold, as text.
func (o *offline) kernelState() string {
	s := fmt.Sprintf("health %v\n", o.health.targets)
	if o.lb != nil {
		return s + o.lb.snapshot()
	}
	return s + fmt.Sprintf("steer %v\n", o.steer.vips)
}

func (o *offline) stateIDs() map[backendKey]uint32 { return maps.Clone(o.cur.ids.backends) }
