package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xlbproject/xlb/internal/testenv"
)

// peerEnv makes the test binary a client instead: TestPeerMustBeRoot runs
// it as another user to call the socket named by the variable.
const peerEnv = "XLB_CONTROL_TEST_PEER"

func TestMain(m *testing.M) {
	if path := os.Getenv(peerEnv); path != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := Call(ctx, path, "echo", "x", nil); err != nil {
			fmt.Println(err)
		} else {
			fmt.Println("accepted")
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// listen starts a server on a fresh socket, closed when the test ends.
func listen(t *testing.T, handlers map[string]Handler) (*Server, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "run", "xlb.sock")
	srv, err := Listen(path, handlers, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv, path
}

var echo = map[string]Handler{
	"echo": func(_ context.Context, args json.RawMessage) (any, error) {
		var s string
		if err := json.Unmarshal(args, &s); err != nil {
			return nil, err
		}
		return strings.ToUpper(s), nil
	},
}

func TestCallRoundTrip(t *testing.T) {
	_, path := listen(t, map[string]Handler{
		"echo": echo["echo"],
		"fail": func(context.Context, json.RawMessage) (any, error) {
			return nil, errors.New("boom")
		},
	})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode = %o, want 600", perm)
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm != 0o700 {
		t.Errorf("directory mode = %o, want 700", perm)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var got string
	if err := Call(ctx, path, "echo", "hello", &got); err != nil {
		t.Fatal(err)
	}
	if got != "HELLO" {
		t.Errorf("echo = %q, want HELLO", got)
	}
	tests := []struct {
		command string
		want    string
	}{
		{"fail", "control: fail: boom"},
		{"nope", `unknown command "nope"`},
		{"", "bad request: no command"},
	}
	for _, tt := range tests {
		err := Call(ctx, path, tt.command, nil, nil)
		var re *RemoteError
		if !errors.As(err, &re) || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("Call(%q) error = %v, want a RemoteError with %q", tt.command, err, tt.want)
		}
	}
}

// TestSlowHandlerAnswered: a handler that takes longer than the server's
// I/O timeout still gets its answer to a client willing to wait, and a
// client that stops waiting is told it got no answer, not that the request
// failed, while the handler runs to its end.
func TestSlowHandlerAnswered(t *testing.T) {
	testenv.Short(t, "waits out the 5 s request deadline")
	slow := ioTimeout + time.Second
	finished := make(chan struct{}, 1)
	_, path := listen(t, map[string]Handler{
		"slow": func(_ context.Context, args json.RawMessage) (any, error) {
			var d time.Duration
			if err := json.Unmarshal(args, &d); err != nil {
				return nil, err
			}
			time.Sleep(d)
			finished <- struct{}{}
			return "applied", nil
		},
	})

	ctx, cancel := context.WithTimeout(context.Background(), slow+30*time.Second)
	defer cancel()
	var got string
	start := time.Now()
	if err := Call(ctx, path, "slow", slow, &got); err != nil {
		t.Fatalf("slow call (%v) after %v: %v", slow, time.Since(start), err)
	}
	<-finished
	if got != "applied" {
		t.Errorf("slow call answered %q, want applied", got)
	}

	short, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := Call(short, path, "slow", time.Second, nil)
	if !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("call with a shorter deadline than the handler: %v, want ErrNoAnswer", err)
	}
	var re *RemoteError
	if errors.As(err, &re) {
		t.Errorf("ErrNoAnswer is also a RemoteError: %v", err)
	}
	select {
	case <-finished:
	case <-time.After(30 * time.Second):
		t.Fatal("the handler whose caller gave up never finished")
	}
}

// TestStalledClientReleased: a client that connects and sends nothing is
// dropped after the read timeout; the server keeps answering others.
func TestStalledClientReleased(t *testing.T) {
	testenv.Short(t, "waits out the 5 s request deadline")
	_, path := listen(t, echo)
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(ioTimeout + 30*time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := Call(ctx, path, "echo", "x", nil); err != nil {
		t.Fatalf("call while another client stalls: %v", err)
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil || !strings.Contains(resp.Error, "bad request") {
		t.Fatalf("stalled client got %+v, %v; want a bad request answer after the timeout", resp, err)
	}
}

// TestAcceptSurvivesEMFILE: with the process out of descriptors, accept
// fails (EMFILE) while a client waits in the backlog; the failure is
// logged, and once descriptors are back that client and new ones are
// served.
func TestAcceptSurvivesEMFILE(t *testing.T) {
	logs := &syncBuffer{}
	path := filepath.Join(t.TempDir(), "xlb.sock")
	srv, err := Listen(path, echo, slog.New(slog.NewTextHandler(logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	// The client's socket is made first: connecting takes no descriptor,
	// accepting does.
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	lowest, err := unix.Dup(0) // the lowest free descriptor number
	if err != nil {
		t.Fatal(err)
	}
	unix.Close(lowest)
	low := lim
	low.Cur = uint64(lowest)
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
				t.Fatal(err)
			}
		}
	}
	defer restore()
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		restore()
		t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(logs.String(), "too many open files"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			restore()
			t.Fatalf("no accept failure logged while out of descriptors; log:\n%s", logs.String())
		}
	}
	restore()
	f := os.NewFile(uintptr(fd), "client")
	waiting, err := net.FileConn(f) // a copy of fd
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer waiting.Close()
	t.Logf("log while out of descriptors:\n%s", logs.String())

	if err := json.NewEncoder(waiting).Encode(Request{Command: "echo", Args: json.RawMessage(`"waited"`)}); err != nil {
		t.Fatal(err)
	}
	_ = waiting.SetReadDeadline(time.Now().Add(30 * time.Second))
	var resp Response
	if err := json.NewDecoder(waiting).Decode(&resp); err != nil || string(resp.Result) != `"WAITED"` {
		t.Fatalf("client that waited through EMFILE got %+v, %v", resp, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var got string
	if err := Call(ctx, path, "echo", "after", &got); err != nil || got != "AFTER" {
		t.Fatalf("new client after EMFILE: %q, %v", got, err)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestListenRefusesLiveSocketAndReplacesStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xlb.sock")
	srv, err := Listen(path, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path, nil, nil); !errors.Is(err, ErrInUse) {
		t.Fatalf("second Listen error = %v, want ErrInUse", err)
	}
	srv.Close()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("socket file left after Close: %v", err)
	}
	// A stale socket (as a crashed instance leaves it) is replaced.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("stale socket not in place: %v", err)
	}
	srv, err = Listen(path, nil, nil)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	srv.Close()
}

// TestListenLeavesOtherFiles: a regular file, a directory, a symbolic link
// or a pipe at the socket path is an error naming the path, and is left as
// it was.
func TestListenLeavesOtherFiles(t *testing.T) {
	tests := []struct {
		name string
		make func(path string) error
		what string
	}{
		{"regular file", func(p string) error { return os.WriteFile(p, []byte("keep me"), 0o600) }, "a regular file"},
		{"empty directory", func(p string) error { return os.Mkdir(p, 0o700) }, "a directory"},
		{"symlink", func(p string) error { return os.Symlink("/nonexistent", p) }, "a symbolic link"},
		{"named pipe", func(p string) error { return unix.Mkfifo(p, 0o600) }, "a named pipe"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "xlb.sock")
			if err := tt.make(path); err != nil {
				t.Fatal(err)
			}
			before, err := os.Lstat(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := CheckPath(path); !errors.Is(err, ErrNotSocket) {
				t.Errorf("CheckPath = %v, want ErrNotSocket", err)
			}
			srv, err := Listen(path, nil, nil)
			if err == nil {
				srv.Close()
				t.Fatal("Listen replaced it")
			}
			if !errors.Is(err, ErrNotSocket) || !strings.Contains(err.Error(), path+" ("+tt.what+")") {
				t.Errorf("error = %v, want ErrNotSocket naming %s (%s)", err, path, tt.what)
			}
			after, err := os.Lstat(path)
			if err != nil {
				t.Fatalf("it is gone: %v", err)
			}
			if !os.SameFile(before, after) || before.Mode() != after.Mode() || before.Size() != after.Size() {
				t.Errorf("it changed: %v %d -> %v %d", before.Mode(), before.Size(), after.Mode(), after.Size())
			}
		})
	}
}

// TestListenRefusesLooseDirectory: a directory others may write to is
// refused with its mode, and not changed.
func TestListenRefusesLooseDirectory(t *testing.T) {
	for _, mode := range []os.FileMode{0o777, 0o770, os.ModeSticky | 0o777} {
		t.Run(mode.String(), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "run")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, mode); err != nil {
				t.Fatal(err)
			}
			if err := CheckPath(filepath.Join(dir, "xlb.sock")); !errors.Is(err, ErrUnsafeDir) {
				t.Errorf("CheckPath = %v, want ErrUnsafeDir", err)
			}
			_, err := Listen(filepath.Join(dir, "xlb.sock"), nil, nil)
			if !errors.Is(err, ErrUnsafeDir) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("error = %v, want ErrUnsafeDir naming %s", err, dir)
			}
			fi, err := os.Stat(dir)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode()&(os.ModePerm|os.ModeSticky) != mode {
				t.Errorf("directory mode changed to %v", fi.Mode())
			}
		})
	}
	// Group and others may read and search it: the socket's own mode and
	// the peer check keep them out.
	dir := filepath.Join(t.TempDir(), "run")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	srv, err := Listen(filepath.Join(dir, "xlb.sock"), nil, nil)
	if err != nil {
		t.Fatalf("0755 directory: %v", err)
	}
	srv.Close()
}

// TestPeerMustBeRoot: a process of another user is refused, even when the
// socket's mode was loosened by hand to let it connect; root is accepted.
func TestPeerMustBeRoot(t *testing.T) {
	testenv.Root(t, "runs a client as uid 65534")
	// The client is this test binary, run as nobody: it and the socket
	// need directories nobody may enter.
	dir, err := os.MkdirTemp("", "xlbpeer")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "client")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "xlb.sock")
	srv, err := Listen(path, echo, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()

	asNobody := func() string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, bin)
		cmd.Env = []string{peerEnv + "=" + path}
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client as uid 65534: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	if got := asNobody(); !strings.Contains(got, "permission denied") {
		t.Errorf("uid 65534 through the 0600 socket: %q, want permission denied", got)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		t.Fatal(err)
	}
	if got := asNobody(); !strings.Contains(got, "permission denied for uid 65534") {
		t.Errorf("uid 65534 through a socket loosened to 0666: %q, want the peer check's refusal", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := Call(ctx, path, "echo", "root", nil); err != nil {
		t.Errorf("root refused: %v", err)
	}
}

func TestListenRejectsRelativePath(t *testing.T) {
	if _, err := Listen("xlb.sock", nil, nil); err == nil {
		t.Fatal("relative path accepted")
	}
}

func TestCallWithoutServer(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "none.sock")
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	for _, path := range []string{missing, stale, filepath.Join(dir, "nodir", "xlb.sock")} {
		err := Call(context.Background(), path, "stats", nil, nil)
		if !errors.Is(err, ErrNotRunning) || err.Error() != "no running xlb instance at "+path {
			t.Errorf("%s: error = %v, want %q", path, err, "no running xlb instance at "+path)
		}
	}
}

func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"command":"stats"}`))
	f.Add([]byte(`{"command":"reload","args":{"x":[1,2,3]}}` + "\n"))
	f.Add([]byte(`{"command":"stats"}{"command":"reload"}`))
	f.Add([]byte(`{"command":1}`))
	f.Add([]byte(`{"command":"\u0000","args":"` + strings.Repeat("a", 100) + `"}`))
	f.Add([]byte(`[[[[[[[[[[[[[[[[`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := decodeRequest(bytes.NewReader(data))
		if err != nil {
			if req.Command != "" || req.Args != nil {
				t.Fatalf("error %v with a request %+v", err, req)
			}
			if !strings.HasPrefix(err.Error(), "bad request: ") {
				t.Fatalf("error %q does not say bad request", err)
			}
			return
		}
		if req.Command == "" {
			t.Fatal("request without a command accepted")
		}
		if req.Args != nil && !json.Valid(req.Args) {
			t.Fatalf("args %q are not valid JSON", req.Args)
		}
		// What the server decoded, a client could have sent.
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		again, err := decodeRequest(bytes.NewReader(b))
		if err != nil || again.Command != req.Command {
			t.Fatalf("re-encoded request %s decodes to %+v, %v", b, again, err)
		}
	})
}
