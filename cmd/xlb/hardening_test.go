package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlbproject/xlb/control"
)

// runCmd runs one xlb command in-process and returns its exit code and
// output.
func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = run(&env{stdout: &out, stderr: &errb}, args)
	return code, out.String(), errb.String()
}

// serveControl answers the control commands in handlers on a fresh socket
// until the test ends, as `xlb run` would.
func serveControl(t *testing.T, handlers map[string]control.Handler) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "xlb.sock")
	srv, err := control.Listen(path, handlers, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return path
}

// TestReloadWaitsForSlowReload: `xlb reload` reports the outcome of a
// reload that takes longer than the control socket's I/O timeout (5 s), and
// one that outlasts --timeout is reported as unknown, never as refused.
func TestReloadWaitsForSlowReload(t *testing.T) {
	applied := make(chan time.Duration, 2)
	var took atomic.Int64 // what the next reload takes
	took.Store(int64(6 * time.Second))
	path := serveControl(t, map[string]control.Handler{
		"reload": func(context.Context, json.RawMessage) (any, error) {
			d := time.Duration(took.Load())
			time.Sleep(d)
			applied <- d
			return []string{"vip[0] 198.18.100.1:80/tcp: backend 198.18.0.13 added"}, nil
		},
	})
	code, stdout, stderr := runCmd("reload", "--socket", path)
	if code != exitOK || !strings.Contains(stdout, "reloaded: vip[0] 198.18.100.1:80/tcp: backend 198.18.0.13 added") {
		t.Fatalf("reload taking 6s: exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	<-applied

	took.Store(int64(2 * time.Second))
	code, _, stderr = runCmd("reload", "--socket", path, "--timeout", "300ms")
	want := "xlb: no answer within 300ms; the reload may still be applying"
	if code != exitFail || !strings.HasPrefix(stderr, want) || strings.Contains(stderr, "refused") {
		t.Fatalf("reload outlasting --timeout: exit %d, stderr %q, want %q", code, stderr, want)
	}
	select {
	case <-applied:
	case <-time.After(30 * time.Second):
		t.Fatal("the reload whose client gave up did not finish")
	}
}

// TestReloadRefusedSaysSo: a reload the instance refuses is reported as
// refused with the instance's reason.
func TestReloadRefusedSaysSo(t *testing.T) {
	path := serveControl(t, map[string]control.Handler{
		"reload": func(context.Context, json.RawMessage) (any, error) {
			return nil, &os.PathError{Op: "open", Path: "/etc/xlb.toml", Err: os.ErrNotExist}
		},
	})
	code, _, stderr := runCmd("reload", "--socket", path)
	want := "xlb: reload refused, the running config is unchanged: open /etc/xlb.toml: file does not exist\n"
	if code != exitFail || stderr != want {
		t.Fatalf("exit %d, stderr %q, want %q", code, stderr, want)
	}
}

// TestNoRunningInstance: reload and stats with nothing listening say so in
// one sentence naming the socket.
func TestNoRunningInstance(t *testing.T) {
	path := filepath.Join(t.TempDir(), "xlb.sock")
	for _, cmd := range []string{"reload", "stats"} {
		code, _, stderr := runCmd(cmd, "--socket", path)
		if want := "xlb: no running xlb instance at " + path + "\n"; code != exitFail || stderr != want {
			t.Errorf("xlb %s: exit %d, stderr %q, want %q", cmd, code, stderr, want)
		}
	}
}

// TestRunLeavesFileAtSocketPath: a regular file at control.socket makes
// `xlb check` and `xlb run` refuse with exit 3, the file's line and its
// path, and the file stays as it was.
func TestRunLeavesFileAtSocketPath(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "xlb.sock")
	if err := os.WriteFile(sock, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "xlb.toml")
	text := strings.Replace(configText(sock, 80, []int{1}), `interface = "eth0"`, `interface = "lo"`, 1)
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"check", "run"} {
		code, _, stderr := runCmd(cmd, "-c", file)
		want := file + ":6: control.socket: control: " + sock + " (a regular file) exists and is not a Unix socket"
		if code != exitConfig || !strings.Contains(stderr, want) {
			t.Errorf("xlb %s: exit %d, stderr %q, want exit 3 and %q", cmd, code, stderr, want)
		}
		if b, err := os.ReadFile(sock); err != nil || string(b) != "not a socket" {
			t.Errorf("after xlb %s the file holds %q, %v", cmd, b, err)
		}
	}
}
