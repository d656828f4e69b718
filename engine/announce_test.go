package engine

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xlbproject/xlb/bgp"
	"github.com/xlbproject/xlb/health"
)

// sink records every set of routes it is given, as text.
type sink struct {
	mu   sync.Mutex
	sets []string
	news chan struct{}
}

func newSink() *sink { return &sink{news: make(chan struct{}, 100)} }

func (s *sink) Announce(routes []bgp.Route) error {
	var parts []string
	for _, r := range routes {
		parts = append(parts, fmt.Sprintf("%v%v/%d", r.Prefix, r.Communities, r.MED))
	}
	s.mu.Lock()
	s.sets = append(s.sets, strings.Join(parts, " "))
	s.mu.Unlock()
	s.news <- struct{}{}
	return nil
}

// await waits until the last set announced is want.
func (s *sink) await(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		s.mu.Lock()
		last := "(none)"
		if len(s.sets) > 0 {
			last = s.sets[len(s.sets)-1]
		}
		s.mu.Unlock()
		if last == want {
			return
		}
		select {
		case <-s.news:
		case <-deadline:
			t.Fatalf("announced %q, want %q", last, want)
		}
	}
}

// The routes follow the engine: a VIP is announced while one of its
// backends is up, VIPs on one address are one route, a reload adds and
// removes routes and changes their attributes, StopAnnouncing withdraws
// everything, and a failed datapath withdraws at once.
func TestAnnounceFollowsTheEngine(t *testing.T) {
	bgpTable := "[bgp]\nasn = 65001\nrouter_id = \"198.18.0.2\"\ncommunities = [\"65001:1\"]\n"
	vip3on81 := strings.Replace(vipText(3, 11), "port = 80", "port = 81", 1)
	cfg := parse(t, "", bgpTable, vipText(1, 11, 12), vipText(2, 11), vip3on81)
	e := newOffline(t, cfg, false, 4096)
	s := newSink()
	e.AnnounceTo(s)
	all := "198.18.100.1/32[65001:1]/0 198.18.100.2/32[65001:1]/0 198.18.100.3/32[65001:1]/0"
	s.await(t, all)

	down := func(v, b int, state health.State) {
		vip := e.cur.cfg.VIPs[v]
		e.onHealth(health.Status{ID: healthID(vip, vip.Backends[b].Address), State: state})
		e.applyHealth()
	}
	down(0, 0, health.StateDown)
	s.await(t, all) // one of two backends down: still served
	down(0, 1, health.StateDown)
	s.await(t, "198.18.100.2/32[65001:1]/0 198.18.100.3/32[65001:1]/0")
	down(0, 1, health.StateUp)
	s.await(t, all)

	// Reload: VIP 2 goes, VIP 4 comes with its own attributes; VIP 3 on
	// port 80 too, whose backend is down: port 81's still holds the route.
	vip4 := vipText(4, 11) + "[vip.bgp]\ncommunities = []\nmed = 7\n"
	next := parse(t, "", bgpTable, vipText(1, 11, 12), vip3on81, vipText(3, 12), vip4)
	if _, err := e.Reload(next); err != nil {
		t.Fatal(err)
	}
	want := "198.18.100.1/32[65001:1]/0 198.18.100.3/32[65001:1]/0 198.18.100.4/32[]/7"
	s.await(t, want)
	down(2, 0, health.StateDown)
	down(1, 0, health.StateUp) // no news: nothing changes
	s.await(t, want)
	down(1, 0, health.StateDown)
	s.await(t, "198.18.100.1/32[65001:1]/0 198.18.100.4/32[]/7")

	if err := e.StopAnnouncing(); err != nil {
		t.Fatal(err)
	}
	s.await(t, "")
	if err := e.StopAnnouncing(); err != nil { // idempotent
		t.Fatal(err)
	}

	// A failed datapath withdraws without being asked.
	f := newOffline(t, parse(t, "", bgpTable, vipText(1, 11)), false, 4096)
	fs := newSink()
	f.AnnounceTo(fs)
	fs.await(t, "198.18.100.1/32[65001:1]/0")
	f.fail(errors.New("injected"))
	fs.await(t, "")
	if r := f.Routes(); r != nil {
		t.Errorf("routes of a failed datapath: %v", r)
	}
	if err := f.StopAnnouncing(); err != nil {
		t.Fatal(err)
	}
}
