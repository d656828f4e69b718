package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/datapath"
	"github.com/xlbproject/xlb/flowtable"
	"github.com/xlbproject/xlb/hash"
	"github.com/xlbproject/xlb/health"
	"github.com/xlbproject/xlb/ring"
	"github.com/xlbproject/xlb/splice"
)

// resolveWait bounds how long Start waits for the backends' next hops before
// it starts forwarding anyway (unresolved backends count no_neighbor drops
// until the refresher finds them).
const resolveWait = 3 * time.Second

// refreshEvery is how often next hops are looked up again, so a backend whose
// MAC changes (failover, re-cabling) is followed.
const refreshEvery = time.Second

// steering is the afxdp mode's steering program as the engine drives it
// (bpf.Steer; tests put a fake in its place).
type steering interface {
	SetVIPs([]bpf.VIPEntry) error
	Counters() (bpf.SteerCounters, error)
	Close() error
}

// nativeLB is the native mode's lb program as the engine drives it (bpf.LB;
// tests put a fake in its place).
type nativeLB interface {
	Options() bpf.LBOptions
	SetSource(addr [4]byte, mac [6]byte, mtu int) error
	SetSource6(addr [16]byte) error
	SetTimeouts(tcp, udp time.Duration) error
	SetICMPRate(perSec, burst uint32) error
	SetSYNRate(perSec uint32) error
	SetBackends([]bpf.LBBackend) error
	SetTable(vip uint32, slots []uint32) error
	SetVIPs([]bpf.VIPEntry) error
	Counters() (bpf.LBCounters, error)
	BackendCounters() ([]bpf.LBBackendCounters, error)
	Firewall() *bpf.Firewall
	FlowsByBackend() (map[uint32]uint64, error)
	StartCapture(bpf.LBCaptureFilter) (*bpf.LBCapture, error)
	Attach(ifindex int, mode string) (string, error)
	Close() error
}

// checker is the health checker as the engine drives it (health.Checker).
type checker interface {
	Set([]health.Target) error
	Status() []health.Status
	Close()
}

// Engine is a running datapath: the steering program, one socket and worker
// per queue (or the native program), the plan they share, and the control
// loops that keep it current.
type Engine struct {
	ifname  string
	allowed unix.CPUSet // the process's CPUs at start
	log     *slog.Logger
	ifindex int
	srcMAC  [6]byte
	mtu     int
	steer   steering // afxdp mode
	lb      nativeLB // native mode
	mode    string
	socks   []*ring.Socket
	workers []*datapath.Worker
	plan    atomic.Pointer[datapath.Plan] // what the workers read
	pub     atomic.Pointer[state]         // what it was built from, for Stats
	started time.Time

	reloadMu sync.Mutex // one reload or health application at a time
	mu       sync.Mutex // guards cur and nexthops
	cur      *state     // the committed state
	nexthops map[netip.Addr][6]byte
	ann      *announcer // BGP, once AnnounceTo is called

	fw fwState // the firewall's rules and maps (firewall.go)

	health     checker
	healthMu   sync.Mutex      // guards healthNews
	healthNews map[string]bool // target ID -> down, not applied yet
	healthWake chan struct{}

	splice *splice.Table // afxdp mode with splice_table_size > 0

	progID   uint32 // the attached XDP program's kernel ID
	failed   chan struct{}
	failOnce sync.Once
	failErr  error // set before failed is closed

	cancel    context.CancelFunc
	refreshed sync.WaitGroup
	watching  sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// state is one committed configuration of the engine and everything
// derived from it. A committed state is never modified: a reload, a health
// change or a new next hop builds another one aside and commits it whole.
type state struct {
	cfg      *config.Config
	tables   []*hash.Table
	down     map[backendKey]bool // backends health checks hold down
	ids      *ids
	counters map[backendKey]*datapath.BackendCounters
	targets  []health.Target
	keys     map[string]backendKey // health target ID -> backend
	spec     datapath.PlanSpec
	plan     *datapath.Plan
	// Native mode: the lb program's per-index counters when each index was
	// given to its backend (they count on across reuse), subtracted by
	// Stats; fresh is the indexes this state gave to new backends.
	base  map[uint32]bpf.LBBackendCounters
	fresh []uint32
}

// newEngine is an engine with nothing loaded or started yet.
func newEngine(log *slog.Logger) *Engine {
	return &Engine{
		log:        log,
		nexthops:   map[netip.Addr][6]byte{},
		started:    time.Now(),
		healthNews: map[string]bool{},
		healthWake: make(chan struct{}, 1),
		failed:     make(chan struct{}),
	}
}

// prepare builds the state for cfg aside, from the committed one (nil at
// start): health state carried over, IDs assigned on a clone,
// tables and plan built. Nothing running changes. Called with mu held.
func (e *Engine) prepare(cfg *config.Config) (*state, error) {
	if err := e.checkCapacity(cfg); err != nil {
		return nil, err
	}
	st := &state{cfg: cfg}
	var err error
	st.targets, st.keys = healthTargets(cfg)
	workers := len(cfg.Datapath.Queues)
	if old := e.cur; old != nil {
		st.down = carriedDown(old.down, st.keys)
		st.ids = old.ids.clone()
		st.counters = keepCounters(old.counters, cfg, workers)
	} else {
		st.down = map[backendKey]bool{}
		st.ids = newIDs(maxIndexes)
		if e.lb != nil {
			st.ids = newIDs(e.lb.Options().MaxBackends)
		}
		st.counters = keepCounters(nil, cfg, workers)
	}
	if st.fresh, err = st.ids.assign(cfg); err != nil {
		return nil, cfg.Errorf("vip", "%v", err)
	}
	if st.tables, err = buildTables(cfg, st.down); err != nil {
		return nil, err
	}
	return st, e.derive(st)
}

// derive builds st's spec and plan from its other fields and the next hops
// known. Called with mu held.
func (e *Engine) derive(st *state) error {
	st.spec = planSpec(specInput{cfg: st.cfg, tables: st.tables, nexthops: e.nexthops, counters: st.counters, ids: st.ids, down: st.down})
	var err error
	st.plan, err = datapath.NewPlan(st.spec)
	return err
}

// store publishes st: from here the workers and Stats use it.
func (e *Engine) store(st *state) {
	e.cur = st
	e.plan.Store(st.plan)
	e.pub.Store(st)
	e.announceChanged()
}

// Start brings up the datapath for cfg, which must have passed
// cfg.CheckHost in this network namespace. On error everything it set up is
// torn down again.
func Start(cfg *config.Config, log *slog.Logger) (_ *Engine, err error) {
	dp := cfg.Datapath
	ifc, err := net.InterfaceByName(dp.Interface)
	if err != nil {
		return nil, cfg.Errorf("datapath.interface", "%v", err)
	}
	if len(ifc.HardwareAddr) != 6 {
		return nil, cfg.Errorf("datapath.interface", "%s has no Ethernet address", dp.Interface)
	}
	e := newEngine(log)
	copy(e.srcMAC[:], ifc.HardwareAddr)
	e.ifname, e.ifindex, e.mtu = ifc.Name, ifc.Index, ifc.MTU
	if err := unix.SchedGetaffinity(0, &e.allowed); err != nil {
		return nil, fmt.Errorf("engine: read CPU affinity: %w", err)
	}
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if dp.Mode == config.ModeNative {
		// Loaded first: its map sizes bound what the config may hold.
		if err := e.loadNative(cfg); err != nil {
			return nil, err
		}
	}
	e.mu.Lock()
	st, err := e.prepare(cfg)
	if err == nil {
		e.store(st)
	}
	e.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if e.resolveAll(time.Now().Add(resolveWait)) {
		if err := e.refreshPlan(); err != nil {
			return nil, err
		}
	}
	if dp.Mode == config.ModeNative {
		err = e.startNative()
	} else {
		err = e.startAFXDP()
	}
	if err != nil {
		return nil, err
	}
	e.health = health.New(log, e.onHealth)
	if err := e.health.Set(st.targets); err != nil {
		return nil, fmt.Errorf("engine: health checks: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.refreshed.Add(1)
	go e.refresh(ctx)
	if err := e.watch(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// vipEntries is the VIP map of the steering or the lb program for cfg: a
// VIP's ID is its index (in native mode the index of its Maglev table).
// Fragments are the programs' business: a worker never sees one of a VIP.
// Echo, forward mode and GUE port are the lb program's; steer ignores them.
func vipEntries(cfg *config.Config) []bpf.VIPEntry {
	out := make([]bpf.VIPEntry, 0, len(cfg.VIPs))
	for i, v := range cfg.VIPs {
		// A splice VIP is not steered: its packets go on to the kernel's
		// stack, where the proxy accepts its connections.
		if v.Forward == config.Splice {
			continue
		}
		out = append(out, bpf.VIPEntry{
			Key: bpf.NewVIPKey(v.Address, v.Port, uint8(v.Protocol)), ID: uint32(i), PassFragments: v.Fragments == config.FragmentsPass,
			ICMPEcho: v.ICMPEcho, Forward: lbForwards[v.Forward], GUEPort: v.GUEPort,
		})
	}
	return out
}

var lbForwards = map[config.Forward]bpf.LBForward{config.IPIP: bpf.LBForwardIPIP, config.GUE: bpf.LBForwardGUE, config.DSR: bpf.LBForwardDSR}

// resolveAll looks up every backend's next hop, retrying until all are known
// or the deadline passes. It reports whether anything changed.
func (e *Engine) resolveAll(deadline time.Time) bool {
	e.mu.Lock()
	var want []netip.Addr
	for _, v := range e.cur.cfg.VIPs {
		for _, b := range v.Backends {
			if !b.HasMAC && !b.Local { // this host has no next hop
				want = append(want, b.Address)
			}
		}
	}
	e.mu.Unlock()
	changed := false
	for {
		pending := 0
		for _, addr := range want {
			mac, ok, err := nextHop(e.ifindex, addr)
			if err != nil {
				e.log.Warn("next hop", "backend", addr, "err", err)
				continue
			}
			if !ok {
				pending++
				continue
			}
			e.mu.Lock()
			if old, had := e.nexthops[addr]; !had || old != mac {
				e.nexthops[addr] = mac
				changed = true
				e.log.Info("next hop resolved", "backend", addr, "mac", net.HardwareAddr(mac[:]).String())
			}
			e.mu.Unlock()
		}
		if pending == 0 || time.Now().After(deadline) {
			if pending > 0 {
				e.log.Warn("next hops unresolved; their packets count as no_neighbor drops until resolved", "backends", pending)
			}
			return changed
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// refreshPlan rebuilds the committed state's plan with the next hops known
// now and commits it.
func (e *Engine) refreshPlan() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	next := *e.cur
	if err := e.derive(&next); err != nil {
		return err
	}
	return e.commit(e.cur, &next)
}

func (e *Engine) refresh(ctx context.Context) {
	defer e.refreshed.Done()
	t := time.NewTicker(refreshEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.healthWake:
			e.applyHealth()
			continue
		case <-t.C:
		}
		if e.resolveAll(time.Now()) {
			if err := e.refreshPlan(); err != nil {
				e.log.Error("publish plan with new next hops; the previous one stays", "err", err)
			}
		}
	}
}

// startAFXDP opens one socket and starts one worker per queue, then
// attaches the steering program.
func (e *Engine) startAFXDP() error {
	cfg := e.cur.cfg
	dp, log := cfg.Datapath, e.log
	steer, err := bpf.LoadSteer(bpf.SteerOptions{SpliceTableSize: int(dp.SpliceTableSize)})
	if err != nil {
		return err
	}
	e.steer = steer
	if maps, ok := steer.SpliceMaps(); ok {
		if e.splice, err = splice.NewTable(maps); err != nil {
			return err
		}
	}
	if e.progID, err = programID(steer.Program()); err != nil {
		return err
	}
	reserved, err := reserveWorkerCPUs(e.allowed, dp.CPUs)
	if err != nil {
		return err
	}
	log.Info("worker CPUs", "cpus", dp.CPUs, "reserved_for_workers", reserved)
	for i, q := range dp.Queues {
		sock, err := ring.Open(ring.Config{
			Ifindex:        e.ifindex,
			Ifname:         e.ifname,
			Queue:          q,
			FrameSize:      dp.FrameSize,
			FrameCount:     dp.FrameCount,
			Headroom:       dp.Headroom,
			FillSize:       dp.FillRing,
			CompletionSize: dp.CompletionRing,
			RxSize:         dp.RxRing,
			TxSize:         dp.TxRing,
			ZeroCopy:       dp.ZeroCopy,
			NeedWakeup:     dp.NeedWakeup,
			TxBudget:       dp.TxBudget,
			BusyPoll:       dp.BusyPoll,
			BusyPollBudget: dp.BusyPollBudget,
		})
		if err != nil {
			return err
		}
		e.socks = append(e.socks, sock)
		if err := steer.SetSocket(q, sock.FD()); err != nil {
			return err
		}
		fwd, err := datapath.NewForwarder(i, e.srcMAC, e.mtu, flowtable.Config{
			Entries: int(dp.FlowTableSize), TCPTimeout: dp.FlowTCPTimeout, UDPTimeout: dp.FlowUDPTimeout,
		})
		if err != nil {
			return err
		}
		w := datapath.NewWorker(q, dp.CPUs[i], sock, &e.plan, fwd, int(dp.BatchSize), dp.Spin)
		e.workers = append(e.workers, w)
		w.Start()
		log.Info("worker started", "queue", q, "cpu", dp.CPUs[i], "zero_copy", sock.ZeroCopy(), "batch", w.Batch())
	}
	if err := steer.SetVIPs(vipEntries(cfg)); err != nil {
		return err
	}
	if err := e.fwStart(steer.Firewall(), cfg); err != nil {
		return err
	}
	// Attach last: from this moment VIP traffic is steered, and every socket
	// it can be steered to is already served.
	if e.mode, err = steer.Attach(e.ifindex, dp.XDPMode); err != nil {
		return err
	}
	log.Info("steering program attached", "interface", e.ifname, "ifindex", e.ifindex, "xdp_mode", e.mode, "source", dp.Source, "source6", dp.Source6, "mtu", e.mtu)
	return nil
}

// XDPMode is how the XDP program was attached ("native" or "generic").
func (e *Engine) XDPMode() string { return e.mode }

// Close detaches the XDP program, stops the workers and closes the
// sockets. It is safe to call more than once.
func (e *Engine) Close() error {
	e.closeOnce.Do(func() {
		var errs []error
		e.fwClose()
		if e.health != nil {
			e.health.Close()
		}
		if e.cancel != nil {
			e.cancel()
			e.refreshed.Wait()
			e.watching.Wait()
		}
		if e.steer != nil {
			errs = append(errs, e.steer.Close())
		}
		if e.lb != nil {
			errs = append(errs, e.lb.Close())
		}
		for _, w := range e.workers {
			errs = append(errs, w.Halt())
		}
		for _, s := range e.socks {
			errs = append(errs, s.Close())
		}
		e.closeErr = errors.Join(errs...)
	})
	return e.closeErr
}
