package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlbproject/xlb/engine"
	"github.com/xlbproject/xlb/lab"
)

// streamPort is where the backends run their echo servers (the lab's VIP
// serves every port).
const streamPort = 9000

// startEchoServers runs, in every backend, a server on vip:streamPort that
// first names itself ("be2\n") and then echoes every byte back.
func startEchoServers(t *testing.T, backends []*lab.Host, vip netip.Addr) {
	t.Helper()
	for _, h := range backends {
		ln, err := h.Listen("tcp", netip.AddrPortFrom(vip, streamPort).String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		name := h.Name
		lab.Serve(ln, func(c net.Conn) {
			if _, err := io.WriteString(c, name+"\n"); err != nil {
				return
			}
			lab.Echo(c)
		})
	}
}

// stream is one long-lived connection through xlb that sends a known byte
// pattern continuously and checks that the echo comes back complete and in
// order.
type stream struct {
	id       int
	conn     net.Conn
	backend  string
	sent     atomic.Int64
	verified atomic.Int64
	err      error // first error seen by the reader or writer
	errOnce  sync.Once
	done     chan struct{}
}

func patternByte(id int, off int64) byte { return byte((off*7 + int64(id)*13) % 251) }

func (s *stream) fail(err error) { s.errOnce.Do(func() { s.err = err }) }

// streams is a set of streams and the way to stop them.
type streams struct {
	list []*stream
	stop chan struct{}
	wg   sync.WaitGroup
}

// startStreams opens n streams from client to vip and keeps them busy.
func startStreams(t *testing.T, client *lab.Host, vip netip.Addr, n int) *streams {
	t.Helper()
	ss := &streams{stop: make(chan struct{})}
	for i := range n {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := client.Dial(ctx, "tcp", netip.AddrPortFrom(vip, streamPort).String())
		cancel()
		if err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
		s := &stream{id: i, conn: c, done: make(chan struct{})}
		r := bufio.NewReader(c)
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		name, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream %d: read backend name: %v", i, err)
		}
		s.backend = strings.TrimSpace(name)
		ss.list = append(ss.list, s)
		ss.wg.Add(2)
		go ss.write(s)
		go ss.read(s, r)
	}
	t.Cleanup(func() {
		for _, s := range ss.list {
			s.conn.Close()
		}
	})
	return ss
}

func (ss *streams) write(s *stream) {
	defer ss.wg.Done()
	buf := make([]byte, 2048)
	var off int64
	for {
		select {
		case <-ss.stop:
			// Half-close: the reader drains the echo of everything sent.
			if err := s.conn.(*net.TCPConn).CloseWrite(); err != nil {
				s.fail(fmt.Errorf("close write: %w", err))
			}
			return
		case <-time.After(2 * time.Millisecond):
		}
		for i := range buf {
			buf[i] = patternByte(s.id, off+int64(i))
		}
		_ = s.conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
		n, err := s.conn.Write(buf)
		off += int64(n)
		s.sent.Store(off)
		if err != nil {
			s.fail(fmt.Errorf("write after %d bytes: %w", off, err))
			return
		}
	}
}

func (ss *streams) read(s *stream, r *bufio.Reader) {
	defer ss.wg.Done()
	defer close(s.done)
	buf := make([]byte, 4096)
	var off int64
	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
		n, err := r.Read(buf)
		for i := range buf[:n] {
			if buf[i] != patternByte(s.id, off) {
				s.fail(fmt.Errorf("byte %d of the echo is wrong: data lost or reordered", off))
				return
			}
			off++
		}
		s.verified.Store(off)
		if errors.Is(err, io.EOF) {
			return
		}
		if err != nil {
			s.fail(fmt.Errorf("read after %d bytes: %w", off, err))
			return
		}
	}
}

// finish stops the writers, waits for every echo and checks each stream
// delivered every byte it sent, with no error (a reset shows up as one).
func (ss *streams) finish(t *testing.T) {
	t.Helper()
	close(ss.stop)
	done := make(chan struct{})
	go func() { ss.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("streams did not finish within 30s")
	}
	for _, s := range ss.list {
		if s.err != nil {
			t.Errorf("stream %d (on %s): %v", s.id, s.backend, s.err)
			continue
		}
		if s.sent.Load() != s.verified.Load() || s.sent.Load() == 0 {
			t.Errorf("stream %d (on %s): sent %d bytes, %d came back", s.id, s.backend, s.sent.Load(), s.verified.Load())
		}
	}
}

// progress waits until every stream has moved at least min more bytes, so
// a test knows traffic flowed across the event it is checking.
func (ss *streams) progress(t *testing.T, min int64) {
	t.Helper()
	start := make([]int64, len(ss.list))
	for i, s := range ss.list {
		start[i] = s.verified.Load()
	}
	deadline := time.Now().Add(20 * time.Second)
	for i, s := range ss.list {
		for s.verified.Load() < start[i]+min && s.err == nil {
			if time.Now().After(deadline) {
				t.Fatalf("stream %d stalled at %d bytes (on %s)", s.id, s.verified.Load(), s.backend)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// reloadWith rewrites the running instance's config file and reloads it
// through the real CLI; it returns the command's output and exit status.
func reloadWith(t *testing.T, l *lbLab, text string) (string, error) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(l.dir, "xlb.toml"), []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := l.lb.Command(context.Background(), l.bin, "reload", "--socket", l.socketPath()).CombinedOutput()
	return string(out), err
}

// TestReloadInvalidFileKeepsRunningConfig: a broken file is refused with its
// reason, nothing changes, and every stream keeps flowing.
func TestReloadInvalidFileKeepsRunningConfig(t *testing.T) {
	l := startLab(t, []int{1, 1, 1})
	startEchoServers(t, l.backends, labVIP)
	ss := startStreams(t, l.client, labVIP, 50)
	ss.progress(t, 8<<10)
	good := configText(l.socketPath(), 0, []int{1, 1, 1})
	for _, bad := range []struct{ text, want string }{
		{strings.Replace(good, "weight = 1", "weight = -1", 1), "vip[0].backend[0].weight"},
		{strings.Replace(good, "queues = [0]", "queues = [0]\nbogus = 1", 1), "datapath.bogus"},
	} {
		out, err := reloadWith(t, l, bad.text)
		if err == nil || !strings.Contains(out, bad.want) || !strings.Contains(out, "unchanged") {
			t.Errorf("reload of a bad file: err %v, output %q; want a refusal naming %s", err, out, bad.want)
		}
	}
	// A key that needs a restart is refused too.
	out, err := reloadWith(t, l, strings.Replace(good, "queues = [0]", "queues = [0]\nbatch_size = 32", 1))
	if err == nil || !strings.Contains(out, "restart") {
		t.Errorf("reload changing batch_size: err %v, output %q; want a restart-needed refusal", err, out)
	}
	ss.progress(t, 8<<10)
	ss.finish(t)
	if st := stats(t, l); st.Drops["no_vip"] != 0 || st.Drops["no_backend"] != 0 {
		t.Errorf("drops after refused reloads: %v", st.Drops)
	}
}

// TestLookupAgreesWithDatapath: for 200 real connections, `xlb lookup` on the
// running config names the backend that actually served the connection.
func TestLookupAgreesWithDatapath(t *testing.T) {
	l := startLab(t, []int{1, 2, 1})
	byName := map[string]netip.Addr{}
	for i, h := range l.backends {
		byName[h.Name] = labBackends[i].Addr()
	}
	file := filepath.Join(l.dir, "xlb.toml")
	for i := range 200 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := l.client.Dial(ctx, "tcp", netip.AddrPortFrom(labVIP, 80).String())
		cancel()
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		src := c.LocalAddr().(*net.TCPAddr).AddrPort()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		_, err = io.WriteString(c, "GET / HTTP/1.0\r\n\r\n")
		var resp []byte
		if err == nil {
			resp, err = io.ReadAll(c)
		}
		c.Close()
		if err != nil {
			t.Fatalf("connection %d from %s: %v", i, src, err)
		}
		_, body, _ := bytes.Cut(resp, []byte("\r\n\r\n"))
		served := byName[strings.TrimSpace(string(body))]
		out, err := l.lb.Command(context.Background(), l.bin, "lookup", "-c", file, "tcp", src.String(), netip.AddrPortFrom(labVIP, 80).String()).Output()
		if err != nil {
			t.Fatalf("xlb lookup: %v", err)
		}
		if got := strings.TrimSpace(string(out)); got != served.String() {
			t.Fatalf("connection from %s was served by %s, xlb lookup says %s", src, served, got)
		}
	}
}

// TestReloadKeepsFlows: 50 long-lived connections, each sending all the
// time, survive with no reset and no byte lost or reordered while the
// running instance reloads to add a backend, change weights and drain a
// backend; new connections follow the new config. In both modes: the
// native program's maps are rewritten from the same plan.
func TestReloadKeepsFlows(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) { reloadKeepsFlows(t, mode) })
	}
}

func reloadKeepsFlows(t *testing.T, mode string) {
	l := startLab(t, nil)
	if err := l.startXLB(withMode(configText(l.socketPath(), 0, []int{1, 1}), mode), io.Discard); err != nil {
		t.Fatal(err)
	}
	startEchoServers(t, l.backends, labVIP)
	ss := startStreams(t, l.client, labVIP, 50)
	ss.progress(t, 16<<10)
	steps := []struct {
		name    string
		weights []int
		want    string
	}{
		{"add a backend", []int{1, 1, 1}, "backend 198.18.0.13 added"},
		{"change weights", []int{3, 1, 1}, "backend 198.18.0.11 weight 1 -> 3"},
		{"drain a backend", []int{3, 0, 1}, "backend 198.18.0.12 weight 1 -> 0"},
	}
	for _, s := range steps {
		out, err := reloadWith(t, l, withMode(configText(l.socketPath(), 0, s.weights), mode))
		if err != nil || !strings.Contains(out, s.want) {
			t.Fatalf("%s: reload: %v: %s", s.name, err, out)
		}
		ss.progress(t, 16<<10)
	}
	onDrained := 0
	for _, s := range ss.list {
		if s.backend == "be2" {
			onDrained++
		}
	}
	if onDrained == 0 {
		t.Error("no stream was on the drained backend: the drain proves nothing")
	}
	// New connections avoid the drained backend.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	served, failed := sendRequests(ctx, l, 100, 4)
	if failed > 0 || served["be2"] != 0 {
		t.Errorf("after the drain: %d failed, served %v (be2 must get none)", failed, served)
	}
	ss.finish(t)
	if !t.Failed() {
		t.Logf("%d streams (%d on the drained backend) intact across 3 reloads", len(ss.list), onDrained)
	}
}

// TestHealthChecks: stopping a backend's server takes it out of the table
// within fall x interval plus one interval (every new connection then goes
// to the others and succeeds); restarting it brings it back after rise
// successful checks.
func TestHealthChecks(t *testing.T) {
	const interval, fall, rise = 200 * time.Millisecond, 3, 2
	l := startLab(t, nil)
	cfg := withHealth(configText(l.socketPath(), 0, []int{1, 1, 1}),
		fmt.Sprintf("kind = \"http\"\nport = 80\ninterval = \"%v\"\ntimeout = \"100ms\"\nrise = %d\nfall = %d\n", interval, rise, fall))
	if err := l.startXLB(cfg, io.Discard); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if served, failed := sendRequests(ctx, l, 60, 4); failed > 0 || len(served) != 3 {
		t.Fatalf("before: %d failed, served %v", failed, served)
	}

	// Stop be2's server.
	if err := l.servers[1].Close(); err != nil {
		t.Fatal(err)
	}
	stopped := time.Now()
	time.Sleep(fall*interval + interval)
	if served, failed := sendRequests(ctx, l, 100, 4); failed > 0 || served["be2"] != 0 {
		t.Fatalf("%v after stopping be2: %d of 100 failed, served %v", time.Since(stopped).Round(time.Millisecond), failed, served)
	}
	st := stats(t, l)
	if b := st.VIPs[0].Backends[1]; b.Health != "down" || b.HealthError == "" || b.State != engine.BackendDown {
		t.Errorf("stats for be2: health %q error %q state %q, want down with the reason", b.Health, b.HealthError, b.State)
	}

	// Restart it: back after rise checks.
	srv, err := lab.ServeHTTP(l.backends[1], "0.0.0.0:80", "be2")
	if err != nil {
		t.Fatal(err)
	}
	l.servers[1] = srv
	time.Sleep(rise*interval + interval)
	if served, failed := sendRequests(ctx, l, 100, 4); failed > 0 || served["be2"] == 0 {
		t.Fatalf("after restarting be2: %d failed, served %v", failed, served)
	}
	if b := stats(t, l).VIPs[0].Backends[1]; b.Health != "up" {
		t.Errorf("stats for be2 after restart: health %q", b.Health)
	}
}

// TestModesAgree: the same 5-tuples land on the same backends whether xlb
// runs the AF_XDP workers or the native XDP program (switched by restart).
func TestModesAgree(t *testing.T) {
	l := startLab(t, nil)
	cfg := configText(l.socketPath(), 0, []int{1, 2, 1})
	served := func(mode string) map[int]string {
		t.Helper()
		text := withMode(cfg, mode)
		logw := &lockedBuffer{}
		if err := l.startXLB(text, logw); err != nil {
			t.Fatalf("%s: %v\n%s", mode, err, logw.String())
		}
		out := map[int]string{}
		for port := 42000; port < 42100; port++ {
			name, err := getFrom(l, port)
			if err != nil {
				t.Fatalf("%s: connection from port %d: %v\n%s", mode, port, err, logw.String())
			}
			out[port] = name
		}
		if st := stats(t, l); st.Mode != mode {
			t.Errorf("stats say mode %q, want %q", st.Mode, mode)
		}
		if err := l.stopXLB(); err != nil {
			t.Fatal(err)
		}
		return out
	}
	afxdp := served("afxdp")
	native := served("native")
	counts := map[string]int{}
	for port, b := range afxdp {
		counts[b]++
		if native[port] != b {
			t.Errorf("source port %d: %s with afxdp, %s with native", port, b, native[port])
		}
	}
	if len(counts) != 3 {
		t.Errorf("100 flows reached %v", counts)
	}
}

// getFrom makes one HTTP/1.0 request to the VIP from the client's given
// source port and returns the name of the backend that answered.
func getFrom(l *lbLab, port int) (string, error) {
	var resp []byte
	err := l.client.Do(func() error {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: labClient.Addr().AsSlice(), Port: port}}
		c, err := d.Dial("tcp", netip.AddrPortFrom(labVIP, 80).String())
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
			return err
		}
		resp, err = io.ReadAll(c)
		return err
	})
	if err != nil {
		return "", err
	}
	_, body, _ := bytes.Cut(resp, []byte("\r\n\r\n"))
	return strings.TrimSpace(string(body)), nil
}

// TestJumboFrames: with 4 KB UMEM frames, 3000-byte client packets go
// through the AF_XDP datapath encapsulated (3020 bytes on a 3100-byte
// fabric) and a 1 MB upload arrives intact.
func TestJumboFrames(t *testing.T) {
	l, logw := labForTest(t, func(dir string) (*lbLab, error) {
		return newLBLabMTU(fmt.Sprintf("xlbj%d", os.Getpid()%100000), xlbBin, dir, 3000, 3100)
	})
	cfg := strings.Replace(configText(l.socketPath(), 0, []int{1, 1, 1}), "queues = [0]", "queues = [0]\nframe_size = 4096", 1)
	if err := l.startXLB(cfg, logw); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	body := make([]byte, 1<<20)
	for i := range body {
		body[i] = byte(i * 7)
	}
	sum := sha256.Sum256(body)
	r, err := lab.Upload(ctx, lab.HTTPClient(l.client), "http://"+labVIP.String(), body)
	if err != nil {
		t.Fatalf("upload: %v", err)
	}
	if r.Bytes != int64(len(body)) || r.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("upload arrived as %d bytes", r.Bytes)
	}
	st := stats(t, l)
	q := st.Queues[0]
	if q.TxPackets == 0 || q.TxBytes/q.TxPackets < 1000 {
		t.Errorf("average forwarded frame %d bytes: no jumbo frames went through", q.TxBytes/max(q.TxPackets, 1))
	}
	if st.Drops["too_big"] != 0 {
		t.Errorf("too_big drops: %d", st.Drops["too_big"])
	}
	t.Logf("%d frames forwarded, %d bytes on average", q.TxPackets, q.TxBytes/q.TxPackets)
}
