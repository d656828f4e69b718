package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrClosed is returned by Set after Close.
var ErrClosed = errors.New("health: checker closed")

// Target is one backend to check.
type Target struct {
	// ID is the caller's stable key for the backend, unique within one
	// Set, such as "198.18.1.1:80/tcp 198.18.0.11". Status and onChange
	// report it back; the checker gives it no meaning.
	ID string
	// Addr is the backend's own address (not the VIP it holds on lo).
	Addr netip.Addr
	// Spec is the check, filled by WithDefaults and valid.
	Spec Spec
}

// Status is a target's health as the checker last saw it.
type Status struct {
	ID    string
	Addr  netip.Addr
	Kind  Kind
	State State
	// Since is when State last changed or, if it never did, when the
	// target was first Set.
	Since time.Time
	// LastError is the error of the last probe, empty if it succeeded or
	// none ran yet.
	LastError string
	// Successes and Failures are consecutive: one resets the other.
	Successes, Failures int
	// Checks counts probes since the target's Spec last changed.
	Checks uint64
}

// Option configures a Checker.
type Option func(*Checker)

// WithDial makes probes connect with dial instead of a plain net.Dialer,
// for example from a lab host's namespace in tests.
func WithDial(dial DialFunc) Option {
	return func(c *Checker) { c.dial = dial }
}

// Checker probes a set of targets, each on its own goroutine, and reports
// their state changes. Its methods are safe for concurrent use.
type Checker struct {
	log      *slog.Logger
	onChange func(Status)
	dial     DialFunc
	// probe runs one check and jitter picks the delay before a target's
	// first probe; tests replace them to drive the checker without sockets
	// and without randomness.
	probe  func(ctx context.Context, t Target) error
	jitter func(interval time.Duration) time.Duration

	setMu sync.Mutex // serializes Set and Close

	mu      sync.Mutex // guards what follows and every entry's tracker
	targets map[string]*entry
	closed  bool
}

// entry is one running target. A changed Target gets a new entry, so an
// entry's target never changes.
type entry struct {
	target Target
	tr     tracker
	cancel context.CancelFunc // nil for KindNone, which runs nothing
	done   chan struct{}      // closed when the prober has returned
}

// New returns a Checker with no targets. onChange, which may be nil, is
// called after a target's State changed because of its probes, with the
// new Status. It runs on that target's prober goroutine: calls for one
// target never overlap, calls for different targets may, and the target's
// next probe waits for it. onChange must not call Set or Close. log may be
// nil.
func New(log *slog.Logger, onChange func(Status), opts ...Option) *Checker {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if onChange == nil {
		onChange = func(Status) {}
	}
	var d net.Dialer
	d.KeepAlive = -1 // connections live for one probe
	c := &Checker{
		log:      log,
		onChange: onChange,
		dial:     d.DialContext,
		targets:  map[string]*entry{},
	}
	for _, o := range opts {
		o(c)
	}
	c.probe = func(ctx context.Context, t Target) error { return probe(ctx, c.dial, t) }
	c.jitter = rand.N[time.Duration]
	return c
}

// Set makes targets the checked set. A target whose ID, Addr and Spec are
// all unchanged keeps running with its state and counters, so a reload does
// not reset health. A new ID starts Up. A known ID with another Addr or Spec
// restarts its probing with fresh counters but keeps its State and Since,
// so a reload neither revives a dead backend nor drops a live one; a
// KindNone target is always Up. Targets not in the list stop.
//
// Set returns once every stopped prober has returned; from then on
// onChange is never called for a removed or replaced target. Set itself
// never calls onChange: a caller that rebuilds tables after Set reads
// Status. A bad target (empty or duplicate ID, invalid Addr, Spec that
// fails Validate) fails the whole call with an error wrapping
// ErrInvalidSpec, and nothing changes.
func (c *Checker) Set(targets []Target) error {
	seen := make(map[string]bool, len(targets))
	for i, t := range targets {
		switch {
		case t.ID == "":
			return fmt.Errorf("%w: target %d: empty ID", ErrInvalidSpec, i)
		case seen[t.ID]:
			return fmt.Errorf("%w: target %q: duplicate ID", ErrInvalidSpec, t.ID)
		case !t.Addr.IsValid():
			return fmt.Errorf("%w: target %q: no address", ErrInvalidSpec, t.ID)
		}
		if err := t.Spec.Validate(); err != nil {
			return fmt.Errorf("target %q: %w", t.ID, err)
		}
		seen[t.ID] = true
	}

	c.setMu.Lock()
	defer c.setMu.Unlock()
	now := time.Now()
	var start, stop []*entry
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	next := make(map[string]*entry, len(targets))
	for _, t := range targets {
		old, known := c.targets[t.ID]
		if known && old.target == t {
			next[t.ID] = old
			continue
		}
		e := &entry{target: t, tr: newTracker(t.Spec.Rise, t.Spec.Fall, StateUp, now)}
		if known && t.Spec.Kind != KindNone {
			e.tr.state, e.tr.since = old.tr.state, old.tr.since
		}
		if t.Spec.Kind != KindNone {
			start = append(start, e)
		}
		next[t.ID] = e
	}
	for id, e := range c.targets {
		if next[id] != e {
			stop = append(stop, e)
		}
	}
	// From here on the old entries' probes are discarded (see check).
	c.targets = next
	c.mu.Unlock()

	halt(stop)
	for _, e := range start {
		ctx, cancel := context.WithCancel(context.Background())
		e.cancel, e.done = cancel, make(chan struct{})
		go c.run(ctx, e)
	}
	if len(start)+len(stop) > 0 {
		c.log.Debug("health: targets set", "targets", len(targets), "started", len(start), "stopped", len(stop))
	}
	return nil
}

// Status returns a snapshot of every target, sorted by ID.
func (c *Checker) Status() []Status {
	c.mu.Lock()
	out := make([]Status, 0, len(c.targets))
	for _, e := range c.targets {
		out = append(out, e.status())
	}
	c.mu.Unlock()
	slices.SortFunc(out, func(a, b Status) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// Close stops every prober and waits for them; onChange is not called after
// it returns. Status still reports the last states. Close may be called more
// than once.
func (c *Checker) Close() {
	c.setMu.Lock()
	defer c.setMu.Unlock()
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	c.closed = true
	all := make([]*entry, 0, len(c.targets))
	for _, e := range c.targets {
		all = append(all, e)
	}
	c.mu.Unlock()
	halt(all)
}

// halt cancels the probers of entries, then waits for all of them.
func halt(entries []*entry) {
	for _, e := range entries {
		if e.cancel != nil {
			e.cancel()
		}
	}
	for _, e := range entries {
		if e.done != nil {
			<-e.done
		}
	}
}

// run probes e every interval until ctx ends. The first probe comes after
// a random part of the interval, so that targets set together do not probe
// in lockstep.
func (c *Checker) run(ctx context.Context, e *entry) {
	defer close(e.done)
	interval := e.target.Spec.Interval
	first := time.NewTimer(c.jitter(interval))
	defer first.Stop()
	select {
	case <-ctx.Done():
		return
	case <-first.C:
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		c.check(ctx, e)
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// check runs one probe of e and records it, unless e was stopped or
// replaced meanwhile: an interrupted probe is no evidence about the backend.
func (c *Checker) check(ctx context.Context, e *entry) {
	pctx, cancel := context.WithTimeout(ctx, e.target.Spec.Timeout)
	err := c.probe(pctx, e.target)
	cancel()
	if ctx.Err() != nil {
		return
	}
	c.mu.Lock()
	if c.targets[e.target.ID] != e {
		c.mu.Unlock()
		return
	}
	changed := e.tr.observe(err, time.Now())
	st := e.status()
	c.mu.Unlock()
	if !changed {
		return
	}
	attrs := []any{"target", st.ID, "addr", st.Addr, "check", st.Kind, "port", e.target.Spec.Port}
	if st.State == StateDown {
		c.log.Warn("health: target down", append(attrs, "failures", st.Failures, "err", st.LastError)...)
	} else {
		c.log.Info("health: target up", append(attrs, "successes", st.Successes)...)
	}
	c.onChange(st)
}

// status reads e; the caller holds Checker.mu.
func (e *entry) status() Status {
	return Status{
		ID:        e.target.ID,
		Addr:      e.target.Addr,
		Kind:      e.target.Spec.Kind,
		State:     e.tr.state,
		Since:     e.tr.since,
		LastError: e.tr.lastErr,
		Successes: e.tr.successes,
		Failures:  e.tr.failures,
		Checks:    e.tr.checks,
	}
}
