package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/lab"
	"github.com/xlbproject/xlb/lab/ecmp"
)

// soLab is the scale-out lab: lab/ecmp's router (BIRD) in front of several
// balancers, each running `xlb run` with the same VIPs and announcing them
// over BGP, and backends with `xlb decap` attached serving HTTP on port
// 80. It is what `xlb demo --balancers N` shows and what the scale-out
// tests use.
type soLab struct {
	*ecmp.Lab
	bin, dir string
	servers  []*lab.Backend // one per backend, on every address, port 80
	xlbs     []*soXLB       // one per balancer; cmd nil while stopped
}

// soXLB is the xlb instance of one balancer.
type soXLB struct {
	host       *lab.Host
	file, sock string
	cmd        *exec.Cmd
	done       chan error
}

// soVIP is one VIP of the scale-out configs: on port 0 it serves every port
// and is checked on port 80.
type soVIP struct {
	addr    netip.Addr
	port    uint16
	weights []int // per backend, in the lab's order
}

// newSOLab builds an ECMP lab of balancers and backends and sets up every
// backend: extra VIP addresses on lo, `xlb decap attach` accepting tunnels
// from every balancer, an HTTP server named after the host.
func newSOLab(prefix, bin, dir string, balancers, backends int, extraVIPs ...netip.Addr) (_ *soLab, err error) {
	if err := lab.Cleanup(prefix); err != nil {
		return nil, err
	}
	el, err := ecmp.New(ecmp.Spec{Prefix: prefix, Balancers: balancers, Backends: backends, Clients: 1})
	if err != nil {
		return nil, err
	}
	l := &soLab{Lab: el, bin: bin, dir: dir}
	defer func() {
		if err != nil {
			l.Close()
		}
	}()
	decap := []string{"decap", "attach", "--interface", lab.HostLink}
	for _, b := range el.Balancers {
		decap = append(decap, "--allow-source", b.Addr.String())
	}
	for _, h := range el.Backends {
		for _, a := range extraVIPs {
			if err := h.Run(context.Background(), "ip", "addr", "add", netip.PrefixFrom(a, 32).String(), "dev", "lo"); err != nil {
				return nil, err
			}
		}
		if err := h.Run(context.Background(), bin, decap...); err != nil {
			return nil, err
		}
		srv, err := lab.ServeHTTP(h, "0.0.0.0:80", h.Name)
		if err != nil {
			return nil, err
		}
		l.servers = append(l.servers, srv)
	}
	l.addInstances()
	return l, nil
}

// addInstances gives every balancer host an xlb instance (not started).
func (l *soLab) addInstances() {
	for i, b := range l.Balancers {
		l.xlbs = append(l.xlbs, &soXLB{
			host: b,
			file: filepath.Join(l.dir, fmt.Sprintf("lb%d.toml", i+1)),
			sock: filepath.Join(l.dir, fmt.Sprintf("lb%d.sock", i+1)),
		})
	}
}

// soMetrics is where every balancer's metrics endpoint listens, inside its
// namespace.
const soMetrics = "127.0.0.1:9350"

// config renders balancer i's config: the VIPs with their backends listed
// in an order of the balancer's own (rotated by i: the tables must not
// depend on it), health checked over TCP on port 80 every 200ms, the
// metrics endpoint on soMetrics, and
// [bgp] with the router as peer (hold time 3s) plus extraPeers (TOML).
func (l *soLab) config(i int, vips []soVIP, drain time.Duration, extraPeers string) string {
	var b strings.Builder
	x := l.xlbs[i]
	fmt.Fprintf(&b, "[datapath]\ninterface = %q\nqueues = [0]\n\n[control]\nsocket = %q\n\n", lab.HostLink, x.sock)
	fmt.Fprintf(&b, "[metrics]\nlisten = %q\n\n", soMetrics)
	fmt.Fprintf(&b, "[bgp]\nasn = %d\nrouter_id = %q\ndrain = %q\n\n", l.BalancerASN, x.host.Addr, drain)
	fmt.Fprintf(&b, "[[bgp.peer]]\naddress = %q\nasn = %d\nhold_time = \"3s\"\nconnect_retry = \"1s\"\n\n", l.RouterAddr, l.RouterASN)
	b.WriteString(extraPeers)
	for _, v := range vips {
		fmt.Fprintf(&b, "[[vip]]\naddress = %q\nport = %d\n", v.addr, v.port)
		hp := v.port
		if hp == 0 {
			hp = 80
		}
		fmt.Fprintf(&b, "[vip.health]\nkind = \"tcp\"\nport = %d\ninterval = \"200ms\"\ntimeout = \"150ms\"\nrise = 2\nfall = 3\n", hp)
		n := len(l.Backends)
		for k := range n {
			j := (k + i) % n
			fmt.Fprintf(&b, "  [[vip.backend]]\n  address = %q\n  weight = %d\n", l.Backends[j].Addr, v.weights[j])
		}
		b.WriteString("\n")
	}
	return b.String()
}

// start writes cfg as balancer i's file and runs `xlb run` in its
// namespace, then waits until the control socket answers.
func (l *soLab) start(i int, cfg string, logw io.Writer) error {
	x := l.xlbs[i]
	if err := os.WriteFile(x.file, []byte(cfg), 0o600); err != nil {
		return err
	}
	cmd := x.host.Command(context.Background(), l.bin, "run", "-c", x.file)
	cmd.Stdout, cmd.Stderr = logw, logw
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("%s: start xlb run: %w", x.host.Name, err)
	}
	x.cmd, x.done = cmd, make(chan error, 1)
	go func() { x.done <- cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := control.Call(ctx, x.sock, "stats", nil, nil)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case werr := <-x.done:
			x.cmd = nil
			return fmt.Errorf("%s: xlb run exited before it was ready: %v", x.host.Name, werr)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: xlb run not ready after 20s: %w", x.host.Name, err)
		}
	}
}

// stop sends sig to balancer i's xlb and waits (bounded by limit) for it
// to exit; SIGTERM must end in a clean exit.
func (l *soLab) stop(i int, sig syscall.Signal, limit time.Duration) error {
	x := l.xlbs[i]
	if x.cmd == nil {
		return nil
	}
	cmd := x.cmd
	x.cmd = nil
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case err := <-x.done:
		if sig == syscall.SIGTERM && err != nil {
			return fmt.Errorf("%s: xlb run exited with %v", x.host.Name, err)
		}
		return nil
	case <-time.After(limit):
		_ = cmd.Process.Kill()
		<-x.done
		return fmt.Errorf("%s: xlb run did not exit within %s of %v", x.host.Name, limit, sig)
	}
}

// bgpStatus asks balancer i's xlb for its BGP status.
func (l *soLab) bgpStatus(i int) (bgpStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var st bgpStatus
	err := control.Call(ctx, l.xlbs[i].sock, "bgp", nil, &st)
	return st, err
}

// Close stops every xlb, the HTTP servers and BIRD, and deletes every
// namespace.
func (l *soLab) Close() error {
	var errs []error
	for i := range l.xlbs {
		errs = append(errs, l.stop(i, syscall.SIGTERM, 20*time.Second))
	}
	for _, s := range l.servers {
		errs = append(errs, s.Close())
	}
	errs = append(errs, l.Lab.Close())
	return errors.Join(errs...)
}

// rxPackets is every running balancer's received packets, summed over its
// queues (0 for a stopped one).
func (l *soLab) rxPackets() ([]uint64, error) {
	out := make([]uint64, len(l.xlbs))
	for i, x := range l.xlbs {
		if x.cmd == nil {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		var st runStats
		err := control.Call(ctx, x.sock, "stats", nil, &st)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", x.host.Name, err)
		}
		for _, q := range st.Queues {
			out[i] += q.RxPackets
		}
	}
	return out, nil
}

// routerRoute is the router's kernel route for vip, as `ip route` shows it.
func (l *soLab) routerRoute(vip netip.Addr) string {
	out, err := l.Router.Command(context.Background(), "ip", "route", "show", netip.PrefixFrom(vip, vip.BitLen()).String()).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("ip route: %v: %s", err, out)
	}
	if len(out) == 0 {
		return "(no route)\n"
	}
	return string(out)
}
