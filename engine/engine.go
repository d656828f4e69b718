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
	SetBackends([]bpf.LBBackend) error
	SetTable(vip uint32, slots []uint32) error
	SetVIPs([]bpf.VIPEntry) error
	Counters() (bpf.LBCounters, error)
	BackendCounters() ([]bpf.LBBackendCounters, error)
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
	plan    atomic.Pointer[datapath.Plan]
	pub     atomic.Pointer[published]
	started time.Time

	reloadMu sync.Mutex // one reload at a time
	mu       sync.Mutex // guards the plan inputs below
	cfg      *config.Config
	tables   []*hash.Table
	nexthops map[netip.Addr][6]byte
	counters map[backendKey]*datapath.BackendCounters
	ids      *idAllocator
	down     map[backendKey]bool // backends health checks hold down

	health     checker
	healthKeys map[string]backendKey // guarded by mu
	healthMu   sync.Mutex            // guards healthNews
	healthNews map[string]bool       // target ID -> down, not applied yet
	healthWake chan struct{}

	cancel    context.CancelFunc
	refreshed sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// published is what the current plan was built from, for Stats.
type published struct {
	cfg  *config.Config
	spec datapath.PlanSpec
}

// newEngine is an engine for cfg with nothing loaded or started yet.
func newEngine(cfg *config.Config, log *slog.Logger) *Engine {
	return &Engine{
		cfg:      cfg,
		log:      log,
		nexthops: map[netip.Addr][6]byte{},
		counters: map[backendKey]*datapath.BackendCounters{},
		ids:      newIDAllocator(),
		down:     map[backendKey]bool{},
		started:  time.Now(),

		healthNews: map[string]bool{},
		healthWake: make(chan struct{}, 1),
	}
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
	e := newEngine(cfg, log)
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
	if e.tables, err = buildTables(cfg, e.down); err != nil {
		return nil, err
	}
	e.resolveAll(time.Now().Add(resolveWait))
	if err := e.publish(); err != nil {
		return nil, err
	}
	if dp.Mode == config.ModeNative {
		err = e.startNative()
	} else {
		err = e.startAFXDP()
	}
	if err != nil {
		return nil, err
	}
	targets, keys := healthTargets(cfg)
	e.healthKeys = keys
	e.health = health.New(log, e.onHealth)
	if err := e.health.Set(targets); err != nil {
		return nil, fmt.Errorf("engine: health checks: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.refreshed.Add(1)
	go e.refresh(ctx)
	return e, nil
}

// steerEntries is the steering program's VIP map for cfg. Fragments are
// the steering program's business: a worker never sees one of a VIP.
func steerEntries(cfg *config.Config) []bpf.VIPEntry {
	out := make([]bpf.VIPEntry, len(cfg.VIPs))
	for i, v := range cfg.VIPs {
		out[i] = bpf.VIPEntry{Key: bpf.NewVIPKey(v.Address, v.Port, uint8(v.Protocol)), ID: uint32(i), PassFragments: v.Fragments == config.FragmentsPass}
	}
	return out
}

// resolveAll looks up every backend's next hop, retrying until all are known
// or the deadline passes. It reports whether anything changed.
func (e *Engine) resolveAll(deadline time.Time) bool {
	e.mu.Lock()
	var want []netip.Addr
	for _, v := range e.cfg.VIPs {
		for _, b := range v.Backends {
			if !b.HasMAC {
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

// publish builds a plan from the current inputs and swaps it in.
func (e *Engine) publish() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.publishLocked()
}

func (e *Engine) publishLocked() error {
	spec := planSpec(specInput{cfg: e.cfg, tables: e.tables, nexthops: e.nexthops, counters: e.counters, ids: e.ids, down: e.down, workers: len(e.cfg.Datapath.Queues)})
	p, err := datapath.NewPlan(spec)
	if err != nil {
		return err
	}
	e.plan.Store(p)
	e.pub.Store(&published{cfg: e.cfg, spec: spec})
	if e.lb != nil {
		return e.syncLB(spec)
	}
	return nil
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
			if err := e.publish(); err != nil {
				e.log.Error("publish plan", "err", err)
			}
		}
	}
}

// startAFXDP opens one socket and starts one worker per queue, then
// attaches the steering program.
func (e *Engine) startAFXDP() error {
	dp, log := e.cfg.Datapath, e.log
	steer, err := bpf.LoadSteer()
	if err != nil {
		return err
	}
	e.steer = steer
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
	if err := steer.SetVIPs(steerEntries(e.cfg)); err != nil {
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
		if e.health != nil {
			e.health.Close()
		}
		if e.cancel != nil {
			e.cancel()
			e.refreshed.Wait()
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
