package engine

import (
	"net/netip"
	"slices"
	"sync"

	"github.com/xlbproject/xlb/bgp"
	"github.com/xlbproject/xlb/config"
)

// RouteSink is what announces the engine's routes: bgp.Speaker. Announce
// gets the complete set each time (see bgp.Speaker.Announce).
type RouteSink interface {
	Announce([]bgp.Route) error
}

// announcer follows the engine's state into a RouteSink. Every commit
// (start, reload, health change) wakes it; it reads the published state,
// so it never holds the engine's locks while the sink talks to BGP.
type announcer struct {
	sink RouteSink
	wake chan struct{}
	stop chan struct{}
	done sync.WaitGroup
	once sync.Once
}

// Routes is what the engine forwards now, as BGP routes: one host route
// per VIP address that has at least one backend its health checks do not
// hold down (drained backends count: their established flows are still
// forwarded). VIPs sharing an address are one route, announced while any
// of them has a backend up. Nothing once the datapath has failed.
func (e *Engine) Routes() []bgp.Route {
	st := e.pub.Load()
	if st == nil || e.Err() != nil {
		return nil
	}
	return routesOf(st)
}

func routesOf(st *state) []bgp.Route {
	var out []bgp.Route
	seen := map[netip.Addr]bool{}
	for _, v := range st.cfg.VIPs {
		if seen[v.Address] {
			continue
		}
		up := slices.ContainsFunc(v.Backends, func(b config.Backend) bool { return !st.down[backendKey{idOf(v), b.Address}] })
		if !up {
			continue
		}
		seen[v.Address] = true
		out = append(out, bgp.Route{
			Prefix:      netip.PrefixFrom(v.Address, v.Address.BitLen()),
			Communities: v.BGP.Communities,
			MED:         v.BGP.MED,
		})
	}
	return out
}

// AnnounceTo makes sink announce Routes now and after every change, until
// StopAnnouncing; when the datapath fails, sink is given the empty set at
// once (routers move the flows to balancers that still forward). Call it
// once, after Start.
func (e *Engine) AnnounceTo(sink RouteSink) {
	a := &announcer{sink: sink, wake: make(chan struct{}, 1), stop: make(chan struct{})}
	e.mu.Lock()
	e.ann = a
	e.mu.Unlock()
	a.done.Add(1)
	go e.follow(a)
	a.poke()
}

// StopAnnouncing stops following the engine and announces nothing: the
// first step of a graceful stop, while the datapath still forwards. It
// returns the sink's error.
func (e *Engine) StopAnnouncing() error {
	e.mu.Lock()
	a := e.ann
	e.mu.Unlock()
	if a == nil {
		return nil
	}
	a.once.Do(func() { close(a.stop) })
	a.done.Wait()
	return a.sink.Announce(nil)
}

// poke wakes the follower without blocking (a wake-up already pending
// covers this one: the follower reads the latest state).
func (a *announcer) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// announceChanged is called on every commit, with mu held.
func (e *Engine) announceChanged() {
	if e.ann != nil {
		e.ann.poke()
	}
}

func (e *Engine) follow(a *announcer) {
	defer a.done.Done()
	for {
		select {
		case <-a.stop:
			return
		case <-e.failed:
			if err := a.sink.Announce(nil); err != nil {
				e.log.Error("withdraw the routes of a failed datapath", "err", err)
			} else {
				e.log.Warn("datapath failed: every route withdrawn")
			}
			<-a.stop
			return
		case <-a.wake:
		}
		routes := e.Routes()
		if err := a.sink.Announce(routes); err != nil {
			// The speaker has applied what it could; the next change
			// tries the whole set again.
			e.log.Error("announce routes", "err", err)
			continue
		}
		e.log.Debug("routes announced", "routes", len(routes))
	}
}
