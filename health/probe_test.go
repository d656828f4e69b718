package health

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"
)

// loopback is where the unit tests' servers listen: the probe only dials an
// address, so no namespace is needed here (the root test covers a lab).
var loopback = netip.MustParseAddr("127.0.0.1")

var plainDial = (&net.Dialer{}).DialContext

// listen returns a TCP listener on an ephemeral loopback port, closed at
// the end of the test, and its port.
func listen(t *testing.T) (net.Listener, uint16) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln, uint16(ln.Addr().(*net.TCPAddr).Port)
}

// closedPort returns a loopback port nothing listens on.
func closedPort(t *testing.T) uint16 {
	t.Helper()
	ln, port := listen(t)
	ln.Close()
	return port
}

// serve answers every connection on ln with fn until the test ends.
func serve(t *testing.T, ln net.Listener, fn func(net.Conn)) {
	t.Helper()
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(5 * time.Second))
				fn(c)
			}()
		}
	}()
}

// httpReply reads one request, passes it to seen, and writes reply.
func httpReply(seen chan<- *http.Request, reply string) func(net.Conn) {
	return func(c net.Conn) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		if seen != nil {
			seen <- req
		}
		io.WriteString(c, reply)
	}
}

func target(kind Kind, port uint16, f func(*Spec)) Target {
	s := Spec{Kind: kind, Port: port, Timeout: 2 * time.Second, Interval: 2 * time.Second}
	if f != nil {
		f(&s)
	}
	return Target{ID: "t", Addr: loopback, Spec: s.WithDefaults(port)}
}

func runProbe(t *testing.T, tg Target) error {
	t.Helper()
	if err := tg.Spec.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), tg.Spec.Timeout)
	defer cancel()
	return probe(ctx, plainDial, tg)
}

func TestProbeTCP(t *testing.T) {
	ln, port := listen(t)
	serve(t, ln, func(net.Conn) {})
	if err := runProbe(t, target(KindTCP, port, nil)); err != nil {
		t.Errorf("listening port: %v", err)
	}
	err := runProbe(t, target(KindTCP, closedPort(t), nil))
	if err == nil {
		t.Fatal("closed port: probe succeeded")
	}
	if !strings.HasPrefix(err.Error(), "health: tcp check: ") {
		t.Errorf("error %q lacks its context", err)
	}
}

func TestProbeHTTP(t *testing.T) {
	const ok = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
	tests := []struct {
		name   string
		reply  string
		spec   func(*Spec)
		bad    error  // nil: success
		substr string // part of the error
	}{
		{name: "200 wanted", reply: ok},
		{name: "204 wanted", reply: "HTTP/1.1 204 No Content\r\n\r\n", spec: func(s *Spec) { s.Expect = 204 }},
		{name: "503 not wanted", reply: "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", bad: errStatus, substr: "503, want 200"},
		{name: "200 when 204 wanted", reply: ok, spec: func(s *Spec) { s.Expect = 204 }, bad: errStatus, substr: "200, want 204"},
		{name: "redirect is not followed", reply: "HTTP/1.1 302 Found\r\nLocation: /elsewhere\r\nContent-Length: 0\r\n\r\n", bad: errStatus},
		{name: "garbage", reply: "SSH-2.0-OpenSSH_9.6\r\n", substr: "read response"},
		{name: "closed without answer", reply: "", substr: "read response"},
		{
			name:  "endless body is not read to the end",
			reply: "HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n" + strings.Repeat("x", 64<<10),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, port := listen(t)
			seen := make(chan *http.Request, 1)
			serve(t, ln, httpReply(seen, tt.reply))
			err := runProbe(t, target(KindHTTP, port, tt.spec))
			if tt.bad == nil && tt.substr == "" {
				if err != nil {
					t.Fatalf("probe: %v", err)
				}
			} else {
				if err == nil {
					t.Fatal("probe succeeded")
				}
				if tt.bad != nil && !errors.Is(err, tt.bad) {
					t.Errorf("error %v, want %v", err, tt.bad)
				}
				if !strings.Contains(err.Error(), tt.substr) {
					t.Errorf("error %q does not mention %q", err, tt.substr)
				}
			}
			req := <-seen
			if req.Method != http.MethodGet || req.RequestURI != "/" {
				t.Errorf("request %s %s, want GET /", req.Method, req.RequestURI)
			}
			if !req.Close {
				t.Error("request asks for keep-alive")
			}
		})
	}
}

func TestProbeHTTPRequest(t *testing.T) {
	ln, port := listen(t)
	seen := make(chan *http.Request, 2)
	serve(t, ln, httpReply(seen, "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"))

	if err := runProbe(t, target(KindHTTP, port, nil)); err != nil {
		t.Fatal(err)
	}
	req := <-seen
	if want := fmt.Sprintf("127.0.0.1:%d", port); req.Host != want {
		t.Errorf("default Host %q, want %q", req.Host, want)
	}
	if ua := req.UserAgent(); ua != userAgent {
		t.Errorf("User-Agent %q", ua)
	}

	tg := target(KindHTTP, port, func(s *Spec) { s.Path = "/healthz?deep=1"; s.Host = "svc.example" })
	if err := runProbe(t, tg); err != nil {
		t.Fatal(err)
	}
	req = <-seen
	if req.Host != "svc.example" || req.RequestURI != "/healthz?deep=1" {
		t.Errorf("got Host %q target %q, want svc.example /healthz?deep=1", req.Host, req.RequestURI)
	}
}

// TestProbeHTTPTimeout: a server that accepts and reads but never answers
// fails the check when its timeout ends, and so does cancelling it.
func TestProbeHTTPTimeout(t *testing.T) {
	ln, port := listen(t)
	release := make(chan struct{})
	serve(t, ln, func(c net.Conn) {
		http.ReadRequest(bufio.NewReader(c))
		<-release
	})
	defer close(release) // before serve's cleanup waits for the handlers

	tg := target(KindHTTP, port, func(s *Spec) { s.Timeout = 100 * time.Millisecond })
	err := runProbe(t, tg)
	if err == nil {
		t.Fatal("probe of a silent server succeeded")
	}
	if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
		t.Errorf("error %v is not a timeout", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- probe(ctx, plainDial, target(KindHTTP, port, nil)) }()
	time.Sleep(50 * time.Millisecond) // let it connect and wait; the outcome does not depend on it
	cancel()
	select {
	case err := <-done:
		if err == nil {
			t.Error("cancelled probe succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled probe did not return")
	}
}

// TestProbeHTTPBounded: answers that never end (a status line, a header, a
// stream of headers, a chunked body) cost a probe a bounded amount of
// memory; those whose head never ends fail with the reason.
func TestProbeHTTPBounded(t *testing.T) {
	const bound = 16 << 20 // bytes a probe may allocate, with room to spare
	tests := []struct {
		name   string
		prefix string
		repeat string // sent after prefix until the probe hangs up
		fail   bool
	}{
		{"endless status line", "HTTP/1.1 200 ", "a", true},
		{"endless header", "HTTP/1.1 200 OK\r\nX-Long: ", "b", true},
		{"endless headers", "HTTP/1.1 200 OK\r\n", "X-More: c\r\n", true},
		{"endless chunked body", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "10\r\n0123456789abcdef\r\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, port := listen(t)
			chunk := []byte(strings.Repeat(tt.repeat, (64<<10)/len(tt.repeat)))
			serve(t, ln, func(c net.Conn) {
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				if _, err := io.WriteString(c, tt.prefix); err != nil {
					return
				}
				for {
					if _, err := c.Write(chunk); err != nil {
						return // the probe hung up, or serve's deadline
					}
				}
			})
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			err := runProbe(t, target(KindHTTP, port, func(s *Spec) { s.Timeout = 3 * time.Second; s.Interval = 4 * time.Second }))
			runtime.ReadMemStats(&after)
			alloc := after.TotalAlloc - before.TotalAlloc
			t.Logf("probe allocated %d KiB: %v", alloc>>10, err)
			if alloc > bound {
				t.Errorf("probe allocated %d bytes, want under %d", alloc, bound)
			}
			switch {
			case tt.fail && !errors.Is(err, errHeadTooLarge):
				t.Errorf("error %v, want %v", err, errHeadTooLarge)
			case tt.fail && !strings.Contains(err.Error(), "longer than 65536 bytes"):
				t.Errorf("error %q does not give the reason", err)
			case !tt.fail && err != nil:
				t.Errorf("200 with an endless body: %v", err)
			}
		})
	}
}
