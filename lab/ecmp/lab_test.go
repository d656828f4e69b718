package ecmp

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/lab"
	"github.com/xlbproject/xlb/lab/labtest"
)

// newTestLab builds an ECMP lab for t and removes it when t ends, checking
// that nothing is left; on failure it shows bird's log first.
func newTestLab(t *testing.T, spec Spec) *Lab {
	t.Helper()
	testenv.Root(t, "builds network namespaces and runs bird in one")
	testenv.Tool(t, "bird")
	testenv.Tool(t, "birdc")
	spec.Prefix = labtest.Prefix("xlbecmp")
	l, err := New(spec)
	if err != nil {
		t.Fatalf("ecmp.New: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		if left, err := lab.Leftovers(spec.Prefix); err != nil || len(left) > 0 {
			t.Errorf("after Close, namespaces left: %v %v", left, err)
		}
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("bird log:\n%s", l.BIRD.Log())
		}
	})
	return l
}

// TestLab checks the topology without speakers: the router forwards
// between the segments, BIRD runs with a passive session per balancer and
// transport, and there is no route to the VIP yet.
func TestLab(t *testing.T) {
	l := newTestLab(t, Spec{Balancers: 2, Clients: 2})
	if len(l.Balancers) != 2 || len(l.Backends) != 1 || len(l.ClientHosts) != 2 {
		t.Fatalf("hosts: %d balancers, %d backends, %d clients", len(l.Balancers), len(l.Backends), len(l.ClientHosts))
	}
	protos, err := l.BIRD.Protocols()
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		for _, v6 := range []bool{false, true} {
			p, ok := protos[ProtocolName(i, v6)]
			if !ok || p.Proto != "BGP" || !strings.Contains(p.Info, "Passive") {
				t.Errorf("protocol %s = %+v, want a passive BGP session", ProtocolName(i, v6), p)
			}
		}
	}
	backend := l.Backends[0]
	for _, addr := range []netip.Addr{backend.Addr, backend.Addr6} {
		ln, err := backend.Listen("tcp", net.JoinHostPort(addr.String(), "8080"))
		if err != nil {
			t.Fatal(err)
		}
		for _, client := range l.ClientHosts {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			c, err := client.Dial(ctx, "tcp", ln.Addr().String())
			cancel()
			if err != nil {
				t.Errorf("%s to backend %s through the router: %v", client.Name, addr, err)
			} else {
				c.Close()
			}
		}
		ln.Close()
	}
	for _, vip := range []netip.Prefix{netip.PrefixFrom(VIP, 32), netip.PrefixFrom(VIP6, 128)} {
		if nh, err := l.Nexthops(vip); err != nil || len(nh) != 0 {
			t.Errorf("route to %s before any announcement: %v, %v", vip, nh, err)
		}
	}
}
