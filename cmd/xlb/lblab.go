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
)

// The demo's and the integration tests' addressing, all in 198.18.0.0/15.
var (
	labVIP      = netip.MustParseAddr("198.18.100.1")
	labLB       = lab.BalancerLB
	labClient   = lab.BalancerClient
	labBackends = []netip.Prefix{lab.BalancerBackend(0), lab.BalancerBackend(1), lab.BalancerBackend(2)}
)

// The lab's MTUs: room for the IPIP header between balancer and backends.
const (
	clientMTU = lab.ClientMTU
	fabricMTU = lab.FabricMTU
)

// lbLab is a running lab: a client, the balancer host and three backends on
// one bridge, each backend serving HTTP on the VIP with `xlb decap`
// attached. It is what `xlb demo` shows and what the integration tests use.
type lbLab struct {
	*lab.Lab
	client, lb *lab.Host
	backends   []*lab.Host
	servers    []*lab.Backend
	bin        string // the xlb binary run inside the namespaces
	dir        string // config files and the control socket
	xlb        *exec.Cmd
	xlbDone    chan error
}

func newLBLab(prefix, bin, dir string) (*lbLab, error) {
	return newLBLabMTU(prefix, bin, dir, clientMTU, fabricMTU)
}

// newLBLabMTU is newLBLab with the client's and the fabric's (balancer and
// backends) MTUs given.
func newLBLabMTU(prefix, bin, dir string, clientMTU, fabricMTU int) (*lbLab, error) {
	if err := lab.Cleanup(prefix); err != nil {
		return nil, err
	}
	spec := lab.BalancerSpec(prefix, labVIP, len(labBackends))
	for i := range spec.Hosts {
		spec.Hosts[i].MTU = fabricMTU
	}
	spec.Hosts[0].MTU = clientMTU
	// On every address: the VIP (decapsulated traffic) and the backend's
	// own, where health checks probe it.
	return buildLBLab(spec, bin, dir, "0.0.0.0:80", "--allow-source", labLB.Addr().String())
}

// buildLBLab builds spec (hosts client, lb and be1.. be3) and sets up each
// backend: `xlb decap attach` run for real, as an operator would on a
// backend (decapArgs are extra flags), and an HTTP server named after the
// host listening on listen. On error it tears down what it built.
func buildLBLab(spec lab.Spec, bin, dir, listen string, decapArgs ...string) (_ *lbLab, err error) {
	l, err := lab.New(spec)
	if err != nil {
		return nil, err
	}
	ll := &lbLab{Lab: l, client: l.Hosts["client"], lb: l.Hosts["lb"], bin: bin, dir: dir}
	defer func() {
		if err != nil {
			ll.Close()
		}
	}()
	for i := range labBackends {
		h := l.Hosts[fmt.Sprintf("be%d", i+1)]
		ll.backends = append(ll.backends, h)
		args := append([]string{"decap", "attach", "--interface", lab.HostLink}, decapArgs...)
		if err := h.Run(context.Background(), bin, args...); err != nil {
			return nil, err
		}
		srv, err := lab.ServeHTTP(h, listen, h.Name)
		if err != nil {
			return nil, err
		}
		ll.servers = append(ll.servers, srv)
	}
	return ll, nil
}

// configText renders a config for the lab's balancer: one TCP VIP on port
// (0 = every port) with the given backend weights (in labBackends order).
func configText(socket string, port uint16, weights []int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "[datapath]\ninterface = %q\nqueues = [0]\n\n[control]\nsocket = %q\n\n", lab.HostLink, socket)
	fmt.Fprintf(&b, "[[vip]]\naddress = %q\nport = %d\nprotocol = \"tcp\"\nforward = \"ipip\"\n", labVIP, port)
	for i, w := range weights {
		fmt.Fprintf(&b, "\n  [[vip.backend]]\n  address = %q\n  weight = %d\n", labBackends[i].Addr(), w)
	}
	return b.String()
}

// withHealth adds a [vip.health] table (its body given as TOML lines) to a
// config made by configText.
func withHealth(cfg, body string) string {
	return strings.Replace(cfg, "\n  [[vip.backend]]", "\n[vip.health]\n"+body+"\n  [[vip.backend]]", 1)
}

// socketPath is where the lab's instance listens.
func (l *lbLab) socketPath() string { return filepath.Join(l.dir, "xlb.sock") }

// startXLB writes cfg and runs `xlb run` in the balancer's namespace, then
// waits until its control socket answers. Its log goes to logw.
func (l *lbLab) startXLB(cfg string, logw io.Writer) error {
	file := filepath.Join(l.dir, "xlb.toml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		return err
	}
	cmd := l.lb.Command(context.Background(), l.bin, "run", "-c", file)
	cmd.Stdout, cmd.Stderr = logw, logw
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start xlb run: %w", err)
	}
	l.xlb, l.xlbDone = cmd, make(chan error, 1)
	go func() { l.xlbDone <- cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := control.Call(ctx, l.socketPath(), "stats", nil, nil)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case werr := <-l.xlbDone:
			l.xlb = nil
			return fmt.Errorf("xlb run exited before it was ready: %v", werr)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("xlb run not ready after 20s: %w", err)
		}
	}
}

// stopXLB sends SIGTERM and waits (bounded) for a clean exit.
func (l *lbLab) stopXLB() error {
	if l.xlb == nil {
		return nil
	}
	cmd := l.xlb
	l.xlb = nil
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case err := <-l.xlbDone:
		if err != nil {
			return fmt.Errorf("xlb run exited with %v", err)
		}
		return nil
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-l.xlbDone
		return errors.New("xlb run did not exit within 15s of SIGTERM")
	}
}

// Close stops xlb, the HTTP servers, and deletes every namespace.
func (l *lbLab) Close() error {
	errs := []error{l.stopXLB()}
	for _, s := range l.servers {
		errs = append(errs, s.Close())
	}
	errs = append(errs, l.Lab.Close())
	return errors.Join(errs...)
}
