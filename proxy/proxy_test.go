package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/lab"
	"github.com/xlbproject/xlb/sni"
)

// The tests run on the loopback: every 127/8 address is local, so the VIP
// and each backend get an address of their own without root.

// backend is a server on one loopback address: TLS, answering its name and
// then echoing, or raw, running a handler on the plain connection.
type backend struct {
	name string
	addr netip.Addr
	ln   net.Listener
}

func startBackend(t *testing.T, name, addr string, port uint16, tlsOn bool, handle func(net.Conn)) *backend {
	t.Helper()
	b := &backend{name: name, addr: netip.MustParseAddr(addr)}
	ln, err := net.Listen("tcp", netip.AddrPortFrom(b.addr, port).String())
	if err != nil {
		t.Fatal(err)
	}
	if tlsOn {
		cert, err := lab.SelfSigned(name)
		if err != nil {
			t.Fatal(err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
		handle = func(c net.Conn) {
			if _, err := fmt.Fprintf(c, "%s\n", name); err != nil {
				return
			}
			lab.Echo(c)
		}
	}
	b.ln = ln
	wait := lab.Serve(ln, handle)
	t.Cleanup(func() { ln.Close(); wait() })
	return b
}

func freePort(t *testing.T) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return uint16(ln.Addr().(*net.TCPAddr).Port)
}

func route(pattern string, backends ...*backend) config.Route {
	r := config.Route{Default: pattern == ""}
	if pattern != "" {
		p, err := sni.ParsePattern(pattern)
		if err != nil {
			panic(err)
		}
		r.SNI = p
	}
	for _, b := range backends {
		r.Backends = append(r.Backends, config.Backend{Address: b.addr, Weight: 1, State: config.StateActive, Health: config.HealthCheck{Kind: config.HealthNone}})
	}
	return r
}

func spliceConfig(port uint16, set config.SpliceSettings, routes ...config.Route) *config.Config {
	return &config.Config{File: "test.toml", VIPs: []config.VIP{{
		Address: netip.MustParseAddr("127.0.0.1"), Port: port, Protocol: config.TCP, Forward: config.Splice,
		TableSize: 251, Splice: set, Routes: routes,
	}}}
}

func fastSettings() config.SpliceSettings {
	s := config.DefaultSpliceSettings()
	s.HelloTimeout, s.ConnectTimeout = 300*time.Millisecond, time.Second
	return s
}

func startProxy(t *testing.T, cfg *config.Config) *Proxy {
	t.Helper()
	p, err := Start(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// leakBaseline records the goroutines and file descriptors of the process;
// check waits (bounded) until both are back to it.
type leakBaseline struct{ goroutines, fds int }

func fdCount(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func fdTargets() []string {
	ents, _ := os.ReadDir("/proc/self/fd")
	var out []string
	for _, e := range ents {
		l, _ := os.Readlink("/proc/self/fd/" + e.Name())
		out = append(out, e.Name()+"="+l)
	}
	return out
}

func baseline(t *testing.T) leakBaseline {
	return leakBaseline{runtime.NumGoroutine(), fdCount(t)}
}

func (b leakBaseline) check(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		// io.Copy between TCP sockets splices through pipes that Go keeps
		// in a sync.Pool; two collections empty it and close them.
		runtime.GC()
		runtime.GC()
		g, f := runtime.NumGoroutine(), fdCount(t)
		if g <= b.goroutines && f <= b.fds {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("leak: %d goroutines (baseline %d), %d fds (baseline %d): %v\n%s", g, b.goroutines, f, b.fds, fdTargets(), buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func vipAddr(port uint16) string {
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), port).String()
}

// tlsGet connects through the proxy as name and returns the backend's
// first line and the common name of the certificate it presented.
func tlsGet(port uint16, name string) (line, cn string, err error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(&d, "tcp", vipAddr(port), &tls.Config{ServerName: name, InsecureSkipVerify: true})
	if err != nil {
		return "", "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err = bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", "", err
	}
	return strings.TrimSpace(line), c.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

func TestRoutesByServerName(t *testing.T) {
	port := freePort(t)
	be := map[string]*backend{}
	for i, name := range []string{"api1", "api2", "wild", "dflt"} {
		be[name] = startBackend(t, name, fmt.Sprintf("127.0.0.%d", i+2), port, true, nil)
	}
	p := startProxy(t, spliceConfig(port, fastSettings(),
		route("*.example.com", be["wild"]), route("api.example.com", be["api1"], be["api2"]), route("", be["dflt"])))
	base := baseline(t)
	want := map[string][]string{
		"api.example.com": {"api1", "api2"}, "API.Example.com": {"api1", "api2"},
		"www.example.com": {"wild"}, "a.b.example.com": {"dflt"}, "example.com": {"dflt"}, "other.test": {"dflt"},
	}
	seen := map[string]int{}
	for name, backends := range want {
		for range 20 {
			line, cn, err := tlsGet(port, name)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if line != cn || !strings.Contains(strings.Join(backends, " "), cn) {
				t.Fatalf("%s: reached %q with the certificate of %q, want one of %v", name, line, cn, backends)
			}
			seen[cn]++
		}
	}
	if seen["api1"] == 0 || seen["api2"] == 0 {
		t.Errorf("api.example.com's connections were not spread over its two backends: %v", seen)
	}
	base.check(t)
	st := p.Stats()
	if len(st) != 1 || len(st[0].Routes) != 3 {
		t.Fatalf("stats = %+v", st)
	}
	for _, r := range st[0].Routes {
		n := map[string]uint64{"*.example.com": 20, "api.example.com": 40, "default": 60}[r.SNI]
		if r.Connections != n || r.Active != 0 || r.BytesUp == 0 || r.BytesDown == 0 {
			t.Errorf("route %s: %+v, want %d connections", r.SNI, r, n)
		}
		var sum uint64
		for _, b := range r.Backends {
			sum += b.Connections
		}
		if sum != n {
			t.Errorf("route %s: backends count %d connections, want %d", r.SNI, sum, n)
		}
	}
	for reason, n := range st[0].Refused {
		if n != 0 {
			t.Errorf("refused %s = %d", reason, n)
		}
	}
}

// clientHello returns the first record a Go TLS client sends for name.
func clientHello(t testing.TB, name string) []byte {
	t.Helper()
	b, err := lab.ClientHello(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// isReset reports whether err is the connection being reset (or closed
// under a read that was waiting).
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

func TestRefusals(t *testing.T) {
	port := freePort(t)
	api := startBackend(t, "api", "127.0.0.2", port, true, nil)
	gone := &backend{name: "gone", addr: netip.MustParseAddr("127.0.0.9")} // nothing listens there
	set := fastSettings()
	set.HelloMaxBytes = 4096 // more than Go's hello with its ML-KEM key share
	p := startProxy(t, spliceConfig(port, set, route("api.example.com", api), route("down.example.com", gone)))
	base := baseline(t)

	// Every refused connection is reset, with nothing sent back.
	expectReset := func(what string, send []byte) {
		t.Helper()
		c, err := net.DialTimeout("tcp", vipAddr(port), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if send != nil {
			c.Write(send)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(make([]byte, 100))
		if n != 0 || !isReset(err) {
			t.Errorf("%s: read %d bytes, %v; want a reset", what, n, err)
		}
	}
	expectReset("unknown sni", clientHello(t, "nope.example.com"))
	expectReset("no sni", clientHello(t, ""))
	expectReset("http", []byte("GET / HTTP/1.1\r\nHost: api.example.com\r\n\r\n"))
	expectReset("malformed", []byte{22, 3, 1, 0, 4, 2, 0, 0, 0})
	expectReset("too large", []byte{22, 3, 1, 0x3f, 0xff, 1})
	expectReset("silent", nil)                                          // hello_timeout
	expectReset("half a hello", clientHello(t, "api.example.com")[:50]) // hello_timeout too
	expectReset("backend down", clientHello(t, "down.example.com"))
	// A client that gives up halfway.
	c, err := net.Dial("tcp", vipAddr(port))
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte{22, 3, 1})
	c.Close()
	// And the route that works still does.
	if _, cn, err := tlsGet(port, "api.example.com"); err != nil || cn != "api" {
		t.Errorf("api.example.com: %q, %v", cn, err)
	}

	want := map[string]uint64{"unknown_sni": 1, "no_sni": 1, "not_tls": 1, "malformed": 1, "too_large": 1, "timeout": 2, "backend_connect_failed": 1, "client_closed": 1, "no_backend": 0}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got := p.Stats()[0].Refused
		ok := true
		for k, n := range want {
			ok = ok && got[k] == n
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("refused = %v, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if r := p.Stats()[0].Routes[1]; r.ConnectFailed != 1 || r.Backends[0].ConnectFailed != 1 || r.Connections != 0 {
		t.Errorf("down route = %+v", r)
	}
	base.check(t)
}

// rawPair connects to the proxy as name and returns the client side and
// the backend side of one proxied connection (the backend side has read the
// hello).
func rawPair(t *testing.T, port uint16, accepted chan net.Conn, name string) (client, server net.Conn) {
	t.Helper()
	hello := clientHello(t, name)
	client, err := net.Dial("tcp", vipAddr(port))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := client.Write(hello); err != nil {
		t.Fatal(err)
	}
	select {
	case server = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend got no connection")
	}
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(hello))
	if _, err := io.ReadFull(server, got); err != nil || !bytes.Equal(got, hello) {
		t.Fatalf("backend read the hello: %v (equal %v)", err, bytes.Equal(got, hello))
	}
	return client, server
}

// rawBackend hands each accepted connection to the test and holds it open
// until the test is done with it.
func rawBackend(t *testing.T, port uint16) chan net.Conn {
	accepted := make(chan net.Conn, 1)
	startBackend(t, "raw", "127.0.0.2", port, false, func(c net.Conn) {
		done := make(chan struct{})
		accepted <- &closeNotify{Conn: c, done: done}
		<-done
	})
	return accepted
}

type closeNotify struct {
	net.Conn
	done chan struct{}
	once sync.Once
}

func (c *closeNotify) Close() error {
	c.once.Do(func() { close(c.done) })
	return c.Conn.Close()
}

func TestHalfCloseAndResets(t *testing.T) {
	port := freePort(t)
	accepted := rawBackend(t, port)
	p := startProxy(t, spliceConfig(port, fastSettings(), route("", &backend{addr: netip.MustParseAddr("127.0.0.2")})))
	base := baseline(t)

	// Half-close: the client's FIN reaches the backend, which still answers.
	client, server := rawPair(t, port, accepted, "a.test")
	client.Write([]byte("request"))
	client.(*net.TCPConn).CloseWrite()
	if got, err := io.ReadAll(server); err != nil || string(got) != "request" {
		t.Fatalf("backend read %q, %v; want the request and EOF", got, err)
	}
	server.Write([]byte("response"))
	server.Close()
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if got, err := io.ReadAll(client); err != nil || string(got) != "response" {
		t.Fatalf("client read %q, %v; want the response and EOF", got, err)
	}
	client.Close()

	// The client resets: so is the backend.
	client, server = rawPair(t, port, accepted, "b.test")
	client.(*net.TCPConn).SetLinger(0)
	client.Close()
	if n, err := server.Read(make([]byte, 10)); n != 0 || !isReset(err) {
		t.Errorf("backend after the client's reset: %d, %v; want a reset", n, err)
	}
	server.Close()

	// The backend resets: so is the client.
	client, server = rawPair(t, port, accepted, "c.test")
	server.(*closeNotify).Conn.(*net.TCPConn).SetLinger(0)
	server.Close()
	client.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := client.Read(make([]byte, 10)); n != 0 || !isReset(err) {
		t.Errorf("client after the backend's reset: %d, %v; want a reset", n, err)
	}
	client.Close()

	waitFor(t, "reset counters", func() bool {
		r := p.Stats()[0].Routes[0]
		return r.ClientResets == 1 && r.BackendResets == 1 && r.Connections == 3 && r.Active == 0
	})
	base.check(t)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestIdleTimeout(t *testing.T) {
	port := freePort(t)
	accepted := rawBackend(t, port)
	set := fastSettings()
	set.IdleTimeout = time.Second
	p := startProxy(t, spliceConfig(port, set, route("", &backend{addr: netip.MustParseAddr("127.0.0.2")})))
	client, server := rawPair(t, port, accepted, "idle.test")
	defer server.Close()
	defer client.Close()
	client.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := client.Read(make([]byte, 10)); n != 0 || !isReset(err) {
		t.Errorf("idle client: %d, %v; want a reset", n, err)
	}
	if n, err := server.Read(make([]byte, 10)); n != 0 || !isReset(err) {
		t.Errorf("idle backend: %d, %v; want a reset", n, err)
	}
	if r := p.Stats()[0].Routes[0]; r.IdleTimeouts != 1 {
		t.Errorf("idle timeouts = %d", r.IdleTimeouts)
	}
}

func TestManyShortConnections(t *testing.T) {
	port := freePort(t)
	startBackend(t, "echo", "127.0.0.2", port, false, func(c net.Conn) {
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.Copy(c, c)
	})
	p := startProxy(t, spliceConfig(port, fastSettings(), route("", &backend{addr: netip.MustParseAddr("127.0.0.2")})))
	hello := clientHello(t, "many.test")
	base := baseline(t)
	const n = 1000
	for i := range n {
		c, err := net.Dial("tcp", vipAddr(port))
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		c.SetDeadline(time.Now().Add(10 * time.Second))
		c.Write(hello)
		c.(*net.TCPConn).CloseWrite()
		got, err := io.ReadAll(c)
		c.Close()
		if err != nil || !bytes.Equal(got, hello) {
			t.Fatalf("connection %d: echoed %d bytes, %v", i, len(got), err)
		}
	}
	base.check(t)
	waitFor(t, "the counters", func() bool {
		r := p.Stats()[0].Routes[0]
		return r.Connections == n && r.Active == 0 && r.BytesUp == n*uint64(len(hello)) && r.BytesDown == r.BytesUp
	})
}

func TestLargeTransfer(t *testing.T) {
	if testing.Short() {
		t.Skip("moves 200 MB")
	}
	port := freePort(t)
	tlsBackend := startBackend(t, "big", "127.0.0.2", port, true, nil)
	p := startProxy(t, spliceConfig(port, fastSettings(), route("big.example.com", tlsBackend)))
	base := baseline(t)
	const size = 100 << 20
	c, err := tls.Dial("tcp", vipAddr(port), &tls.Config{ServerName: "big.example.com", InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	r := bufio.NewReader(c)
	if line, err := r.ReadString('\n'); err != nil || line != "big\n" {
		t.Fatalf("greeting %q, %v", line, err)
	}
	if err := lab.EchoRoundTrip(c, r, size); err != nil {
		t.Fatal(err)
	}
	c.Close()
	base.check(t)
	rs := p.Stats()[0].Routes[0]
	if rs.BytesUp < size || rs.BytesDown < size {
		t.Errorf("route bytes up %d down %d, want both >= %d", rs.BytesUp, rs.BytesDown, size)
	}
	t.Logf("100 MB each way through one proxied TLS connection; route counted %d bytes up, %d down", rs.BytesUp, rs.BytesDown)
}

func TestReload(t *testing.T) {
	port := freePort(t)
	one := startBackend(t, "one", "127.0.0.2", port, true, nil)
	two := startBackend(t, "two", "127.0.0.3", port, true, nil)
	p := startProxy(t, spliceConfig(port, fastSettings(), route("a.example.com", one)))
	if _, cn, err := tlsGet(port, "a.example.com"); err != nil || cn != "one" {
		t.Fatalf("before: %q, %v", cn, err)
	}

	// A VIP whose port is taken fails in Prepare, and nothing changes.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	bad := spliceConfig(port, fastSettings(), route("a.example.com", two))
	extra := bad.VIPs[0]
	extra.Port = uint16(taken.Addr().(*net.TCPAddr).Port)
	bad.VIPs = append(bad.VIPs, extra)
	if _, err := p.Prepare(bad); err == nil || !strings.Contains(err.Error(), "vip[1].address: listen on") {
		t.Fatalf("Prepare with a taken port: %v", err)
	}
	if _, cn, err := tlsGet(port, "a.example.com"); err != nil || cn != "one" {
		t.Fatalf("after a failed prepare: %q, %v", cn, err)
	}

	// Abort changes nothing; Commit moves new connections.
	next := spliceConfig(port, fastSettings(), route("a.example.com", two), route("b.example.com", one))
	pd, err := p.Prepare(next)
	if err != nil {
		t.Fatal(err)
	}
	pd.Abort()
	if _, cn, err := tlsGet(port, "a.example.com"); err != nil || cn != "one" {
		t.Fatalf("after abort: %q, %v", cn, err)
	}
	if pd, err = p.Prepare(next); err != nil {
		t.Fatal(err)
	}
	pd.Commit()
	if _, cn, err := tlsGet(port, "a.example.com"); err != nil || cn != "two" {
		t.Fatalf("after commit: %q, %v", cn, err)
	}
	if _, cn, err := tlsGet(port, "b.example.com"); err != nil || cn != "one" {
		t.Fatalf("new route after commit: %q, %v", cn, err)
	}
	// The route a.example.com kept its counters; the VIP's listener too.
	if r := p.Stats()[0].Routes[0]; r.SNI != "a.example.com" || r.Connections != 4 {
		t.Errorf("a.example.com after reload: %+v", r)
	}

	// A config without splice VIPs closes the listener.
	pd, err = p.Prepare(&config.Config{})
	if err != nil {
		t.Fatal(err)
	}
	pd.Commit()
	if c, err := net.DialTimeout("tcp", vipAddr(port), time.Second); err == nil {
		c.Close()
		t.Error("the removed VIP still accepts")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
}

// A ClientHello split over several records, sent in pieces, is reassembled
// and routed, and the backend gets the bytes exactly as the client sent them.
func TestSplitHello(t *testing.T) {
	port := freePort(t)
	accepted := rawBackend(t, port)
	startProxy(t, spliceConfig(port, fastSettings(), route("split.example.com", &backend{addr: netip.MustParseAddr("127.0.0.2")})))
	hello := clientHello(t, "split.example.com")
	var records []byte
	for msg := hello[5:]; len(msg) > 0; {
		n := min(100, len(msg))
		records = append(records, 22, 3, 1, byte(n>>8), byte(n))
		records = append(records, msg[:n]...)
		msg = msg[n:]
	}
	c, err := net.Dial("tcp", vipAddr(port))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for i := 0; i < len(records); i += 37 {
		c.Write(records[i:min(i+37, len(records))])
		time.Sleep(time.Millisecond)
	}
	var server net.Conn
	select {
	case server = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("the backend got no connection")
	}
	defer server.Close()
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len(records))
	if _, err := io.ReadFull(server, got); err != nil || !bytes.Equal(got, records) {
		t.Fatalf("backend read %v, equal %v", err, bytes.Equal(got, records))
	}
}

// A route backend whose health check fails leaves the route's table: every
// new connection goes to the backend that is up, and stats say why.
func TestHealthCheckedRoute(t *testing.T) {
	port := freePort(t)
	up := startBackend(t, "up", "127.0.0.2", port, true, nil)
	startBackend(t, "down", "127.0.0.3", port, true, nil)
	r := route("h.example.com", up, &backend{addr: netip.MustParseAddr("127.0.0.3")})
	// The down backend serves TLS, but its check probes a port nothing
	// listens on.
	r.Backends[1].Health = config.HealthCheck{Kind: config.HealthTCP, Port: freePort(t), Interval: 50 * time.Millisecond, Timeout: 20 * time.Millisecond, Rise: 1, Fall: 1}
	p := startProxy(t, spliceConfig(port, fastSettings(), r))
	waitFor(t, "the check to fail", func() bool { return p.Stats()[0].Routes[0].Backends[1].Health == "down" })
	for range 20 {
		if _, cn, err := tlsGet(port, "h.example.com"); err != nil || cn != "up" {
			t.Fatalf("with one backend down: reached %q, %v", cn, err)
		}
	}
	if b := p.Stats()[0].Routes[0].Backends[1]; b.Connections != 0 || b.HealthError == "" {
		t.Errorf("down backend: %+v", b)
	}
}

// Lookup, given a connection's source and server name, names the backend
// the proxy really sent it to (in routes with several backends), the
// default route's for unmatched names, and ErrNoRoute without a default.
func TestLookupAgrees(t *testing.T) {
	port := freePort(t)
	be := map[string]*backend{}
	for i, name := range []string{"api1", "api2", "api3", "dflt"} {
		be[name] = startBackend(t, name, fmt.Sprintf("127.0.0.%d", i+2), port, true, nil)
	}
	cfg := spliceConfig(port, fastSettings(), route("api.example.com", be["api1"], be["api2"], be["api3"]), route("", be["dflt"]))
	startProxy(t, cfg)
	v := cfg.VIPs[0]
	seen := map[string]int{}
	for i := range 60 {
		name := []string{"api.example.com", "other.test"}[i%2]
		d := net.Dialer{Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(&d, "tcp", vipAddr(port), &tls.Config{ServerName: name, InsecureSkipVerify: true})
		if err != nil {
			t.Fatal(err)
		}
		cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName
		src := c.LocalAddr().(*net.TCPAddr).AddrPort()
		c.Close()
		r, b, err := Lookup(v, src, name)
		if err != nil || b.Address != be[cn].addr {
			t.Fatalf("%s from %s: served by %s (%s), Lookup says %s route %s, %v", name, src, cn, be[cn].addr, b.Address, r.Name(), err)
		}
		seen[cn]++
	}
	if len(seen) < 3 {
		t.Errorf("connections reached %v: want api.example.com's spread over several backends", seen)
	}
	noDefault := spliceConfig(port, fastSettings(), route("api.example.com", be["api1"])).VIPs[0]
	if _, _, err := Lookup(noDefault, netip.MustParseAddrPort("127.0.0.1:40000"), ""); !errors.Is(err, ErrNoRoute) {
		t.Errorf("no server name, no default route: %v, want ErrNoRoute", err)
	}
	if _, _, err := Lookup(config.VIP{Forward: config.IPIP}, netip.MustParseAddrPort("127.0.0.1:40000"), "x"); err == nil {
		t.Error("Lookup of a VIP that is not a splice VIP succeeded")
	}
}
