package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/bgp"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/engine"
	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/lab"
	"github.com/xlbproject/xlb/lab/ecmp"
	"github.com/xlbproject/xlb/lab/xlbbin"
)

// The scale-out tests' VIPs: vip1 on every port (HTTP on 80, the echo
// streams on streamPort), vip2 on 8080 for health-driven withdrawal, vip3 added by a
// reload.
var (
	soVIP1 = ecmp.VIP
	soVIP2 = netip.MustParseAddr("198.18.2.2")
	soVIP3 = netip.MustParseAddr("198.18.2.3")
)

func host32(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, 32) }

// TestScaleOut runs three xlb balancers behind a BIRD router with ECMP, all
// from the same config with the backends in different orders, and checks
// what issue 11 asks of them, in one lab: the spread and agreement with
// `xlb lookup`, streams surviving kill -9 and SIGTERM of a balancer,
// health-driven withdrawal, a reload of VIPs and peers, and bad peers.
func TestScaleOut(t *testing.T) {
	testenv.Root(t, "creates network namespaces, runs BIRD and xlb, attaches XDP programs")
	testenv.Tool(t, "bird")
	bin, err := xlbbin.Path()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	l, err := newSOLab("xso", bin, dir, 3, 3, soVIP2, soVIP3)
	if err != nil {
		t.Fatal(err)
	}
	logs := make([]*lockedBuffer, 3)
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			for i, lg := range logs {
				t.Logf("lb%d log:\n%s", i+1, lg)
			}
			if text, err := os.ReadFile(filepath.Join(l.BIRD.Dir, "bird.log")); err == nil {
				t.Logf("bird log:\n%s", text)
			}
		}
	})
	// Streams: every backend names itself, then echoes (flows_test.go).
	startEchoServers(t, l.Backends, soVIP1)
	// vip2's port: a server per backend that the health test stops.
	vip2Servers := make([]*lab.Backend, len(l.Backends))
	for i, h := range l.Backends {
		if vip2Servers[i], err = lab.ServeHTTP(h, "0.0.0.0:8080", h.Name); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for _, s := range vip2Servers {
			s.Close()
		}
	})

	vips := []soVIP{{soVIP1, 0, []int{1, 1, 2}}, {soVIP2, 8080, []int{1, 1, 1}}}
	const drain = 2 * time.Second
	// lb3 also has an unreachable peer: counted and logged, nothing else.
	unreachable := "[[bgp.peer]]\naddress = \"198.18.0.250\"\nasn = 65000\nhold_time = \"3s\"\nconnect_retry = \"1s\"\n\n"
	cfgs := []string{l.config(0, vips, drain, ""), l.config(1, vips, drain, ""), l.config(2, vips, drain, unreachable)}
	for i := range l.Balancers {
		logs[i] = &lockedBuffer{}
		if err := l.start(i, cfgs[i], logs[i]); err != nil {
			t.Fatal(err)
		}
	}
	lbs := make([]netip.Addr, len(l.Balancers))
	for i, b := range l.Balancers {
		lbs[i] = b.Addr
	}
	waitRoute := func(t *testing.T, vip netip.Addr, want ...netip.Addr) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := l.WaitNexthops(ctx, host32(vip), want...); err != nil {
			t.Fatal(err)
		}
	}
	waitRoute(t, soVIP1, lbs...)
	waitRoute(t, soVIP2, lbs...)
	client := l.ClientHosts[0]
	resolver, err := engine.NewResolver(mustParse(t, cfgs[0]))
	if err != nil {
		t.Fatal(err)
	}
	// Every resolver agrees: the tables do not depend on the order.
	for i := 1; i < 3; i++ {
		r, err := engine.NewResolver(mustParse(t, cfgs[i]))
		if err != nil {
			t.Fatal(err)
		}
		for port := uint16(1000); port < 1100; port++ {
			src := netip.AddrPortFrom(netip.MustParseAddr("198.18.1.2"), port)
			_, a, _ := resolver.Lookup(config.TCP, src, netip.AddrPortFrom(soVIP1, 80))
			_, b, _ := r.Lookup(config.TCP, src, netip.AddrPortFrom(soVIP1, 80))
			if a.Address != b.Address {
				t.Fatalf("lb1 and lb%d disagree on %v: %v, %v", i+1, src, a.Address, b.Address)
			}
		}
	}
	backendName := map[netip.Addr]string{}
	for _, h := range l.Backends {
		backendName[h.Addr] = h.Name
	}

	t.Run("300 connections spread and agree with lookup", func(t *testing.T) {
		before, err := l.rxPackets()
		if err != nil {
			t.Fatal(err)
		}
		served := map[string]int{}
		for range 300 {
			name, src, err := vipGet(client, soVIP1, 80)
			if err != nil {
				t.Fatal(err)
			}
			_, want, err := resolver.Lookup(config.TCP, src, netip.AddrPortFrom(soVIP1, 80))
			if err != nil {
				t.Fatal(err)
			}
			if name != backendName[want.Address] {
				t.Fatalf("connection from %v served by %s, xlb lookup says %s", src, name, backendName[want.Address])
			}
			served[name]++
		}
		after, err := l.rxPackets()
		if err != nil {
			t.Fatal(err)
		}
		var share []string
		for i := range l.Balancers {
			d := after[i] - before[i]
			share = append(share, fmt.Sprintf("lb%d:%d", i+1, d))
			if d == 0 {
				t.Errorf("lb%d carried no packet", i+1)
			}
		}
		t.Logf("300 connections: backends %v; packets per balancer %s", served, strings.Join(share, " "))
		// lb3's unreachable peer is counted (once its first connection
		// attempt times out) and does not stop forwarding.
		deadline := time.Now().Add(30 * time.Second)
		for {
			st, err := l.bgpStatus(2)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Peers) == 2 && st.Peers[0].State == bgp.StateEstablished && st.Peers[1].State != bgp.StateEstablished && st.Peers[1].Errors > 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("lb3 peers: %+v", st.Peers)
			}
			time.Sleep(200 * time.Millisecond)
		}
		if !strings.Contains(logs[2].String(), "198.18.0.250") {
			t.Errorf("lb3 logged nothing about its unreachable peer")
		}
		out := runXLBCmd(t, bin, "bgp", "--socket", l.xlbs[2].sock)
		t.Logf("xlb bgp (lb3):\n%s", out)
		// The same on lb3's metrics endpoint.
		resp, err := lab.HTTPClient(l.Balancers[2]).Get("http://" + soMetrics + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		text, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		body := string(text)
		for _, want := range []string{`xlb_bgp_peer_up{peer="198.18.0.1"} 1`, `xlb_bgp_peer_up{peer="198.18.0.250"} 0`, "xlb_bgp_routes_announced 2"} {
			if !strings.Contains(body, want) {
				t.Errorf("lb3's metrics lack %q", want)
			}
		}
	})

	// kill -9: the kernel closes the BGP session at once. Frozen (SIGSTOP,
	// then kill -9 once withdrawn): nothing closes it, the router drops it
	// when the 3s hold time expires, and flows sent to the frozen balancer
	// meanwhile are lost and retransmitted. SIGTERM: the graceful stop.
	for _, tt := range []struct {
		name string
		sig  syscall.Signal
	}{{"kill -9", syscall.SIGKILL}, {"frozen until hold time expiry", syscall.SIGSTOP}, {"SIGTERM", syscall.SIGTERM}} {
		sig := tt.sig
		t.Run("streams survive "+tt.name, func(t *testing.T) {
			const victim = 1 // lb2
			streams := startStreams(t, client, soVIP1, 30)
			time.Sleep(time.Second) // every stream under way
			var attempts, failed atomic.Int64
			stopDial := make(chan struct{})
			dialDone := make(chan struct{})
			go func() { // new connections while the balancer stops
				defer close(dialDone)
				for {
					select {
					case <-stopDial:
						return
					default:
					}
					attempts.Add(1)
					if _, _, err := vipGet(client, soVIP1, 80); err != nil {
						failed.Add(1)
						t.Logf("connection during the stop: %v", err)
					}
					time.Sleep(20 * time.Millisecond)
				}
			}()
			t0 := time.Now()
			stopped := make(chan error, 1)
			if sig == syscall.SIGSTOP {
				if err := l.xlbs[victim].cmd.Process.Signal(sig); err != nil {
					t.Fatal(err)
				}
			} else {
				go func() { stopped <- l.stop(victim, sig, 30*time.Second) }()
			}
			rest := []netip.Addr{lbs[0], lbs[2]}
			waitRoute(t, soVIP1, rest...)
			withdrawn := time.Since(t0)
			if sig == syscall.SIGSTOP {
				stopped <- l.stop(victim, syscall.SIGKILL, 30*time.Second)
			}
			if err := <-stopped; err != nil {
				t.Fatal(err)
			}
			exited := time.Since(t0)
			if sig == syscall.SIGTERM && (exited < drain || withdrawn >= exited) {
				t.Errorf("SIGTERM: route withdrawn after %v, xlb exited after %v: want the withdrawal first, then the %v drain", withdrawn, exited, drain)
			}
			time.Sleep(2 * time.Second) // the streams run on the others
			close(stopDial)
			<-dialDone
			streams.finish(t)
			var total int64
			for _, s := range streams.list {
				total += s.verified.Load()
			}
			t.Logf("%s: route withdrawn after %v, xlb exited after %v; %d streams echoed %d bytes whole and in order; %d new connections during the stop, %d failed",
				tt.name, withdrawn.Round(10*time.Millisecond), exited.Round(10*time.Millisecond), len(streams.list), total, attempts.Load(), failed.Load())
			if sig == syscall.SIGTERM && failed.Load() > 0 {
				t.Errorf("%d of %d connection attempts failed during a graceful stop", failed.Load(), attempts.Load())
			}
			// Back to three for what follows.
			if err := l.start(victim, cfgs[victim], logs[victim]); err != nil {
				t.Fatal(err)
			}
			waitRoute(t, soVIP1, lbs...)
		})
	}

	t.Run("health withdraws one VIP", func(t *testing.T) {
		for _, s := range vip2Servers {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
		}
		t0 := time.Now()
		waitRoute(t, soVIP2) // no route left
		t.Logf("vip2 withdrawn by every balancer %v after its servers stopped (fall 3 x 200ms + BGP)", time.Since(t0).Round(10*time.Millisecond))
		if got, err := l.Nexthops(host32(soVIP1)); err != nil || len(got) != 3 {
			t.Errorf("vip1 next hops %v (%v), want all three", got, err)
		}
		for i, h := range l.Backends {
			var err error
			if vip2Servers[i], err = lab.ServeHTTP(h, "0.0.0.0:8080", h.Name); err != nil {
				t.Fatal(err)
			}
		}
		t0 = time.Now()
		waitRoute(t, soVIP2, lbs...)
		t.Logf("vip2 announced again %v after its servers came back (rise 2 x 200ms + BGP)", time.Since(t0).Round(10*time.Millisecond))
	})

	t.Run("reload adds and removes VIPs and a peer", func(t *testing.T) {
		protos := func() map[string]ecmp.Protocol {
			p, err := l.BIRD.Protocols()
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		before := protos()
		// lb1: vip2 goes, vip3 comes, and a second session to the router
		// over IPv6 that carries the IPv4 routes with lb1's next hop.
		v6peer := fmt.Sprintf("[[bgp.peer]]\naddress = %q\nasn = %d\nhold_time = \"3s\"\nconnect_retry = \"1s\"\nnext_hop = %q\n\n", l.RouterAddr6, l.RouterASN, lbs[0])
		next := l.config(0, []soVIP{vips[0], {soVIP3, 80, []int{1, 1, 1}}}, drain, v6peer)
		reload(t, bin, l, 0, next)
		waitRoute(t, soVIP3, lbs[0])
		waitRoute(t, soVIP2, lbs[1], lbs[2])
		waitEstablished(t, l, ecmp.ProtocolName(0, true))
		// Back: the IPv6 peer goes, vip2 returns, vip3 goes.
		reload(t, bin, l, 0, cfgs[0])
		waitRoute(t, soVIP3)
		waitRoute(t, soVIP2, lbs...)
		after := protos()
		for i := range l.Balancers {
			name := ecmp.ProtocolName(i, false)
			if before[name].Since != after[name].Since || after[name].Info != "Established" {
				t.Errorf("session %s flapped: %+v, then %+v", name, before[name], after[name])
			}
		}
		if p := after[ecmp.ProtocolName(0, true)]; p.Info == "Established" {
			t.Errorf("the removed IPv6 peer is still up: %+v", p)
		}
		st, err := l.bgpStatus(0)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Peers) != 1 || st.Peers[0].Established != 1 || st.Peers[0].Drops != 0 {
			t.Errorf("lb1's router session after two reloads: %+v", st.Peers)
		}
	})

	t.Run("wrong ASN peer is counted and forwarding goes on", func(t *testing.T) {
		bad := fmt.Sprintf("[[bgp.peer]]\naddress = %q\nasn = 65099\nhold_time = \"3s\"\nconnect_retry = \"1s\"\nnext_hop = %q\n\n", l.RouterAddr6, lbs[1])
		reload(t, bin, l, 1, l.config(1, vips, drain, bad))
		deadline := time.Now().Add(20 * time.Second)
		for {
			st, err := l.bgpStatus(1)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Peers) == 2 && st.Peers[1].Errors > 0 {
				t.Logf("lb2's wrong-ASN peer: state %v, errors %d, last error %q", st.Peers[1].State, st.Peers[1].Errors, st.Peers[1].LastError)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the wrong-ASN peer was not counted: %+v", st.Peers)
			}
			time.Sleep(200 * time.Millisecond)
		}
		for range 30 {
			if _, _, err := vipGet(client, soVIP1, 80); err != nil {
				t.Fatal(err)
			}
		}
		if got, err := l.Nexthops(host32(soVIP1)); err != nil || len(got) != 3 {
			t.Errorf("vip1 next hops %v (%v), want all three", got, err)
		}
		reload(t, bin, l, 1, cfgs[1])
	})

	t.Run("malformed bgp section", func(t *testing.T) {
		bad := strings.Replace(strings.Replace(cfgs[0], "hold_time = \"3s\"", "hold_time = \"2s\"", 1), "asn = 65000", "asn = 23456", 1)
		file := filepath.Join(dir, "bad.toml")
		if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := l.Balancers[0].Command(context.Background(), bin, "check", "-c", file)
		out, err := cmd.CombinedOutput()
		var ee interface{ ExitCode() int }
		if !errors.As(err, &ee) || ee.ExitCode() != exitConfig {
			t.Fatalf("xlb check: %v\n%s", err, out)
		}
		for _, want := range []string{file + ":18: bgp.peer[0].asn: 23456 is reserved", file + ":19: bgp.peer[0].hold_time: 2s: want whole seconds"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("xlb check output lacks %q:\n%s", want, out)
			}
		}
		// The running instance refuses the file on reload, and goes on.
		if err := os.WriteFile(l.xlbs[0].file, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := control.Call(ctx, l.xlbs[0].sock, "reload", nil, nil); err == nil || !strings.Contains(err.Error(), "bgp.peer[0].hold_time") {
			t.Errorf("reload of a bad [bgp]: %v", err)
		}
		if _, _, err := vipGet(client, soVIP1, 80); err != nil {
			t.Fatal(err)
		}
	})
}

func mustParse(t *testing.T, text string) *config.Config {
	t.Helper()
	c, err := config.Parse("lb.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// reload writes cfg as balancer i's file and runs `xlb reload` for it.
func reload(t *testing.T, bin string, l *soLab, i int, cfg string) {
	t.Helper()
	if err := os.WriteFile(l.xlbs[i].file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	runXLBCmd(t, bin, "reload", "--socket", l.xlbs[i].sock)
}

func runXLBCmd(t *testing.T, bin string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("xlb %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

func waitEstablished(t *testing.T, l *soLab, name string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		p, err := l.BIRD.Protocols()
		if err != nil {
			t.Fatal(err)
		}
		if p[name].Info == "Established" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("router session %s: %+v", name, p[name])
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// vipGet makes one HTTP/1.0 request to vip:port from h on a new
// connection and returns the name of the backend that answered and the
// connection's source.
func vipGet(h *lab.Host, vip netip.Addr, port uint16) (string, netip.AddrPort, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := h.Dial(ctx, "tcp", netip.AddrPortFrom(vip, port).String())
	if err != nil {
		return "", netip.AddrPort{}, err
	}
	defer c.Close()
	src := c.LocalAddr().(*net.TCPAddr).AddrPort()
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", vip); err != nil {
		return "", src, err
	}
	resp, err := io.ReadAll(c)
	if err != nil {
		return "", src, fmt.Errorf("from %v: %w", src, err)
	}
	_, body, ok := strings.Cut(string(resp), "\r\n\r\n")
	if !ok || !strings.HasPrefix(string(resp), "HTTP/1.0 200") {
		return "", src, fmt.Errorf("from %v: bad answer %q", src, resp)
	}
	return strings.TrimSpace(body), src, nil
}
