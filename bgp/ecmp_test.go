package bgp

import (
	"context"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/lab"
	"github.com/xlbproject/xlb/lab/ecmp"
	"github.com/xlbproject/xlb/lab/labtest"
)

// Bounds of the waits below: generous, since the machine is shared; the
// expected times are milliseconds for an UPDATE and 3s for the hold time.
const (
	convergeTimeout = 30 * time.Second
	holdTime        = 3 * time.Second
	password        = "xlb-lab-md5"
)

// nobody is an address on the fabric segment where no host answers.
var nobody = netip.MustParseAddr("198.18.0.250")

// speakerConfig is balancer i's configuration: one eBGP session to the
// router over IPv4 carrying both families, the IPv6 next hop set since an
// IPv4 session has no IPv6 address of its own to offer.
func speakerConfig(l *ecmp.Lab, i int) Config {
	lb := l.Balancers[i]
	return Config{
		ASN:      l.BalancerASN,
		RouterID: lb.Addr,
		Peers: []Peer{{
			Address: l.RouterAddr, ASN: l.RouterASN,
			HoldTime: holdTime, ConnectRetry: time.Second,
			Password: password, NextHop6: lb.Addr6,
		}},
	}
}

func waitRoute(t *testing.T, l *ecmp.Lab, prefix netip.Prefix, want ...netip.Addr) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), convergeTimeout)
	defer cancel()
	if err := l.WaitNexthops(ctx, prefix, want...); err != nil {
		t.Fatal(err)
	}
}

func waitProtocol(t *testing.T, l *ecmp.Lab, name, what string, ok func(ecmp.Protocol) bool) ecmp.Protocol {
	t.Helper()
	deadline := time.Now().Add(convergeTimeout)
	for {
		protos, err := l.BIRD.Protocols()
		if err != nil {
			t.Fatal(err)
		}
		if p := protos[name]; ok(p) {
			return p
		}
		if time.Now().After(deadline) {
			t.Fatalf("bird protocol %s: not %s within %v: %+v", name, what, convergeTimeout, protos[name])
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// spread makes 60 connections from a client to vip, each from a new
// source port, and checks that exactly the balancers named in want
// answered. With three equal next hops, one is missed by chance with a
// probability of 3*(2/3)^60, about 1e-10.
func spread(t *testing.T, l *ecmp.Lab, vip netip.Addr, want ...string) {
	t.Helper()
	client := lab.HTTPClient(l.ClientHosts[0])
	got := map[string]int{}
	for range 60 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		name, err := lab.Get(ctx, client, "http://"+netip.AddrPortFrom(vip, 80).String()+"/")
		cancel()
		if err != nil {
			t.Fatalf("client to %v: %v", vip, err)
		}
		got[name]++
	}
	names := slices.Sorted(maps.Keys(got))
	if !slices.Equal(names, want) {
		t.Errorf("60 flows to %v answered by %v, want each of %v", vip, got, want)
	}
	t.Logf("60 flows to %v: %v", vip, got)
}

func established(p ecmp.Protocol) bool { return p.Info == "Established" }

// TestECMP runs three speakers, each in its balancer's namespace, against
// a real BIRD 2 router (TCP MD5 on every session) and checks what the
// router installs in its kernel: a 3-way multipath route per VIP and
// family over which client flows spread by their ports, a 2-way one after
// one balancer withdraws, an unreachable peer counted and logged, the
// route kept whole while a peer is added by Reconfigure (the existing
// session untouched, a wrong-ASN peer counted and logged), the
// withdraw-drain-close order of Shutdown, removal at hold-time expiry of
// a balancer that goes silent, and Close withdrawing.
func TestECMP(t *testing.T) {
	testenv.Root(t, "builds network namespaces and runs bird in one")
	testenv.Tool(t, "bird")
	testenv.Tool(t, "birdc")
	prefix := labtest.Prefix("xlbbgp")
	l, err := ecmp.New(ecmp.Spec{Prefix: prefix, Balancers: 3, HoldTime: holdTime, Password: password, VIPOnBalancers: true})
	if err != nil {
		t.Fatalf("ecmp.New: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("lab Close: %v", err)
		}
		if left, err := lab.Leftovers(prefix); err != nil || len(left) > 0 {
			t.Errorf("after Close, namespaces left: %v %v", left, err)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bird log:\n%s", l.BIRD.Log())
		}
	})

	vip, vip6 := netip.PrefixFrom(ecmp.VIP, 32), netip.PrefixFrom(ecmp.VIP6, 128)
	routes := []Route{{Prefix: vip, MED: 10, Communities: []Community{65001<<16 | 100}}, {Prefix: vip6}}
	var lbs []*child
	var nh4, nh6 []netip.Addr
	for i, h := range l.Balancers {
		cfg := speakerConfig(l, i)
		if i == 0 {
			// An unreachable router: counted, logged, harmless.
			cfg.Peers = append(cfg.Peers, Peer{Address: nobody, ASN: l.RouterASN, ConnectRetry: time.Second})
		}
		lbs = append(lbs, startChild(t, h, cfg))
		nh4, nh6 = append(nh4, h.Addr), append(nh6, h.Addr6)
	}
	for i, c := range lbs {
		waitProtocol(t, l, ecmp.ProtocolName(i, false), "established", established)
		c.announce(t, routes...)
	}
	waitRoute(t, l, vip, nh4...)
	waitRoute(t, l, vip6, nh6...)

	// The router got the attributes.
	out, err := l.BIRD.Control("show route " + vip.String() + " all")
	if err != nil {
		t.Fatal(err)
	}
	kernel, err := l.Router.Command(context.Background(), "ip", "route", "show", vip.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("ip route: %v: %s", err, kernel)
	}
	kernel6, err := l.Router.Command(context.Background(), "ip", "-6", "route", "show", vip6.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("ip -6 route: %v: %s", err, kernel6)
	}
	t.Logf("router: birdc show route %s all:\n%s\nip route show %s:\n%s\nip -6 route show %s:\n%s", vip, out, vip, kernel, vip6, kernel6)
	if !strings.Contains(out, "(65001,100)") || !strings.Contains(out, "BGP.med: 10") {
		t.Errorf("router's route lacks the community or MED:\n%s", out)
	}

	// The router spreads flows over all three by their ports.
	for _, h := range l.Balancers {
		for _, a := range []netip.Addr{ecmp.VIP, ecmp.VIP6} {
			b, err := lab.ServeHTTP(h, netip.AddrPortFrom(a, 80).String(), h.Name)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { b.Close() })
		}
	}
	spread(t, l, ecmp.VIP, "lb1", "lb2", "lb3")
	spread(t, l, ecmp.VIP6, "lb1", "lb2", "lb3")

	// Announcing the same set again sends nothing.
	before := lbs[0].status(t).Peers[0]
	lbs[0].announce(t, routes...)
	time.Sleep(200 * time.Millisecond)
	after := lbs[0].status(t).Peers[0]
	if after.UpdatesSent != before.UpdatesSent || after.Advertised != 2 {
		t.Errorf("announcing the same routes again: updates sent %d -> %d, advertised %d (want unchanged, 2)", before.UpdatesSent, after.UpdatesSent, after.Advertised)
	}

	t.Run("unreachable peer", func(t *testing.T) {
		st := lbs[0].waitStatus(t, convergeTimeout, "connection error", func(st Status) bool {
			return st.Peers[1].Errors > 0 && strings.Contains(st.Peers[1].LastError, "failed to connect")
		})
		if st.Peers[1].State == StateEstablished || st.Peers[0].State != StateEstablished {
			t.Errorf("unexpected states: %s", fmtStatus(st))
		}
		if !strings.Contains(lbs[0].logs.String(), "level=WARN msg=\"gobgp: failed to connect\"") {
			t.Error("the first failed connection is not logged as a warning")
		}
	})

	t.Run("withdraw one", func(t *testing.T) {
		lbs[0].announce(t, routes[1]) // keep only the IPv6 VIP
		waitRoute(t, l, vip, nh4[1:]...)
		waitRoute(t, l, vip6, nh6...)
		spread(t, l, ecmp.VIP, "lb2", "lb3")
		lbs[0].announce(t, routes...)
		waitRoute(t, l, vip, nh4...)
	})

	t.Run("reconfigure keeps the session", func(t *testing.T) {
		lb := lbs[2]
		first := lb.status(t).Peers[0]
		bird := waitProtocol(t, l, ecmp.ProtocolName(2, false), "established", established)
		if first.State != StateEstablished {
			t.Fatalf("before: %s", fmtStatus(lb.status(t)))
		}
		// The other speakers' counters, which the change must not move
		// (a failed first connection attempt at start counts too).
		others := map[string]PeerStatus{}
		for _, s := range []*child{lbs[0], lbs[1]} {
			others[s.name] = s.status(t).Peers[0]
		}
		// A second session over IPv6 whose ASN is wrong: the router
		// answers as 65000, the speaker expects 65099.
		cfg := speakerConfig(l, 2)
		cfg.Peers = append(cfg.Peers, Peer{Address: l.RouterAddr6, ASN: 65099, HoldTime: holdTime, ConnectRetry: time.Second, Password: password})
		lb.must(t, request{Op: "reconfigure", Config: cfg})
		st := lb.waitStatus(t, convergeTimeout, "error for the wrong ASN", func(st Status) bool {
			return len(st.Peers) == 2 && st.Peers[1].Errors > 0 && strings.Contains(st.Peers[1].LastError, "bad peer as")
		})
		if st.Peers[1].State == StateEstablished {
			t.Errorf("wrong-ASN session established: %s", fmtStatus(st))
		}
		if !strings.Contains(lb.logs.String(), `level=WARN msg="gobgp: sent notification" component=bgp Topic=Peer Key=2001:db8::1`) {
			t.Errorf("the refused OPEN is not logged as a warning")
		}
		// Now with the right ASN: the new session comes up.
		cfg.Peers[1].ASN = l.RouterASN
		lb.must(t, request{Op: "reconfigure", Config: cfg})
		waitProtocol(t, l, ecmp.ProtocolName(2, true), "established", established)
		st = lb.waitStatus(t, convergeTimeout, "IPv6 session", func(st Status) bool { return st.Peers[1].State == StateEstablished })
		// The first session never went down, on either side.
		if p := st.Peers[0]; p.State != StateEstablished || p.Established != first.Established || p.Drops != first.Drops || !p.Since.Equal(first.Since) {
			t.Errorf("first session changed by Reconfigure: before %s; after %s", fmtStatus(Status{Peers: []PeerStatus{first}}), fmtStatus(st))
		}
		if p := waitProtocol(t, l, ecmp.ProtocolName(2, false), "established", established); !p.Since.Equal(bird.Since) {
			t.Errorf("router's session with lb3 restarted: since %v, was %v", p.Since, bird.Since)
		}
		for _, s := range []*child{lbs[0], lbs[1]} {
			before := others[s.name]
			if p := s.status(t).Peers[0]; p.State != StateEstablished || p.Errors != before.Errors || p.Established != before.Established || !p.Since.Equal(before.Since) {
				t.Errorf("speaker %s affected: before %s; after %s", s.name, fmtStatus(Status{Peers: []PeerStatus{before}}), fmtStatus(s.status(t)))
			}
		}
		waitRoute(t, l, vip, nh4...)
		waitRoute(t, l, vip6, nh6...)
	})

	t.Run("shutdown withdraws, drains, then closes", func(t *testing.T) {
		lb := lbs[1]
		done := make(chan response, 1)
		go func() { done <- lb.call(t, request{Op: "shutdown", Drain: 6 * time.Second}) }()
		// During the drain the routes are gone but the session is up.
		waitRoute(t, l, vip, nh4[0], nh4[2])
		waitRoute(t, l, vip6, nh6[0], nh6[2])
		protos, err := l.BIRD.Protocols()
		if err != nil {
			t.Fatal(err)
		}
		if p := protos[ecmp.ProtocolName(1, false)]; !established(p) {
			t.Errorf("session closed before the drain ended: %+v", p)
		}
		select {
		case res := <-done:
			if err := res.err(); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
		case <-time.After(6*time.Second + convergeTimeout):
			t.Fatal("shutdown did not return")
		}
		waitProtocol(t, l, ecmp.ProtocolName(1, false), "down", func(p ecmp.Protocol) bool { return !established(p) })
	})

	t.Run("hold time expiry", func(t *testing.T) {
		lbs[2].freeze(t)
		waitRoute(t, l, vip, nh4[0])
		waitRoute(t, l, vip6, nh6[0])
		out, err := l.BIRD.Control("show protocols all " + ecmp.ProtocolName(2, false))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, "Hold timer expired") {
			t.Errorf("router did not drop lb3 for its hold timer:\n%s", out)
		}
		lbs[2].kill()
	})

	t.Run("close withdraws", func(t *testing.T) {
		lbs[0].must(t, request{Op: "close"})
		waitRoute(t, l, vip)
		waitRoute(t, l, vip6)
	})
}
