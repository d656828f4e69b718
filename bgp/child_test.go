package bgp

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/lab"
)

// GoBGP makes its sockets on goroutines of its own, which run on threads in
// the process's network namespace, so one process cannot hold speakers in
// several namespaces. The lab tests therefore run each speaker in a child:
// this test binary again, started with `ip netns exec` inside a balancer's
// namespace (lab.Host.Command) with childEnv set, driven by one JSON
// request per line on stdin and answering one JSON response per line on
// stdout. Its slog output goes to stderr, which the parent keeps.
const childEnv = "XLB_BGP_TEST_SPEAKER"

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) == "1" {
		os.Exit(runChild(os.Stdin, os.Stdout))
	}
	os.Exit(m.Run())
}

type request struct {
	Op     string // start, announce, withdraw, reconfigure, status, shutdown, close
	Config Config
	Routes []Route
	Drain  time.Duration
}

type response struct {
	Err    string
	Status Status
}

// runChild serves requests until stdin closes or after close or shutdown.
func runChild(in io.Reader, out io.Writer) int {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	dec, enc := json.NewDecoder(in), json.NewEncoder(out)
	var s *Speaker
	for {
		var req request
		if err := dec.Decode(&req); err != nil {
			if s != nil {
				s.Close()
			}
			return 0
		}
		var res response
		var err error
		switch {
		case req.Op == "start":
			s, err = Start(context.Background(), req.Config, logger)
		case s == nil:
			err = fmt.Errorf("no speaker: send start first")
		case req.Op == "announce":
			err = s.Announce(req.Routes)
		case req.Op == "withdraw":
			err = s.WithdrawAll()
		case req.Op == "reconfigure":
			err = s.Reconfigure(req.Config)
		case req.Op == "status":
			res.Status, err = s.Status()
		case req.Op == "shutdown":
			err = s.Shutdown(context.Background(), req.Drain)
		case req.Op == "close":
			err = s.Close()
		default:
			err = fmt.Errorf("unknown op %q", req.Op)
		}
		if err != nil {
			res.Err = err.Error()
		}
		if err := enc.Encode(res); err != nil {
			return 1
		}
	}
}

// child is the parent's handle on a speaker process.
// Its methods take the calling test, which may be a subtest of the one
// that started it.
type child struct {
	name string
	cmd  *exec.Cmd
	in   io.WriteCloser
	out  *json.Decoder
	mu   sync.Mutex // serializes calls
	logs *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startChild runs a speaker with cfg inside host's namespace; it is killed
// by its PID when the test ends, and its log shown if the test failed.
func startChild(t *testing.T, host *lab.Host, cfg Config) *child {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c := &child{name: host.Name, logs: &lockedBuffer{}}
	c.cmd = host.Command(context.Background(), self, "-test.run=^$")
	c.cmd.Env = append(os.Environ(), childEnv+"=1")
	c.cmd.Stderr = c.logs
	if c.in, err = c.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	c.out = json.NewDecoder(bufio.NewReader(stdout))
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start speaker in %s: %v", host.Name, err)
	}
	t.Cleanup(func() {
		c.kill()
		if t.Failed() {
			t.Logf("speaker %s log:\n%s", c.name, c.logs)
		}
	})
	if err := c.call(t, request{Op: "start", Config: cfg}).err(); err != nil {
		t.Fatalf("speaker %s: %v", c.name, err)
	}
	return c
}

func (r response) err() error {
	if r.Err == "" {
		return nil
	}
	return fmt.Errorf("%s", r.Err)
}

// call sends req and waits for the answer. A child that died fails the
// test rather than hanging it.
func (c *child) call(t *testing.T, req request) response {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := json.NewEncoder(c.in).Encode(req); err != nil {
		t.Fatalf("speaker %s: send %s: %v", c.name, req.Op, err)
	}
	var res response
	if err := c.out.Decode(&res); err != nil {
		t.Fatalf("speaker %s: %s: no answer: %v", c.name, req.Op, err)
	}
	return res
}

func (c *child) must(t *testing.T, req request) response {
	t.Helper()
	res := c.call(t, req)
	if err := res.err(); err != nil {
		t.Fatalf("speaker %s: %s: %v", c.name, req.Op, err)
	}
	return res
}

func (c *child) announce(t *testing.T, routes ...Route) {
	t.Helper()
	c.must(t, request{Op: "announce", Routes: routes})
}

func (c *child) status(t *testing.T) Status {
	t.Helper()
	return c.must(t, request{Op: "status"}).Status
}

// freeze stops the process (SIGSTOP) with its sessions open: no more
// keepalives, no FIN, as when the balancer's machine dies.
func (c *child) freeze(t *testing.T) {
	t.Helper()
	if err := c.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("stop speaker %s: %v", c.name, err)
	}
}

// kill ends the process by its PID and reaps it; idempotent.
func (c *child) kill() {
	if c.cmd.ProcessState != nil {
		return
	}
	_ = c.cmd.Process.Kill()
	_ = c.cmd.Wait()
}

// waitStatus polls the speaker's status until ok accepts it or timeout,
// which fails the test with the last status.
func (c *child) waitStatus(t *testing.T, timeout time.Duration, what string, ok func(Status) bool) Status {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := c.status(t)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("speaker %s: no %s within %v; status %s", c.name, what, timeout, fmtStatus(st))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func fmtStatus(st Status) string {
	var b strings.Builder
	for _, p := range st.Peers {
		fmt.Fprintf(&b, "\n  %v as %d: %v since %v, established %d, drops %d, errors %d (%q), adv %d rcv %d",
			p.Address, p.ASN, p.State, p.Since.Format(time.TimeOnly), p.Established, p.Drops, p.Errors, p.LastError, p.Advertised, p.Received)
	}
	return b.String()
}
