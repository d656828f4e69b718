package datapath

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

// Engine is a running datapath: the steering program, one socket and worker
// per queue, and the plan they share.
type Engine struct {
	ifname  string
	allowed unix.CPUSet // the process's CPUs at start
	log     *slog.Logger
	ifindex int
	steer   *bpf.Steer // afxdp mode
	lb      *bpf.LB    // native mode
	mode    string
	socks   []*ring.Socket
	workers []*Worker
	plan    atomic.Pointer[Plan]
	started time.Time

	reloadMu sync.Mutex // one reload at a time
	mu       sync.Mutex // guards the plan inputs below
	cfg      *config.Config
	tables   []*hash.Table
	nexthops map[netip.Addr][6]byte
	counters map[backendKey]*BackendCounters
	ids      *idAllocator
	down     map[backendKey]bool // backends health checks hold down

	health     *health.Checker
	healthKeys map[string]backendKey // guarded by mu
	healthMu   sync.Mutex            // guards healthNews
	healthNews map[string]bool       // target ID -> down, not applied yet
	healthWake chan struct{}

	cancel    context.CancelFunc
	refreshed sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
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
	var srcMAC [6]byte
	copy(srcMAC[:], ifc.HardwareAddr)

	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		return nil, fmt.Errorf("datapath: read CPU affinity: %w", err)
	}
	e := &Engine{
		allowed:  allowed,
		cfg:      cfg,
		ifname:   ifc.Name,
		log:      log,
		ifindex:  ifc.Index,
		nexthops: map[netip.Addr][6]byte{},
		counters: map[backendKey]*BackendCounters{},
		ids:      newIDAllocator(),
		down:     map[backendKey]bool{},
		started:  time.Now(),

		healthNews: map[string]bool{},
		healthWake: make(chan struct{}, 1),
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
		err = e.startNative(ifc, srcMAC)
	} else {
		err = e.startAFXDP(ifc, srcMAC)
	}
	if err != nil {
		return nil, err
	}
	targets, keys := healthTargets(cfg)
	e.healthKeys = keys
	e.health = health.New(log, e.onHealth)
	if err := e.health.Set(targets); err != nil {
		return nil, fmt.Errorf("datapath: health checks: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel = cancel
	e.refreshed.Add(1)
	go e.refresh(ctx)
	return e, nil
}

func vipEntries(cfg *config.Config) []bpf.VIPEntry {
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
	p, err := buildPlan(planInput{cfg: e.cfg, tables: e.tables, nexthops: e.nexthops, counters: e.counters, ids: e.ids, down: e.down, workers: len(e.cfg.Datapath.Queues)})
	if err != nil {
		return err
	}
	e.plan.Store(p)
	if e.lb != nil {
		return e.syncLB(p)
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
func (e *Engine) startAFXDP(ifc *net.Interface, srcMAC [6]byte) error {
	cfg, dp, log := e.cfg, e.cfg.Datapath, e.log
	var err error
	if e.steer, err = bpf.LoadSteer(); err != nil {
		return err
	}
	reserved, err := reserveWorkerCPUs(e.allowed, dp.CPUs)
	if err != nil {
		return err
	}
	log.Info("worker CPUs", "cpus", dp.CPUs, "reserved_for_workers", reserved)
	for i, q := range dp.Queues {
		sock, err := ring.Open(ring.Config{
			Ifindex:        ifc.Index,
			Ifname:         ifc.Name,
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
		if err := e.steer.SetSocket(q, sock.FD()); err != nil {
			return err
		}
		fwd, err := NewForwarder(i, srcMAC, ifc.MTU, flowtable.Config{
			Entries: int(dp.FlowTableSize), TCPTimeout: dp.FlowTCPTimeout, UDPTimeout: dp.FlowUDPTimeout,
		})
		if err != nil {
			return err
		}
		w := newWorker(q, dp.CPUs[i], sock, &e.plan, fwd, int(dp.BatchSize), dp.Spin)
		e.workers = append(e.workers, w)
		w.start()
		log.Info("worker started", "queue", q, "cpu", dp.CPUs[i], "zero_copy", sock.ZeroCopy(), "batch", w.batch)
	}
	if err := e.steer.SetVIPs(vipEntries(cfg)); err != nil {
		return err
	}
	// Attach last: from this moment VIP traffic is steered, and every socket
	// it can be steered to is already served.
	if e.mode, err = e.steer.Attach(ifc.Index, dp.XDPMode); err != nil {
		return err
	}
	log.Info("steering program attached", "interface", ifc.Name, "ifindex", ifc.Index, "xdp_mode", e.mode, "source", dp.Source, "source6", dp.Source6, "mtu", ifc.MTU)
	return nil
}

// XDPMode is how the steering program was attached ("native" or "generic").
func (e *Engine) XDPMode() string { return e.mode }

// Close detaches the steering program, stops the workers and closes the
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
			errs = append(errs, w.halt())
		}
		for _, s := range e.socks {
			errs = append(errs, s.Close())
		}
		e.closeErr = errors.Join(errs...)
	})
	return e.closeErr
}
