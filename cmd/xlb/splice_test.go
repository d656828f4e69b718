package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/lab"
	"github.com/xlbproject/xlb/proxy"
)

// spliceConfig is the lab's balancer with one ipip VIP on port 80 and, on
// the same address, splice VIPs on 443 (routes by name to be1, be2, be3,
// the last the default unless noDefault) and 8443 (big.example.com to be1).
func spliceConfig(socket string, noDefault bool) string {
	var b strings.Builder
	b.WriteString(configText(socket, 80, []int{1, 1, 1}))
	route := func(sni string, be int) {
		if sni == "" {
			b.WriteString("\n  [[vip.route]]\n  default = true\n")
		} else {
			fmt.Fprintf(&b, "\n  [[vip.route]]\n  sni = %q\n", sni)
		}
		fmt.Fprintf(&b, "    [[vip.route.backend]]\n    address = %q\n", labBackends[be].Addr())
	}
	fmt.Fprintf(&b, "\n[[vip]]\naddress = %q\nport = 443\nforward = \"splice\"\nhello_timeout = \"500ms\"\n", labVIP)
	route("api.example.com", 0)
	route("*.example.com", 1)
	if !noDefault {
		route("", 2)
	}
	fmt.Fprintf(&b, "\n[[vip]]\naddress = %q\nport = 8443\nforward = \"splice\"\n", labVIP)
	route("big.example.com", 0)
	return b.String()
}

// startTLSBackends runs `openssl s_server` on port 443 of every backend,
// each with a self-signed certificate for CN=its name, serving its name as
// /name.txt.
func startTLSBackends(t *testing.T, l *lbLab) {
	t.Helper()
	openssl := testenv.Tool(t, "openssl")
	for _, h := range l.backends {
		dir := t.TempDir()
		key, cert := filepath.Join(dir, "key.pem"), filepath.Join(dir, "cert.pem")
		if out, err := exec.Command(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
			"-keyout", key, "-out", cert, "-days", "1", "-subj", "/CN="+h.Name).CombinedOutput(); err != nil {
			t.Fatalf("openssl req: %v: %s", err, out)
		}
		if err := os.WriteFile(filepath.Join(dir, "name.txt"), []byte(h.Name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := h.Command(context.Background(), openssl, "s_server", "-accept", "443", "-cert", cert, "-key", key, "-WWW", "-quiet")
		cmd.Dir = dir
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	}
	// Ready when each answers.
	for _, h := range l.backends {
		addr := net.JoinHostPort(labBackends[backendIndex(l, h)].Addr().String(), "443")
		deadline := time.Now().Add(10 * time.Second)
		for {
			c, err := l.lb.Dial(context.Background(), "tcp", addr)
			if err == nil {
				c.Close()
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("s_server on %s: %v", h.Name, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func backendIndex(l *lbLab, h *lab.Host) int {
	for i, b := range l.backends {
		if b == h {
			return i
		}
	}
	panic("no such backend")
}

// curlName fetches /name.txt as name through the VIP from the client and
// returns the body and the certificate's subject CN that curl saw.
func curlName(t *testing.T, l *lbLab, name string, extra ...string) (body, cn string, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args := append([]string{"-sS", "-k", "-v", "--max-time", "10", "--resolve", name + ":443:" + labVIP.String()}, extra...)
	args = append(args, "https://"+name+"/name.txt")
	var stdout, stderr bytes.Buffer
	cmd := l.client.Command(ctx, testenv.Tool(t, "curl"), args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	for line := range strings.SplitSeq(stderr.String(), "\n") {
		if _, s, ok := strings.Cut(line, "subject: CN="); ok {
			cn = strings.TrimSpace(s)
		}
	}
	if err != nil {
		return "", cn, fmt.Errorf("curl %s: %w: %s", name, err, stderr.String())
	}
	return strings.TrimSpace(stdout.String()), cn, nil
}

// sClient runs openssl s_client from the client with args and returns the
// subject it prints, or "" if the handshake failed.
func sClient(t *testing.T, l *lbLab, args ...string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	args = append([]string{"s_client", "-connect", net.JoinHostPort(labVIP.String(), "443")}, args...)
	cmd := l.client.Command(ctx, testenv.Tool(t, "openssl"), args...)
	cmd.Stdin = strings.NewReader("")
	out, _ := cmd.CombinedOutput()
	for line := range strings.SplitSeq(string(out), "\n") {
		if s, ok := strings.CutPrefix(line, "subject=CN = "); ok {
			return strings.TrimSpace(s)
		}
	}
	return ""
}

// expectReset connects from the client to VIP:443, sends send, and expects
// the balancer to reset the connection.
func expectReset(t *testing.T, l *lbLab, what string, send []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := l.client.Dial(ctx, "tcp", net.JoinHostPort(labVIP.String(), "443"))
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	defer c.Close()
	if send != nil {
		c.Write(send)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := c.Read(make([]byte, 100)); n != 0 || !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("%s: read %d bytes, %v; want a reset", what, n, err)
	}
}

func spliceStats(t *testing.T, l *lbLab) []proxy.VIPStats {
	t.Helper()
	return stats(t, l).Splice
}

// xlbFDs lists the running xlb's open file descriptors as "fd -> link
// target", apart from those of the Go runtime's splice pipe cache, which it
// lists on their own.
//
// io.Copy between two TCP connections splices through a pipe taken from a
// sync.Pool in internal/poll (splicePipePool) and put back when the copy
// ends: each pipe outlives its connection and serves the next ones. The
// cache holds as many pipes as were in use at once (two per connection,
// one each way), and only a garbage collection closes them, through a
// runtime cleanup; an xlb at rest may not collect for two minutes. How many
// it holds thus depends on how the connections overlapped: on a loaded
// machine three pipes where the baseline had two, which is no leak. These
// pipes are the only ones whose read and write ends are both xlb's (its
// stdout and stderr are write ends only).
func xlbFDs(t *testing.T, l *lbLab) (held, pipeCache []string) {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d/fd", l.xlb.Process.Pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	type fd struct{ name, target string }
	var fds []fd
	ends := map[string]int{} // pipe target -> bit 1 a read end, bit 2 a write end
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err != nil {
			continue // closed since ReadDir
		}
		fds = append(fds, fd{e.Name(), target})
		if strings.HasPrefix(target, "pipe:") {
			ends[target] |= pipeEnd(t, l, e.Name())
		}
	}
	for _, f := range fds {
		s := f.name + " -> " + f.target
		if ends[f.target] == 3 {
			pipeCache = append(pipeCache, s)
		} else {
			held = append(held, s)
		}
	}
	return held, pipeCache
}

// pipeEnd tells from /proc/PID/fdinfo whether xlb's fd (a pipe) is open
// for reading (1) or writing (2); 0 if it has been closed since.
func pipeEnd(t *testing.T, l *lbLab, fd string) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/fdinfo/%s", l.xlb.Process.Pid, fd))
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "flags:"); ok {
			flags, err := strconv.ParseUint(strings.TrimSpace(v), 8, 32)
			if err != nil {
				t.Fatalf("fdinfo of fd %s: %q: %v", fd, line, err)
			}
			if flags&syscall.O_ACCMODE == syscall.O_RDONLY {
				return 1
			}
			return 2
		}
	}
	return 0
}

// waitNothingLeft waits (15 s at most) until xlb holds no more fds than
// before (its splice pipe cache aside), the balancer no socket on the
// splice ports (see lbSockets) and the splice table no pair.
func waitNothingLeft(t *testing.T, l *lbLab, before []string, when string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		now, pipes := xlbFDs(t, l)
		left := lbSockets(t, l)
		table := stats(t, l).SpliceTable
		if len(now) <= len(before) && len(left) == 0 && table != nil && table.Pairs == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: splice table %+v; xlb has %d fds besides its splice pipe cache (was %d); sockets left: %v\n"+
				"fds now:\n\t%s\nfds before:\n\t%s\nsplice pipe cache now:\n\t%s",
				when, table, len(now), len(before), left, strings.Join(now, "\n\t"), strings.Join(before, "\n\t"), strings.Join(pipes, "\n\t"))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// lbSockets lists the balancer's TCP sockets on the splice ports that are
// neither listening nor in TIME_WAIT (which holds no file and no memory of
// xlb's, and ends by itself).
func lbSockets(t *testing.T, l *lbLab) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := l.lb.Command(ctx, "ss", "-Htan", "( sport = :443 or dport = :443 or sport = :8443 or dport = :8443 )").CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v: %s", err, out)
	}
	var left []string
	for line := range strings.SplitSeq(strings.TrimSpace(string(out)), "\n") {
		if line != "" && !strings.HasPrefix(line, "LISTEN") && !strings.HasPrefix(line, "TIME-WAIT") {
			left = append(left, line)
		}
	}
	return left
}

// TestSpliceRoutesTLS runs xlb with splice VIPs in the lab: curl and openssl
// s_client reach, for each of three names, a backend of that name's route
// and get its certificate; connections that cannot be routed are reset and
// counted; 100 MB each way through one connection arrive intact; the
// steering program leaves the splice VIPs' packets to the kernel; 1,000
// short connections leave no fd in xlb (but the Go runtime's cache of
// splice pipes, see xlbFDs), no socket on the balancer and no pair in the
// splice table (on by default: the phase 1 cases hold with it).
func TestSpliceRoutesTLS(t *testing.T) {
	testenv.Tool(t, "openssl")
	testenv.Tool(t, "curl")
	l, logw := labForTest(t, func(dir string) (*lbLab, error) {
		return newLBLab(fmt.Sprintf("xlbs%d", os.Getpid()%100000), xlbBin, dir)
	})
	ctx := context.Background()
	cfg := spliceConfig(l.socketPath(), false)
	// The VIP is not local yet: xlb check says so and how to fix it.
	file := filepath.Join(l.dir, "check.toml")
	if err := os.WriteFile(file, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := l.lb.Command(ctx, xlbBin, "check", "-c", file).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "vip[1].address: 198.18.100.1 is not an address of this host") {
		t.Fatalf("xlb check without the VIP on the balancer: %v: %s", err, out)
	}
	if err := l.lb.Run(ctx, "ip", "address", "add", labVIP.String()+"/32", "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	out, err = l.lb.Command(ctx, xlbBin, "check", "-c", file).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "splice table: 32768 connection pairs handed to the steering program once quiescent") {
		t.Fatalf("xlb check with the VIP on the balancer: %v: %s", err, out)
	}
	startTLSBackends(t, l)
	// A Go TLS echo server on be1:8443 for the large transfer.
	startTLSEcho(t, l, 8443)
	if err := l.startXLB(cfg, logw); err != nil {
		t.Fatal(err)
	}
	before := stats(t, l).Steer

	want := map[string]string{"api.example.com": "be1", "www.example.com": "be2", "other.test": "be3", "a.b.example.com": "be3"}
	for name, be := range want {
		for range 3 {
			body, cn, err := curlName(t, l, name)
			if err != nil {
				t.Fatal(err)
			}
			if body != be || cn != be {
				t.Fatalf("%s: served by %q with the certificate of %q, want %s", name, body, cn, be)
			}
		}
		if got := sClient(t, l, "-servername", name); got != be {
			t.Errorf("openssl s_client -servername %s: certificate of %q, want %s", name, got, be)
		}
	}
	if got := sClient(t, l, "-noservername"); got != "be3" {
		t.Errorf("openssl s_client -noservername: certificate of %q, want be3 (the default route)", got)
	}
	expectReset(t, l, "http on the TLS port", []byte("GET / HTTP/1.0\r\n\r\n"))
	expectReset(t, l, "silent client", nil)

	bigTransfer(t, l)

	// Bytes are counted when a connection ends: just after the client sees
	// its end if the pair stayed copied, but if the proxy spliced it (it
	// may, whenever the transfer pauses long enough to look quiescent),
	// only once both FINs have been quiet for the proxy's grace of 10 s
	// (proxy.finGrace), found by its next sweep.
	var st []proxy.VIPStats
	deadline := time.Now().Add(30 * time.Second)
	for st = spliceStats(t, l); len(st) == 2 && st[1].Routes[0].Active != 0 && time.Now().Before(deadline); st = spliceStats(t, l) {
		time.Sleep(20 * time.Millisecond)
	}
	if len(st) != 2 {
		t.Fatalf("splice stats: %+v", st)
	}
	conns := map[string]uint64{}
	for _, r := range st[0].Routes {
		conns[r.SNI] = r.Connections
		if r.Active != 0 || r.BytesDown == 0 {
			t.Errorf("route %s: %+v", r.SNI, r)
		}
	}
	if conns["api.example.com"] != 4 || conns["*.example.com"] != 4 || conns["default"] != 9 {
		t.Errorf("route connections %v, want api 4, wildcard 4, default 9", conns)
	}
	if r := st[0].Refused; r["not_tls"] != 1 || r["timeout"] != 1 {
		t.Errorf("refused %v, want not_tls 1 and timeout 1", r)
	}
	// What the proxy copied, and what the datapath forwarded (whole
	// frames) if it spliced the pair.
	if r := st[1].Routes[0]; r.Connections != 1 || r.BytesUp+r.SplicedBytesUp < 100<<20 || r.BytesDown+r.SplicedBytesDown < 100<<20 {
		t.Errorf("big route: %+v", r)
	}
	// None of it went through the datapath: the steering program passed
	// the splice VIPs' packets on to the kernel.
	after := stats(t, l).Steer
	if after.Redirected != before.Redirected || after.Passed-before.Passed < 1000 {
		t.Errorf("steering: redirected %d -> %d, passed %d -> %d; want splice traffic passed, none redirected",
			before.Redirected, after.Redirected, before.Passed, after.Passed)
	}
	text := runXLB(t, l.lb, "stats", "--socket", l.socketPath())
	t.Logf("xlb stats:\n%s", text)
	if !strings.Contains(text, "splice vip 198.18.100.1:443") || !strings.Contains(text, "route api.example.com") ||
		!strings.Contains(text, "not_tls=1") {
		t.Errorf("xlb stats does not show the splice counters:\n%s", text)
	}

	// Reload without a default route: unknown and missing names are reset
	// and counted, known ones still route.
	fds, _ := xlbFDs(t, l)
	if out, err := reloadWith(t, l, spliceConfig(l.socketPath(), true)); err != nil {
		t.Fatalf("reload: %v: %s", err, out)
	}
	if got := sClient(t, l, "-servername", "other.test"); got != "" {
		t.Errorf("unknown name after the reload reached %q", got)
	}
	if got := sClient(t, l, "-noservername"); got != "" {
		t.Errorf("no name after the reload reached %q", got)
	}
	if body, _, err := curlName(t, l, "api.example.com"); err != nil || body != "be1" {
		t.Errorf("api.example.com after the reload: %q, %v", body, err)
	}
	if r := spliceStats(t, l)[0].Refused; r["unknown_sni"] != 1 || r["no_sni"] != 1 {
		t.Errorf("refused after the reload: %v", r)
	}

	// 1,000 short connections in a row (TLS handshakes with be2's
	// s_server) leave nothing behind in xlb or the balancer.
	for i := range 1000 {
		if cn, err := handshake(l, "x"+strconv.Itoa(i)+".example.com"); err != nil || cn != "be2" {
			t.Fatalf("connection %d: certificate of %q, %v", i, cn, err)
		}
	}
	waitNothingLeft(t, l, fds, "after 1000 connections")
}

// handshake connects to the lab's VIP on 443 from the client as name (see
// handshakeTo).
func handshake(l *lbLab, name string) (string, error) {
	return handshakeTo(l, netip.AddrPortFrom(labVIP, 443), name)
}

// handshakeTo connects to vip from the client as name, completes the TLS
// handshake, closes, and returns the CN of the certificate it got.
func handshakeTo(l *lbLab, vip netip.AddrPort, name string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, err := l.client.Dial(ctx, "tcp", vip.String())
	if err != nil {
		return "", err
	}
	c := tls.Client(raw, &tls.Config{ServerName: name, InsecureSkipVerify: true})
	defer c.Close()
	if err := c.HandshakeContext(ctx); err != nil {
		return "", err
	}
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

// be1TLSListener listens on be1's port with be1's self-signed certificate.
func be1TLSListener(t *testing.T, l *lbLab, port uint16) net.Listener {
	t.Helper()
	ln, err := l.backends[0].Listen("tcp", net.JoinHostPort("0.0.0.0", strconv.Itoa(int(port))))
	if err != nil {
		t.Fatal(err)
	}
	cert, err := lab.SelfSigned("be1")
	if err != nil {
		t.Fatal(err)
	}
	return tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
}

// startTLSEcho runs a Go TLS server on be1's port that echoes what it
// reads.
func startTLSEcho(t *testing.T, l *lbLab, port uint16) {
	t.Helper()
	ln := be1TLSListener(t, l, port)
	wait := lab.Serve(ln, lab.Echo)
	t.Cleanup(func() { ln.Close(); wait() })
}

// bigTransfer sends 100 MB through the 8443 splice VIP to be1's echo
// server and checks that the same 100 MB come back.
func bigTransfer(t *testing.T, l *lbLab) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	raw, err := l.client.Dial(ctx, "tcp", net.JoinHostPort(labVIP.String(), "8443"))
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, &tls.Config{ServerName: "big.example.com", InsecureSkipVerify: true})
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Minute))
	if err := c.Handshake(); err != nil {
		t.Fatal(err)
	}
	if cn := c.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != "be1" {
		t.Fatalf("big.example.com: certificate of %q", cn)
	}
	if err := lab.EchoRoundTrip(c, c, 100<<20); err != nil {
		t.Fatal(err)
	}
	t.Log("100 MB each way through one splice VIP connection arrived intact")
}

// TestLookupSplice: `xlb lookup` answers for a splice VIP given the server
// name (--sni), and says what is missing or wrong otherwise.
func TestLookupSplice(t *testing.T) {
	file := filepath.Join(t.TempDir(), "xlb.toml")
	if err := os.WriteFile(file, []byte(spliceConfig("/run/xlb-test.sock", false)), 0o600); err != nil {
		t.Fatal(err)
	}
	src, vip := "198.18.0.1:40000", net.JoinHostPort(labVIP.String(), "443")
	for _, tt := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"--sni", "api.example.com", "tcp", src, vip}, exitOK, labBackends[0].Addr().String() + " (route api.example.com)\n"},
		{[]string{"--sni", "www.example.com", "tcp", src, vip}, exitOK, labBackends[1].Addr().String() + " (route *.example.com)\n"},
		{[]string{"--sni", "", "tcp", src, vip}, exitOK, labBackends[2].Addr().String() + " (route default)\n"},
		{[]string{"tcp", src, vip}, exitUsage, "is a splice VIP, routed by the server name: give --sni NAME"},
		{[]string{"--sni", "api.example.com", "tcp", src, net.JoinHostPort(labVIP.String(), "80")}, exitUsage, "--sni is for splice VIPs"},
		{[]string{"tcp", src, net.JoinHostPort(labVIP.String(), "80")}, exitOK, ""},
	} {
		var out, errb bytes.Buffer
		code := run(&env{stdout: &out, stderr: &errb}, append([]string{"lookup", "-c", file}, tt.args...))
		got := out.String() + errb.String()
		if code != tt.code || !strings.Contains(got, tt.want) {
			t.Errorf("xlb lookup %q: exit %d: %q; want exit %d and %q", tt.args, code, got, tt.code, tt.want)
		}
	}
}

// spliceRoute is the stats of the 8443 VIP's route (big.example.com to be1).
func spliceRoute(t *testing.T, l *lbLab) proxy.RouteStats {
	t.Helper()
	st := spliceStats(t, l)
	if len(st) != 2 {
		t.Fatalf("splice stats: %+v", st)
	}
	return st[1].Routes[0]
}

// waitRoute polls the 8443 route's stats until ok says yes (bounded).
func waitRoute(t *testing.T, l *lbLab, what string, ok func(proxy.RouteStats) bool) proxy.RouteStats {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := spliceRoute(t, l)
		if ok(r) {
			return r
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: route stats %+v", what, r)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// tlsTo connects from the client to the 8443 VIP as big.example.com and
// completes the handshake (be1's echo server answers).
func tlsTo(t *testing.T, l *lbLab) *tls.Conn {
	t.Helper()
	return tlsAs(t, l, 8443, "big.example.com")
}

// tlsAs connects from the client to the VIP's port as name and completes
// the handshake.
func tlsAs(t *testing.T, l *lbLab, port int, name string) *tls.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	raw, err := l.client.Dial(ctx, "tcp", net.JoinHostPort(labVIP.String(), strconv.Itoa(port)))
	if err != nil {
		t.Fatal(err)
	}
	c := tls.Client(raw, &tls.Config{ServerName: name, InsecureSkipVerify: true})
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(3 * time.Minute))
	if err := c.HandshakeContext(ctx); err != nil {
		t.Fatal(err)
	}
	return c
}

// socketCounters returns `ss -tinH` of the balancer's sockets on port 8443
// other than the listener: what each has received (bytes_received,
// segs_in), one line per socket.
func socketCounters(t *testing.T, l *lbLab) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := l.lb.Command(ctx, "ss", "-tinH", "state", "established", "( sport = :8443 or dport = :8443 )").CombinedOutput()
	if err != nil {
		t.Fatalf("ss: %v: %s", err, out)
	}
	var socks []string
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i := 0; i+1 < len(lines); i += 2 {
		var got []string
		for f := range strings.FieldsSeq(lines[i+1]) {
			if strings.HasPrefix(f, "bytes_received:") || strings.HasPrefix(f, "segs_in:") {
				got = append(got, f)
			}
		}
		socks = append(socks, strings.Join(strings.Fields(lines[i])[2:], " ")+" "+strings.Join(got, " "))
	}
	return socks
}

// TestSpliceHandover runs xlb with splice_table_size = 2: a connection that
// goes quiet after its TLS handshake is handed to the datapath, and 100 MB
// each way then go through it intact while neither of xlb's two sockets
// receives another segment, and the splice counters account for the
// packets; with the table full a third connection stays copied, counted,
// and works; a reset and a close from the client end spliced pairs, so do
// a reset and a close from the backend, and idle_timeout (xlb resets both
// peers), and nothing is left behind (no pair, socket or fd); a backend
// without TCP timestamps stays copied (options_mismatch) and works;
// stopping xlb resets both peers of a spliced pair.
func TestSpliceHandover(t *testing.T) {
	testenv.Tool(t, "ss")
	l, logw := labForTest(t, func(dir string) (*lbLab, error) {
		return newLBLab(fmt.Sprintf("xlbh%d", os.Getpid()%100000), xlbBin, dir)
	})
	if err := l.lb.Run(context.Background(), "ip", "address", "add", labVIP.String()+"/32", "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	startTLSEcho(t, l, 8443)
	backendEnds := startTLSCommands(t, l, 443)
	cfg := strings.Replace(spliceConfig(l.socketPath(), false), "queues = [0]\n", "queues = [0]\nsplice_table_size = 2\n", 1)
	cfg = strings.Replace(cfg, "hello_timeout = \"500ms\"\n", "hello_timeout = \"500ms\"\nidle_timeout = \"2s\"\n", 1)
	if err := l.startXLB(cfg, logw); err != nil {
		t.Fatal(err)
	}
	fds, _ := xlbFDs(t, l)

	// The big one: handshake, pause until spliced, then 100 MB each way.
	c := tlsTo(t, l)
	waitRoute(t, l, "first connection spliced", func(r proxy.RouteStats) bool { return r.SplicedActive == 1 })
	before := socketCounters(t, l)
	if len(before) != 2 {
		t.Fatalf("xlb's sockets of the spliced pair: %q", before)
	}
	if err := lab.EchoRoundTrip(c, c, 100<<20); err != nil {
		t.Fatal(err)
	}
	if after := socketCounters(t, l); !slices.Equal(before, after) {
		t.Errorf("xlb's sockets received segments after the splice:\nbefore %q\nafter  %q", before, after)
	}
	t.Log("100 MB each way through a spliced connection arrived intact; xlb's sockets received nothing")

	// The table holds two pairs: a second is spliced, a third stays copied
	// and works all the same.
	c2 := tlsTo(t, l)
	waitRoute(t, l, "second connection spliced", func(r proxy.RouteStats) bool { return r.SplicedActive == 2 })
	c3 := tlsTo(t, l)
	waitRoute(t, l, "third connection copied", func(r proxy.RouteStats) bool { return r.StayedCopied["splice_table_full"] == 1 })
	for i, cc := range []*tls.Conn{c2, c3} {
		msg := []byte("hello " + strconv.Itoa(i))
		if _, err := cc.Write(msg); err != nil {
			t.Fatal(err)
		}
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(cc, got); err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("connection %d: echo %q, %v", i+2, got, err)
		}
	}

	// A reset from the client ends its spliced pair (after a 1 s grace); a
	// close from both sides too (after 10 s); the copied one as in phase 1.
	raw := c2.NetConn().(*net.TCPConn)
	raw.SetLinger(0)
	raw.Close()
	c.Close()
	c3.Close()
	r := waitRoute(t, l, "every pair ended", func(r proxy.RouteStats) bool { return r.Active == 0 && r.SplicedActive == 0 })
	if r.Spliced != 2 || r.SplicedResets != 1 || r.SplicedPacketsUp < 100<<20/1500 || r.SplicedPacketsDown < 100<<20/1500 ||
		r.SplicedBytesUp < 100<<20 || r.SplicedBytesDown < 100<<20 {
		t.Errorf("route after the pairs ended: %+v", r)
	}
	waitNothingLeft(t, l, fds, "after the pairs ended")

	// On the 443 VIP (api.example.com to be1, idle_timeout 2s), whose
	// backend obeys commands: the backend closes, the backend resets, and
	// the pair idles out (xlb resets both peers itself).
	apiRoute := func() proxy.RouteStats { return spliceStats(t, l)[0].Routes[0] }
	// api connects as api.example.com and waits until the pair is spliced.
	api := func() *tls.Conn {
		spliced := apiRoute().Spliced
		c := tlsAs(t, l, 443, "api.example.com")
		deadline := time.Now().Add(30 * time.Second)
		for apiRoute().Spliced == spliced {
			if time.Now().After(deadline) {
				t.Fatalf("api connection not spliced: %+v", apiRoute())
			}
			time.Sleep(20 * time.Millisecond)
		}
		return c
	}
	// cleared waits until no pair is left in the table or the proxy.
	cleared := func(what string) {
		deadline := time.Now().Add(30 * time.Second)
		for {
			st := stats(t, l)
			if st.SpliceTable != nil && st.SpliceTable.Pairs == 0 && st.Splice[0].Routes[0].Active == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: pairs left: table %+v, api route %+v", what, st.SpliceTable, st.Splice[0].Routes[0])
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	readEnd := func(c *tls.Conn) error {
		_, err := io.ReadAll(c)
		return err
	}
	c = api()
	if _, err := c.Write([]byte("reset\n")); err != nil {
		t.Fatal(err)
	}
	if err := readEnd(c); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("backend reset: the client read %v, want a reset", err)
	}
	if err := <-backendEnds; err != nil {
		t.Errorf("backend reset: %v", err)
	}
	cleared("after the backend's reset")
	c = api()
	start := time.Now()
	if err := readEnd(c); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("idle spliced pair: the client read %v after %v, want a reset", err, time.Since(start))
	}
	if err := <-backendEnds; !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("idle spliced pair: the backend read %v, want a reset", err)
	}
	cleared("after the idle timeout")
	c = api()
	if _, err := c.Write([]byte("close\n")); err != nil {
		t.Fatal(err)
	}
	if err := readEnd(c); err != nil {
		t.Errorf("backend close: the client read %v, want the end", err)
	}
	c.NetConn().(*net.TCPConn).CloseWrite() // a FIN, no close_notify the backend would answer with a reset
	if err := <-backendEnds; err != nil {
		t.Errorf("backend close: %v", err)
	}
	cleared("after both closed")
	if r := apiRoute(); r.Spliced != 3 || r.SplicedResets != 1 || r.IdleTimeouts != 1 || r.StayedCopied["splice_table_full"] != 0 {
		t.Errorf("api route: %+v", r)
	}
	waitNothingLeft(t, l, fds, "after the api route's cases")
	text := runXLB(t, l.lb, "stats", "--socket", l.socketPath())
	t.Logf("xlb stats:\n%s", text)

	// A backend without TCP timestamps: the pair stays copied, counted,
	// and works.
	if err := l.backends[0].Sysctl("net.ipv4.tcp_timestamps", "0"); err != nil {
		t.Fatal(err)
	}
	c = tlsAs(t, l, 443, "api.example.com")
	deadline := time.Now().Add(30 * time.Second)
	for apiRoute().StayedCopied["options_mismatch"] != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("backend without timestamps: %+v", apiRoute())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := c.Write([]byte("close\n")); err != nil {
		t.Fatal(err)
	}
	if err := readEnd(c); err != nil {
		t.Errorf("copied pair: the client read %v, want the end", err)
	}
	if err := <-backendEnds; err != nil {
		t.Errorf("copied pair: %v", err)
	}
	if err := l.backends[0].Sysctl("net.ipv4.tcp_timestamps", "1"); err != nil {
		t.Fatal(err)
	}

	// Stopping xlb resets both peers of a spliced pair.
	c = api()
	if err := l.stopXLB(); err != nil {
		t.Fatal(err)
	}
	if err := readEnd(c); !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("xlb stopped: the client read %v, want a reset", err)
	}
	if err := <-backendEnds; !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("xlb stopped: the backend read %v, want a reset", err)
	}
}

// startTLSCommands runs a Go TLS server on be1's port that obeys one line
// from each connection: "close" (it closes), "reset" (it resets), and
// reports on the returned channel how each connection ended (nil after a
// close or a clean end of the client's, else the read error).
func startTLSCommands(t *testing.T, l *lbLab, port uint16) <-chan error {
	t.Helper()
	ln := be1TLSListener(t, l, port)
	ends := make(chan error, 16)
	wait := lab.Serve(ln, func(c net.Conn) {
		tc := c.(*tls.Conn)
		tc.SetDeadline(time.Now().Add(time.Minute))
		line := make([]byte, 6)
		n, err := io.ReadFull(tc, line)
		switch {
		case err != nil && n == 0:
			if errors.Is(err, io.EOF) {
				err = nil
			}
			ends <- err
		case string(line) == "reset\n":
			tcp := tc.NetConn().(*net.TCPConn)
			tcp.SetLinger(0)
			tcp.Close() // a reset alone, no close_notify before it
			ends <- nil
		default: // "close\n"
			ends <- nil
		}
	})
	t.Cleanup(func() { ln.Close(); wait() })
	return ends
}
