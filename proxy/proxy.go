package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/health"
)

// sweepEvery is how often idle connections are looked for.
const sweepEvery = time.Second

// acceptPause is how long an accept loop waits after a failed accept (out
// of file descriptors): retrying at once would spin.
const acceptPause = 50 * time.Millisecond

// Proxy serves the splice VIPs of a configuration.
type Proxy struct {
	log    *slog.Logger
	ctx    context.Context // canceled by Close: aborts dials
	cancel context.CancelFunc
	health *health.Checker

	handoff *Handover // nil: phase 1 only, every pair stays copied
	rst     *resetter // with handoff

	mu        sync.Mutex // guards what follows
	vips      []*listener
	routeCtrs map[routeKey]*RouteCounters
	backCtrs  map[backendKey]*BackendCounters
	closed    bool

	healthMu   sync.Mutex      // guards down
	down       map[string]bool // health target ID -> held down
	healthWake chan struct{}

	conns    connSet
	serving  sync.WaitGroup // accept loops, connections, sweeper, health loop
	prepared sync.Mutex     // one Prepare..Commit/Abort at a time
}

type routeKey struct {
	vip   netip.AddrPort
	route string
}

type backendKey struct {
	route routeKey
	addr  netip.Addr
}

// listener is one splice VIP's listening socket and its routing state.
type listener struct {
	addr    netip.AddrPort
	ln      *net.TCPListener
	state   atomic.Pointer[vipState]
	refused [numReasons]atomic.Uint64
	active  atomic.Int64
	done    chan struct{} // closed when the accept loop has returned
}

// vipState is what a new connection of a VIP is routed by. Immutable.
type vipState struct {
	cfg config.VIP
	routing
	routes []routeState // parallel to cfg.Routes
}

type routeState struct {
	cfg      config.Route
	counters *RouteCounters
	backends []*BackendCounters // parallel to cfg.Backends
}

// New returns a proxy serving nothing; Prepare and Commit give it VIPs.
// With a Handover (h not nil), it hands quiescent pairs to the datapath.
func New(log *slog.Logger, h *Handover) (*Proxy, error) {
	var rst *resetter
	if h != nil {
		var err error
		if rst, err = newResetter(); err != nil {
			return nil, err
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{
		handoff:    h,
		rst:        rst,
		log:        log,
		ctx:        ctx,
		cancel:     cancel,
		routeCtrs:  map[routeKey]*RouteCounters{},
		backCtrs:   map[backendKey]*BackendCounters{},
		down:       map[string]bool{},
		healthWake: make(chan struct{}, 1),
		conns:      connSet{m: map[*conn]struct{}{}},
	}
	p.health = health.New(log, p.onHealth)
	p.serving.Add(2)
	go p.sweep()
	go p.healthLoop()
	return p, nil
}

// Start returns a proxy serving the splice VIPs of cfg (see New for h).
func Start(cfg *config.Config, log *slog.Logger, h *Handover) (*Proxy, error) {
	p, err := New(log, h)
	if err != nil {
		return nil, err
	}
	pd, err := p.Prepare(cfg)
	if err != nil {
		p.Close()
		return nil, err
	}
	pd.Commit()
	return p, nil
}

// Pending is a prepared configuration: Commit applies it, Abort drops it.
// Exactly one of them must be called.
type Pending struct {
	p      *Proxy
	cfg    *config.Config
	fresh  []*listener // listeners Prepare opened
	keep   []*listener // every listener of cfg, in its VIP order
	states []*vipState // parallel to keep
}

// Prepare builds the tables of cfg's splice VIPs and opens the listeners of
// those not served yet. Errors name the config key. Until Commit or Abort,
// other Prepares wait.
func (p *Proxy) Prepare(cfg *config.Config) (*Pending, error) {
	p.prepared.Lock()
	pd := &Pending{p: p, cfg: cfg}
	p.mu.Lock()
	running := map[netip.AddrPort]*listener{}
	for _, l := range p.vips {
		running[l.addr] = l
	}
	p.mu.Unlock()
	p.healthMu.Lock()
	down := maps.Clone(p.down)
	p.healthMu.Unlock()
	for i, v := range cfg.VIPs {
		if v.Forward != config.Splice {
			continue
		}
		key := fmt.Sprintf("vip[%d]", i)
		st, err := p.buildState(v, down)
		if err != nil {
			pd.Abort()
			return nil, cfg.Errorf(key, "%v", err)
		}
		addr := netip.AddrPortFrom(v.Address, v.Port)
		l := running[addr]
		if l == nil {
			var lc net.ListenConfig
			ln, err := lc.Listen(p.ctx, "tcp", addr.String())
			if err != nil {
				pd.Abort()
				return nil, cfg.Errorf(key+".address", "listen on %s: %v", addr, err)
			}
			l = &listener{addr: addr, ln: ln.(*net.TCPListener), done: make(chan struct{})}
			pd.fresh = append(pd.fresh, l)
		}
		pd.keep = append(pd.keep, l)
		pd.states = append(pd.states, st)
	}
	return pd, nil
}

// Abort closes the listeners Prepare opened; nothing else had changed.
func (pd *Pending) Abort() {
	for _, l := range pd.fresh {
		l.ln.Close()
	}
	pd.p.prepared.Unlock()
}

// Commit switches to the prepared configuration.
func (pd *Pending) Commit() {
	p := pd.p
	defer p.prepared.Unlock()
	for i, l := range pd.keep {
		l.state.Store(pd.states[i])
	}
	p.mu.Lock()
	kept := map[*listener]bool{}
	for _, l := range pd.keep {
		kept[l] = true
	}
	var gone []*listener
	for _, l := range p.vips {
		if !kept[l] {
			gone = append(gone, l)
		}
	}
	p.vips = pd.keep
	p.pruneCounters()
	closed := p.closed
	if !closed {
		p.serving.Add(len(pd.fresh))
	}
	p.mu.Unlock()
	for _, l := range pd.fresh {
		if closed {
			l.ln.Close()
			continue
		}
		p.log.Info("splice vip listening", "vip", l.addr, "routes", len(l.state.Load().routes))
		go p.accept(l)
	}
	for _, l := range gone {
		l.ln.Close()
		<-l.done
		p.log.Info("splice vip removed; its connections go on", "vip", l.addr)
	}
	if err := p.health.Set(healthTargets(pd.cfg)); err != nil && !errors.Is(err, health.ErrClosed) {
		p.log.Error("splice health checks", "err", err)
	}
}

// pruneCounters forgets the counters of routes and backends no VIP has any
// more (connections still open keep theirs). p.mu is held.
func (p *Proxy) pruneCounters() {
	routes, backends := map[routeKey]bool{}, map[backendKey]bool{}
	for _, l := range p.vips {
		st := l.state.Load()
		for _, r := range st.routes {
			rk := routeKey{l.addr, r.cfg.Name()}
			routes[rk] = true
			for _, b := range r.cfg.Backends {
				backends[backendKey{rk, b.Address}] = true
			}
		}
	}
	for k := range p.routeCtrs {
		if !routes[k] {
			delete(p.routeCtrs, k)
		}
	}
	for k := range p.backCtrs {
		if !backends[k] {
			delete(p.backCtrs, k)
		}
	}
}

// buildState builds the state of a splice VIP: its routing and the
// counters of its routes and backends (those of an earlier state carried).
func (p *Proxy) buildState(v config.VIP, down map[string]bool) (*vipState, error) {
	rt, err := newRouting(v, func(r config.Route, b config.Backend) bool { return down[healthID(v, r, b)] })
	if err != nil {
		return nil, err
	}
	st := &vipState{cfg: v, routing: rt, routes: make([]routeState, len(v.Routes))}
	vipAddr := netip.AddrPortFrom(v.Address, v.Port)
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, r := range v.Routes {
		rk := routeKey{vipAddr, r.Name()}
		rs := routeState{cfg: r, backends: make([]*BackendCounters, len(r.Backends))}
		if rs.counters = p.routeCtrs[rk]; rs.counters == nil {
			rs.counters = &RouteCounters{}
			p.routeCtrs[rk] = rs.counters
		}
		for j, b := range r.Backends {
			bk := backendKey{rk, b.Address}
			if rs.backends[j] = p.backCtrs[bk]; rs.backends[j] == nil {
				rs.backends[j] = &BackendCounters{}
				p.backCtrs[bk] = rs.backends[j]
			}
		}
		st.routes[i] = rs
	}
	return st, nil
}

// healthID names a route backend's health check.
func healthID(v config.VIP, r config.Route, b config.Backend) string {
	return fmt.Sprintf("splice %s route %s backend %s", netip.AddrPortFrom(v.Address, v.Port), r.Name(), b.Address)
}

func healthTargets(cfg *config.Config) []health.Target {
	var out []health.Target
	for _, v := range cfg.VIPs {
		if v.Forward != config.Splice {
			continue
		}
		for _, r := range v.Routes {
			for _, b := range r.Backends {
				if b.Health.Kind == config.HealthNone {
					continue
				}
				out = append(out, health.Target{ID: healthID(v, r, b), Addr: b.Address, Spec: b.Health.Spec()})
			}
		}
	}
	return out
}

// onHealth runs on a prober goroutine; it must not wait for p.mu (Commit
// holds it no longer than a swap, but health.Set waits for probers).
func (p *Proxy) onHealth(s health.Status) {
	p.healthMu.Lock()
	p.down[s.ID] = s.State == health.StateDown
	p.healthMu.Unlock()
	p.log.Info("splice backend health", "check", s.ID, "state", s.State.String(), "err", s.LastError)
	select {
	case p.healthWake <- struct{}{}:
	default:
	}
}

// healthLoop rebuilds the tables when a backend goes down or comes up.
func (p *Proxy) healthLoop() {
	defer p.serving.Done()
	for {
		select {
		case <-p.ctx.Done():
			return
		case <-p.healthWake:
		}
		p.prepared.Lock()
		p.healthMu.Lock()
		down := maps.Clone(p.down)
		p.healthMu.Unlock()
		p.mu.Lock()
		vips := p.vips
		p.mu.Unlock()
		for _, l := range vips {
			st, err := p.buildState(l.state.Load().cfg, down)
			if err != nil {
				p.log.Error("splice tables after a health change", "vip", l.addr, "err", err)
				continue
			}
			l.state.Store(st)
		}
		p.prepared.Unlock()
	}
}

// Close stops accepting, resets every connection and returns when every
// goroutine of the proxy has.
func (p *Proxy) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	vips := p.vips
	p.mu.Unlock()
	p.cancel()
	p.health.Close()
	for _, l := range vips {
		l.ln.Close()
	}
	p.conns.abortAll()
	p.serving.Wait()
	if p.rst != nil {
		p.rst.close()
	}
	return nil
}

func (p *Proxy) accept(l *listener) {
	defer p.serving.Done()
	defer close(l.done)
	for {
		c, err := l.ln.AcceptTCP()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			p.log.Warn("splice accept", "vip", l.addr, "err", err)
			time.Sleep(acceptPause)
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			continue
		}
		p.serving.Add(1)
		p.mu.Unlock()
		go p.serve(l, c)
	}
}
