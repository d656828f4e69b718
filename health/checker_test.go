package health

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// wait bounds every wait of these tests; they never measure time.
const wait = 5 * time.Second

var errDown = errors.New("backend down")

// script answers probes by target ID from a list of results, the last one
// repeated forever, and counts the probes.
type script struct {
	mu      sync.Mutex
	results map[string][]error
	calls   map[string]int
}

func newScript() *script {
	return &script{results: map[string][]error{}, calls: map[string]int{}}
}

// set replaces id's results; nil is a success.
func (s *script) set(id string, results ...error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.results[id] = results
	s.calls[id] = 0
}

func (s *script) probe(_ context.Context, t Target) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.results[t.ID]
	n := s.calls[t.ID]
	s.calls[t.ID]++
	if len(r) == 0 {
		return nil
	}
	return r[min(n, len(r)-1)]
}

func (s *script) count(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[id]
}

// newScripted returns a checker driven by probe, with no start jitter, and
// the channel its onChange calls go to. It is closed when the test ends.
func newScripted(t *testing.T, probe func(context.Context, Target) error) (*Checker, chan Status) {
	t.Helper()
	changes := make(chan Status, 100)
	c := New(nil, func(s Status) { changes <- s })
	c.probe = probe
	c.jitter = func(time.Duration) time.Duration { return 0 }
	t.Cleanup(c.Close)
	return c, changes
}

// fast is a TCP check at the shortest interval.
func fast(rise, fall int) Spec {
	return Spec{Kind: KindTCP, Port: 80, Interval: MinInterval, Timeout: MinInterval, Rise: rise, Fall: fall}
}

func tgt(id string, s Spec) Target {
	return Target{ID: id, Addr: netip.MustParseAddr("198.18.0.11"), Spec: s}
}

func nextChange(t *testing.T, changes <-chan Status) Status {
	t.Helper()
	select {
	case s := <-changes:
		return s
	case <-time.After(wait):
		t.Fatal("no state change")
		return Status{}
	}
}

func noChange(t *testing.T, changes <-chan Status) {
	t.Helper()
	select {
	case s := <-changes:
		t.Fatalf("unexpected change: %+v", s)
	default:
	}
}

func statusOf(t *testing.T, c *Checker, id string) Status {
	t.Helper()
	for _, s := range c.Status() {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no status for %q", id)
	return Status{}
}

// waitChecks waits until id has had at least n checks and returns its status.
func waitChecks(t *testing.T, c *Checker, id string, n uint64) Status {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		s := statusOf(t, c, id)
		if s.Checks >= n {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d checks, want %d", id, s.Checks, n)
		}
		time.Sleep(MinInterval)
	}
}

func TestCheckerFallThenRise(t *testing.T) {
	sc := newScript()
	sc.set("a", errDown, errDown, errDown, nil)
	c, changes := newScripted(t, sc.probe)
	if err := c.Set([]Target{tgt("a", fast(2, 3))}); err != nil {
		t.Fatal(err)
	}
	if s := statusOf(t, c, "a"); s.State != StateUp {
		t.Fatalf("new target is %v, want up", s.State)
	}
	down := nextChange(t, changes)
	if down.ID != "a" || down.State != StateDown || down.Failures != 3 || down.Checks != 3 || down.LastError != errDown.Error() {
		t.Fatalf("down change %+v, want a down after 3 failures", down)
	}
	up := nextChange(t, changes)
	if up.State != StateUp || up.Successes != 2 || up.Checks != 5 || up.LastError != "" {
		t.Fatalf("up change %+v, want a up after 2 successes", up)
	}
	if !up.Since.After(down.Since) {
		t.Errorf("up since %v not after down since %v", up.Since, down.Since)
	}
	waitChecks(t, c, "a", 15)
	noChange(t, changes)
}

func TestCheckerNoFlap(t *testing.T) {
	sc := newScript()
	sc.set("a", nil, errDown, nil, errDown, errDown, nil, errDown, nil)
	c, changes := newScripted(t, sc.probe)
	if err := c.Set([]Target{tgt("a", fast(2, 3))}); err != nil {
		t.Fatal(err)
	}
	s := waitChecks(t, c, "a", 20)
	noChange(t, changes)
	if s.State != StateUp {
		t.Errorf("state %v after scattered failures", s.State)
	}
}

func TestCheckerSet(t *testing.T) {
	sc := newScript()
	sc.set("a", errDown)
	c, changes := newScripted(t, sc.probe)
	none := Spec{}.WithDefaults(80)
	first := []Target{tgt("a", fast(2, 1)), tgt("b", fast(2, 3)), tgt("c", none), tgt("d", fast(2, 3))}
	if err := c.Set(first); err != nil {
		t.Fatal(err)
	}
	if s := nextChange(t, changes); s.ID != "a" || s.State != StateDown {
		t.Fatalf("change %+v, want a down", s)
	}
	aBefore := statusOf(t, c, "a")
	bBefore := waitChecks(t, c, "b", 10)

	// a and c unchanged, b's spec changed, d removed, e new.
	changedB := fast(2, 2)
	if err := c.Set([]Target{tgt("e", fast(2, 3)), first[0], tgt("b", changedB), first[2]}); err != nil {
		t.Fatal(err)
	}
	dCalls := sc.count("d")
	got := c.Status()
	ids := make([]string, len(got))
	for i, s := range got {
		ids[i] = s.ID
	}
	if !slices.Equal(ids, []string{"a", "b", "c", "e"}) {
		t.Fatalf("status IDs %v, want a b c e in order", ids)
	}
	if a := got[0]; a.State != StateDown || !a.Since.Equal(aBefore.Since) || a.Checks < aBefore.Checks {
		t.Errorf("unchanged a lost its state: before %+v, after %+v", aBefore, a)
	}
	if b := got[1]; b.State != StateUp || b.Checks >= bBefore.Checks {
		t.Errorf("changed b kept its counters: before %+v, after %+v", bBefore, b)
	}
	if cs := got[2]; cs.State != StateUp || cs.Checks != 0 || cs.Kind != KindNone {
		t.Errorf("none target c: %+v", cs)
	}
	if e := got[3]; e.State != StateUp {
		t.Errorf("new target e: %+v", e)
	}
	waitChecks(t, c, "a", aBefore.Checks+5) // a's prober kept running
	if n := sc.count("d"); n != dCalls {
		t.Errorf("removed d probed %d more times after Set returned", n-dCalls)
	}

	// A changed spec keeps a down: its fresh counters must reach rise.
	if err := c.Set([]Target{tgt("a", fast(3, 1))}); err != nil {
		t.Fatal(err)
	}
	if a := statusOf(t, c, "a"); a.State != StateDown || !a.Since.Equal(aBefore.Since) {
		t.Fatalf("a after spec change: %+v, want down since %v", a, aBefore.Since)
	}
	sc.set("a", nil)
	if up := nextChange(t, changes); up.ID != "a" || up.State != StateUp || up.Successes != 3 {
		t.Fatalf("change %+v, want a up after 3 successes", up)
	}

	// Becoming a none check brings a target up without onChange.
	sc.set("a", errDown)
	if s := nextChange(t, changes); s.ID != "a" || s.State != StateDown {
		t.Fatalf("change %+v, want a down", s)
	}
	if err := c.Set([]Target{tgt("a", none)}); err != nil {
		t.Fatal(err)
	}
	if a := statusOf(t, c, "a"); a.State != StateUp || a.Kind != KindNone {
		t.Errorf("a as a none check: %+v", a)
	}
	noChange(t, changes)
}

func TestCheckerSetInvalid(t *testing.T) {
	c, _ := newScripted(t, newScript().probe)
	good := tgt("a", fast(2, 3))
	if err := c.Set([]Target{good}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		targets []Target
	}{
		{"empty ID", []Target{tgt("", fast(2, 3))}},
		{"duplicate ID", []Target{tgt("x", fast(2, 3)), tgt("x", fast(2, 3))}},
		{"no address", []Target{{ID: "x", Spec: fast(2, 3)}}},
		{"bad spec", []Target{tgt("x", fast(0, 3))}},
		{"spec without defaults", []Target{tgt("x", Spec{Kind: KindTCP})}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := c.Set(tt.targets)
			if !errors.Is(err, ErrInvalidSpec) {
				t.Fatalf("Set: %v, want ErrInvalidSpec", err)
			}
			if st := c.Status(); len(st) != 1 || st[0].ID != "a" {
				t.Errorf("failed Set changed the targets: %+v", st)
			}
		})
	}
}

func TestCheckerCloseStopsAll(t *testing.T) {
	before := runtime.NumGoroutine()
	sc := newScript()
	c, _ := newScripted(t, sc.probe)
	var targets []Target
	for i := range 20 {
		targets = append(targets, tgt(fmt.Sprintf("t%02d", i), fast(2, 3)))
	}
	if err := c.Set(targets); err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		waitChecks(t, c, tg.ID, 2)
	}
	c.Close()
	calls := sc.count("t00")
	c.Close() // idempotent
	if err := c.Set(targets); !errors.Is(err, ErrClosed) {
		t.Errorf("Set after Close: %v, want ErrClosed", err)
	}
	if len(c.Status()) != len(targets) {
		t.Errorf("Status after Close lost the targets")
	}
	deadline := time.Now().Add(wait)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines after Close, %d before New", runtime.NumGoroutine(), before)
		}
		time.Sleep(MinInterval)
	}
	if n := sc.count("t00"); n != calls {
		t.Errorf("probed %d times after Close", n-calls)
	}
}

// TestCheckerCloseInterruptsProbe: Close does not wait out a probe's
// timeout, and the interrupted probe counts for nothing.
func TestCheckerCloseInterruptsProbe(t *testing.T) {
	started := make(chan struct{}, 1)
	c, changes := newScripted(t, func(ctx context.Context, _ Target) error {
		started <- struct{}{}
		<-ctx.Done()
		return ctx.Err()
	})
	slow := Spec{Kind: KindTCP, Port: 80, Interval: time.Hour, Timeout: time.Hour, Rise: 1, Fall: 1}
	if err := c.Set([]Target{tgt("a", slow)}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(wait):
		t.Fatal("probe did not start")
	}
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(wait):
		t.Fatal("Close waits for a blocked probe")
	}
	if s := statusOf(t, c, "a"); s.Checks != 0 || s.State != StateUp {
		t.Errorf("interrupted probe was counted: %+v", s)
	}
	noChange(t, changes)
}
