package tcpbench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/lab"
)

// ErrSkipped is wrapped by a datapath's start error when the datapath
// cannot run on this machine (a proxy not installed): Run records it as
// skipped, not failed.
var ErrSkipped = errors.New("tcpbench: datapath not available")

// Bounds on a datapath process's life.
const (
	readyWait = 20 * time.Second
	stopWait  = 15 * time.Second
)

// process is a balancer (xlb or a proxy) running in the lb namespace.
// `ip netns exec` execs the program, so the PID is the program's and
// SIGTERM reaches it.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan error
	log  *tail
}

// startProcess runs name args in h's namespace with its output kept.
func startProcess(h *lab.Host, name string, args ...string) (*process, error) {
	p := &process{name: filepath.Base(name), log: &tail{max: 4 << 10}, done: make(chan error, 1)}
	p.cmd = h.Command(context.Background(), name, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("tcpbench: start %s: %w", p.name, err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	return p, nil
}

// exited reports whether the process has ended, without waiting.
func (p *process) exited() (bool, error) {
	select {
	case err := <-p.done:
		p.done <- err // for stop
		return true, err
	default:
		return false, nil
	}
}

// stop sends SIGTERM and waits, bounded, killing it after stopWait.
func (p *process) stop() error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("tcpbench: stop %s: %w", p.name, err)
	}
	select {
	case <-p.done:
		// A proxy may exit non-zero on SIGTERM (nginx does not, haproxy
		// reports the signal): stopping it is all that is asked.
		return nil
	case <-time.After(stopWait):
		_ = p.cmd.Process.Kill()
		<-p.done
		return fmt.Errorf("tcpbench: %s did not exit within %s of SIGTERM: %s", p.name, stopWait, p.log)
	}
}

// tail keeps the last max bytes written to it.
type tail struct {
	mu  sync.Mutex
	max int
	buf []byte
}

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = t.buf[over:]
	}
	return len(b), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.buf))
}

// starter starts one datapath in the lab and returns the process and
// where clients connect.
type starter func(b *benchLab, dir, xlb string) (*process, endpoint, error)

var starters = map[string]starter{
	XLBAFXDP:   startXLB("afxdp"),
	XLBNative:  startXLB("native"),
	HAProxy:    startHAProxy(false),
	Nginx:      startNginx(false),
	XLBSplice:  startXLBSplice,
	HAProxySNI: startHAProxy(true),
	NginxSNI:   startNginx(true),
}

// sniEndpoint is where the SNI-routed datapaths listen: the proxies'
// address, on the ports whose servers skip the ClientHello.
func (b *benchLab) sniEndpoint() endpoint {
	return endpoint{addr: proxyVIP, sink: sniSinkPort, rr: sniRRPort, hello: b.hello}
}

// xlbConfig is one TCP VIP on every port, IPIP to both backends, next
// hops resolved by ARP as an operator's config would.
func xlbConfig(mode, socket string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "[datapath]\ninterface = %q\nqueues = [0]\nmode = %q\n\n[control]\nsocket = %q\n\n", lab.HostLink, mode, socket)
	fmt.Fprintf(&s, "[[vip]]\naddress = %q\nport = 0\nprotocol = \"tcp\"\nforward = \"ipip\"\n", vip)
	for _, a := range beAddrs {
		fmt.Fprintf(&s, "\n  [[vip.backend]]\n  address = %q\n", a.Addr())
	}
	return s.String()
}

func startXLB(mode string) starter {
	return func(b *benchLab, dir, xlb string) (*process, endpoint, error) {
		p, err := runXLB(b, dir, xlb, mode, xlbConfig(mode, filepath.Join(dir, "xlb-"+mode+".sock")))
		return p, plain(vip), err
	}
}

// xlbSpliceConfig is a splice VIP on each SNI port of the proxies'
// address, with one route, sniName, to both backends.
func xlbSpliceConfig(socket string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "[datapath]\ninterface = %q\nqueues = [0]\n\n[control]\nsocket = %q\n", lab.HostLink, socket)
	for _, port := range []int{sniSinkPort, sniRRPort} {
		fmt.Fprintf(&s, "\n[[vip]]\naddress = %q\nport = %d\nforward = \"splice\"\n\n  [[vip.route]]\n  sni = %q\n", proxyVIP, port, sniName)
		for _, a := range beAddrs {
			fmt.Fprintf(&s, "    [[vip.route.backend]]\n    address = %q\n", a.Addr())
		}
	}
	return s.String()
}

func startXLBSplice(b *benchLab, dir, xlb string) (*process, endpoint, error) {
	socket := filepath.Join(dir, "xlb-splice.sock")
	p, err := runXLB(b, dir, xlb, "splice", xlbSpliceConfig(socket))
	ep := b.sniEndpoint()
	ep.splice = xlbSpliceCounts(xlb, socket)
	return p, ep, err
}

// runXLB writes cfg and runs `xlb run` with it in the balancer's namespace.
func runXLB(b *benchLab, dir, xlb, name, cfg string) (*process, error) {
	file := filepath.Join(dir, "xlb-"+name+".toml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		return nil, fmt.Errorf("tcpbench: %w", err)
	}
	return startProcess(b.lb, xlb, "run", "-c", file)
}

// haproxyConfig balances each port round robin to the backends' own
// addresses; the defaults are Debian's own, less HTTP and logging. With
// sni, the ports are the SNI ones and a connection waits for its
// ClientHello and goes to the backend of its name (req.ssl_sni), the way
// HAProxy routes TLS passthrough.
func haproxyConfig(sni bool) string {
	var s strings.Builder
	// maxconn fits the default 20000-descriptor limit haproxy can raise to.
	s.WriteString("global\n  maxconn 8000\n\ndefaults\n  mode tcp\n  timeout connect 5s\n  timeout client 60s\n  timeout server 60s\n")
	if !sni {
		for _, port := range []int{sinkPort, rrPort} {
			fmt.Fprintf(&s, "\nlisten p%d\n  bind %s:%d\n  balance roundrobin\n", port, proxyVIP, port)
			haproxyServers(&s, port)
		}
		return s.String()
	}
	for _, port := range []int{sniSinkPort, sniRRPort} {
		fmt.Fprintf(&s, "\nfrontend f%d\n  bind %s:%d\n  tcp-request inspect-delay 5s\n  tcp-request content accept if { req.ssl_hello_type 1 }\n  use_backend b%d if { req.ssl_sni -i %s }\n", port, proxyVIP, port, port, sniName)
		fmt.Fprintf(&s, "\nbackend b%d\n  balance roundrobin\n", port)
		haproxyServers(&s, port)
	}
	return s.String()
}

func haproxyServers(s *strings.Builder, port int) {
	for i, a := range beAddrs {
		fmt.Fprintf(s, "  server be%d %s:%d\n", i+1, a.Addr(), port)
	}
}

func startHAProxy(sni bool) starter {
	return func(b *benchLab, dir, _ string) (*process, endpoint, error) {
		bin, err := exec.LookPath("haproxy")
		if err != nil {
			return nil, endpoint{}, fmt.Errorf("%w: haproxy not installed (apt-get install haproxy)", ErrSkipped)
		}
		file := filepath.Join(dir, "haproxy.cfg")
		if err := os.WriteFile(file, []byte(haproxyConfig(sni)), 0o600); err != nil {
			return nil, endpoint{}, fmt.Errorf("tcpbench: %w", err)
		}
		p, err := startProcess(b.lb, bin, "-f", file, "-db")
		if sni {
			return p, b.sniEndpoint(), err
		}
		return p, plain(proxyVIP), err
	}
}

// nginxStreamModule is where Debian's libnginx-mod-stream puts the module.
const nginxStreamModule = "/usr/lib/nginx/modules/ngx_stream_module.so"

// nginxConfig is a stream proxy per port over an upstream of both
// backends (round robin, nginx's default), everything written under dir.
// With sni, the ports are the SNI ones and each server reads the
// ClientHello (ssl_preread) and proxies to the upstream its name maps to.
func nginxConfig(dir, loadModule string, sni bool) string {
	var s strings.Builder
	if loadModule != "" {
		fmt.Fprintf(&s, "load_module %s;\n", loadModule)
	}
	fmt.Fprintf(&s, "worker_processes auto;\npid %s;\nerror_log %s warn;\nevents { worker_connections 65536; }\nworker_rlimit_nofile 140000;\n\nstream {\n",
		filepath.Join(dir, "nginx.pid"), filepath.Join(dir, "nginx-error.log"))
	ports := []int{sinkPort, rrPort}
	if sni {
		ports = []int{sniSinkPort, sniRRPort}
	}
	for _, port := range ports {
		fmt.Fprintf(&s, "  upstream p%d {\n", port)
		for _, a := range beAddrs {
			fmt.Fprintf(&s, "    server %s:%d;\n", a.Addr(), port)
		}
		if !sni {
			fmt.Fprintf(&s, "  }\n  server {\n    listen %s:%d;\n    proxy_pass p%d;\n  }\n", proxyVIP, port, port)
			continue
		}
		fmt.Fprintf(&s, "  }\n  map $ssl_preread_server_name $u%d {\n    %s p%d;\n  }\n", port, sniName, port)
		fmt.Fprintf(&s, "  server {\n    listen %s:%d;\n    ssl_preread on;\n    proxy_pass $u%d;\n  }\n", proxyVIP, port, port)
	}
	s.WriteString("}\n")
	return s.String()
}

func startNginx(sni bool) starter {
	return func(b *benchLab, dir, _ string) (*process, endpoint, error) {
		bin, err := exec.LookPath("nginx")
		if err != nil {
			return nil, endpoint{}, fmt.Errorf("%w: nginx not installed (apt-get install nginx libnginx-mod-stream)", ErrSkipped)
		}
		module := ""
		if _, err := os.Stat(nginxStreamModule); err == nil {
			module = nginxStreamModule
		} else {
			out, _ := exec.Command(bin, "-V").CombinedOutput()
			if !bytes.Contains(out, []byte("--with-stream ")) {
				return nil, endpoint{}, fmt.Errorf("%w: nginx has no stream module (apt-get install libnginx-mod-stream)", ErrSkipped)
			}
		}
		file := filepath.Join(dir, "nginx.conf")
		if err := os.WriteFile(file, []byte(nginxConfig(dir, module, sni)), 0o600); err != nil {
			return nil, endpoint{}, fmt.Errorf("tcpbench: %w", err)
		}
		// -p and -e keep nginx's prefix and its start-up log out of /var.
		p, err := startProcess(b.lb, bin, "-p", dir, "-e", filepath.Join(dir, "nginx-error.log"), "-c", file, "-g", "daemon off;")
		if sni {
			return p, b.sniEndpoint(), err
		}
		return p, plain(proxyVIP), err
	}
}
