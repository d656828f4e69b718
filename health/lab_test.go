package health

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/xlbproject/xlb/lab"
	"github.com/xlbproject/xlb/lab/labtest"
)

// TestLabBackend probes a backend in another namespace, as xlb does from
// the balancer's: TCP and HTTP checks go down when the server stops and up
// when it comes back, each after exactly fall or rise probes.
func TestLabBackend(t *testing.T) {
	lb := netip.MustParsePrefix("198.18.0.1/24")
	backend := netip.MustParsePrefix("198.18.0.11/24")
	vip := netip.MustParsePrefix("198.18.1.1/32")
	l := labtest.New(t, lab.Spec{
		Prefix: labtest.Prefix("xlbhealth"),
		Hosts: []lab.HostSpec{
			{Name: "lb", Addr: lb},
			{Name: "b1", Addr: backend, LoAddrs: []netip.Prefix{vip}},
		},
	})
	hosts := l.HostList()
	lbHost, b1 := hosts[0], hosts[1]
	if lbHost.Name != "lb" || b1.Name != "b1" {
		t.Fatalf("hosts %s %s, want lb b1", lbHost.Name, b1.Name)
	}

	const port = 8080
	// The server listens on all addresses, as a checked backend must: the
	// probes go to its own address, not to the VIP.
	listen := fmt.Sprintf("0.0.0.0:%d", port)
	srv, err := lab.ServeHTTP(b1, listen, "b1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })

	changes := make(chan Status, 100)
	c := New(nil, func(s Status) { changes <- s }, WithDial(lbHost.Dial))
	t.Cleanup(c.Close)
	spec := Spec{Interval: 50 * time.Millisecond, Timeout: 50 * time.Millisecond, Rise: 2, Fall: 3}
	tcp, web := spec, spec
	tcp.Kind, web.Kind = KindTCP, KindHTTP
	targets := []Target{
		{ID: "http", Addr: backend.Addr(), Spec: web.WithDefaults(port)},
		{ID: "tcp", Addr: backend.Addr(), Spec: tcp.WithDefaults(port)},
	}
	if err := c.Set(targets); err != nil {
		t.Fatal(err)
	}
	for _, tg := range targets {
		if s := waitChecks(t, c, tg.ID, 3); s.State != StateUp || s.Failures != 0 {
			t.Fatalf("%s with the server running: %+v", tg.ID, s)
		}
	}
	noChange(t, changes)

	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	for range targets {
		s := nextChange(t, changes)
		if s.State != StateDown || s.Failures != 3 || s.LastError == "" {
			t.Errorf("server stopped: %+v, want down after 3 failures", s)
		}
		t.Logf("%s down: %s", s.ID, s.LastError)
	}

	srv, err = lab.ServeHTTP(b1, listen, "b1")
	if err != nil {
		t.Fatal(err)
	}
	for range targets {
		if s := nextChange(t, changes); s.State != StateUp || s.Successes != 2 {
			t.Errorf("server back: %+v, want up after 2 successes", s)
		}
	}
	if srv.Requests() == 0 {
		t.Error("the HTTP check made no request")
	}

}
