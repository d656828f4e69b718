package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/engine"
	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/lab"
	"github.com/xlbproject/xlb/lab/ecmp"
	"github.com/xlbproject/xlb/lab/xlbbin"
)

// colocatedConfig is node i's config in co-located mode: native mode, the
// VIP's backends are the nodes themselves (listed from node i on), node i
// marked local, forwarded to the others with L2 DSR, announced over BGP.
func colocatedConfig(l *soLab, i int) string {
	var b strings.Builder
	x := l.xlbs[i]
	fmt.Fprintf(&b, "[datapath]\ninterface = %q\nmode = \"native\"\n\n[control]\nsocket = %q\n\n", lab.HostLink, x.sock)
	fmt.Fprintf(&b, "[bgp]\nasn = %d\nrouter_id = %q\ndrain = \"1s\"\n\n", l.BalancerASN, x.host.Addr)
	fmt.Fprintf(&b, "[[bgp.peer]]\naddress = %q\nasn = %d\nhold_time = \"3s\"\nconnect_retry = \"1s\"\n\n", l.RouterAddr, l.RouterASN)
	fmt.Fprintf(&b, "[[vip]]\naddress = %q\nport = 80\nforward = \"dsr\"\n", ecmp.VIP)
	b.WriteString("[vip.health]\nkind = \"tcp\"\ninterval = \"200ms\"\ntimeout = \"150ms\"\n")
	n := len(l.Balancers)
	for k := range n {
		j := (i + k) % n
		fmt.Fprintf(&b, "  [[vip.backend]]\n  address = %q\n  local = %t\n", l.Balancers[j].Addr, j == i)
	}
	return b.String()
}

// TestColocated runs co-located mode (issue 11 item 3): three backends,
// each running xlb in native mode and announcing the VIP, behind the BIRD
// router. Whichever node the router hands a connection to, it is served by
// `xlb lookup`'s backend: the node itself (XDP_PASS to its own stack) or
// another one (DSR, where that node's program finds itself local). In
// afxdp mode `xlb check` refuses local = true with the reason.
func TestColocated(t *testing.T) {
	testenv.Root(t, "creates network namespaces, runs BIRD and xlb, attaches XDP programs")
	testenv.Tool(t, "bird")
	bin, err := xlbbin.Path()
	if err != nil {
		t.Fatal(err)
	}
	if err := lab.Cleanup("xco"); err != nil {
		t.Fatal(err)
	}
	el, err := ecmp.New(ecmp.Spec{Prefix: "xco", Balancers: 3, Backends: 1, Clients: 1, VIPOnBalancers: true})
	if err != nil {
		t.Fatal(err)
	}
	l := &soLab{Lab: el, bin: bin, dir: t.TempDir()}
	l.addInstances()
	logs := make([]*lockedBuffer, len(l.Balancers))
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
		if t.Failed() {
			for i, lg := range logs {
				t.Logf("node %d log:\n%s", i+1, lg)
			}
		}
	})
	nodes := make([]netip.Addr, len(l.Balancers))
	names := map[netip.Addr]string{}
	for i, h := range l.Balancers {
		nodes[i], names[h.Addr] = h.Addr, h.Name
		srv, err := lab.ServeHTTP(h, "0.0.0.0:80", h.Name)
		if err != nil {
			t.Fatal(err)
		}
		l.servers = append(l.servers, srv)
	}
	cfgs := make([]string, len(l.Balancers))
	for i := range l.Balancers {
		cfgs[i] = colocatedConfig(l, i)
		logs[i] = &lockedBuffer{}
		if err := l.start(i, cfgs[i], logs[i]); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := l.WaitNexthops(ctx, netip.PrefixFrom(ecmp.VIP, 32), nodes...); err != nil {
		t.Fatal(err)
	}
	resolver, err := engine.NewResolver(mustParse(t, cfgs[0]))
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]int{}
	for range 300 {
		name, src, err := vipGet(l.ClientHosts[0], ecmp.VIP, 80)
		if err != nil {
			t.Fatal(err)
		}
		_, want, err := resolver.Lookup(config.TCP, src, netip.AddrPortFrom(ecmp.VIP, 80))
		if err != nil {
			t.Fatal(err)
		}
		if name != names[want.Address] {
			t.Fatalf("connection from %v served by %s, xlb lookup says %s", src, name, names[want.Address])
		}
		served[name]++
	}
	// Every node served flows itself and forwarded others.
	var summary []string
	for i, x := range l.xlbs {
		cctx, ccancel := context.WithTimeout(context.Background(), 5*time.Second)
		var st runStats
		err := control.Call(cctx, x.sock, "stats", nil, &st)
		ccancel()
		if err != nil {
			t.Fatal(err)
		}
		n := st.Native
		if n == nil || n.Passed == 0 || n.Forwarded == 0 {
			t.Errorf("node %d: native counters %+v: want local (passed) and forwarded flows", i+1, n)
			continue
		}
		summary = append(summary, fmt.Sprintf("lb%d passed %d forwarded %d", i+1, n.Passed, n.Forwarded))
	}
	t.Logf("300 connections served by %v, each by xlb lookup's backend; %s", served, strings.Join(summary, "; "))

	// afxdp mode cannot pass a frame back to the kernel: refused.
	afxdp := strings.Replace(cfgs[0], "mode = \"native\"\n", "", 1)
	file := filepath.Join(l.dir, "afxdp.toml")
	if err := os.WriteFile(file, []byte(afxdp), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := l.Balancers[0].Command(context.Background(), bin, "check", "-c", file).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "local = true needs datapath.mode = \"native\"") {
		t.Errorf("xlb check of local = true in afxdp mode: %v\n%s", err, out)
	}
}
