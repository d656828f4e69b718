package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cilium/ebpf"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/internal/testenv"
)

// runCmd runs one xlb command in-process and returns its exit code and
// output. Its signal channel is closed: an `xlb run` that got as far as
// waiting for signals stops at once instead of hanging the test.
func runCmd(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	sigs := make(chan os.Signal)
	close(sigs)
	code = run(&env{stdout: &out, stderr: &errb, signals: sigs}, args)
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
	testenv.Short(t, "waits out the control socket's 5 s I/O timeout, 8 s in all")
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

// TestConfigLimitsMatchBPF: the capacities config checks files against are
// the sizes the BPF programs give their maps, read from the objects xlb
// embeds, and the bounds bpf's loaders enforce.
func TestConfigLimitsMatchBPF(t *testing.T) {
	spec := func(name string) *ebpf.CollectionSpec {
		t.Helper()
		s, err := ebpf.LoadCollectionSpec(filepath.Join("..", "..", "bpf", name))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	steer, lb := spec("steer_bpfel.o"), spec("lb_bpfel.o")
	checks := []struct {
		what      string
		got, want uint64
	}{
		{"steer.c vips max_entries", uint64(steer.Maps["vips"].MaxEntries), config.MaxVIPEntries},
		{"lb.c vips max_entries", uint64(lb.Maps["vips"].MaxEntries), config.MaxVIPEntries},
		{"steer.c xsks max_entries", uint64(steer.Maps["xsks"].MaxEntries), config.MaxQueues},
		{"bpf.MaxQueues", bpf.MaxQueues, config.MaxQueues},
		{"bpf.DefaultLBMaxBackends", bpf.DefaultLBMaxBackends, config.NativeMaxIDs},
		{"bpf.DefaultLBMaxVIPs", bpf.DefaultLBMaxVIPs, config.NativeMinVIPTables},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %d, config says %d", c.what, c.got, c.want)
		}
	}
	// The lb loader refuses a Maglev map over its bound before it loads
	// anything (no root needed): more tables than config allows.
	const size = config.DefaultTableSize
	_, err := bpf.LoadLB(bpf.LBOptions{TableSize: size, MaxVIPs: config.NativeMaglevSlots/size + 1})
	if err == nil || !strings.Contains(err.Error(), fmt.Sprint(config.NativeMaglevSlots)) {
		t.Errorf("LoadLB over config.NativeMaglevSlots: %v", err)
	}
}

// TestCheckRefusesTooManyVIPs: a file with more VIPs than the steering map
// holds fails `xlb check` (and `xlb run`, before attaching anything) with
// exit 3 and the line of the first VIP that does not fit.
func TestCheckRefusesTooManyVIPs(t *testing.T) {
	var b strings.Builder
	b.WriteString("[datapath]\ninterface = \"lo\"\nqueues = [0]\n")
	line, at := 4, 0
	for i := range 2100 {
		if i == 2048 {
			at = line
		}
		fmt.Fprintf(&b, "[[vip]]\naddress = \"198.18.%d.%d\"\nport = 80\n  [[vip.backend]]\n  address = \"198.19.0.1\"\n", 100+i/250, 1+i%250)
		line += 5
	}
	file := filepath.Join(t.TempDir(), "many.toml")
	if err := os.WriteFile(file, []byte(b.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"check", "run"} {
		code, _, stderr := runCmd(cmd, "-c", file)
		want := fmt.Sprintf("%s:%d: vip[2048]: the VIP map is full: 2100 VIPs on 2100 addresses need 4200 entries", file, at)
		if code != exitConfig || !strings.Contains(stderr, want) {
			t.Errorf("xlb %s: exit %d, stderr %q, want exit 3 and %q", cmd, code, stderr, want)
		}
	}
}

// TestCheckBoundsFileSize: `xlb check -c /dev/zero` stops at the size limit
// with a clear error and exit 3.
func TestCheckBoundsFileSize(t *testing.T) {
	code, _, stderr := runCmd("check", "-c", "/dev/zero")
	if want := "xlb: /dev/zero: larger than 16 MiB, the limit for a config file\n"; code != exitConfig || stderr != want {
		t.Errorf("exit %d, stderr %q, want exit 3 and %q", code, stderr, want)
	}
}

// TestCheckWarns: likely mistakes are printed as warnings on stderr, with
// their line, and check still succeeds.
func TestCheckWarns(t *testing.T) {
	text := `[datapath]
interface = "lo"
queues = [0]

[[vip]]
address = "198.18.100.1"
port = 80
  [[vip.backend]]
  address = "198.18.100.1"
  [[vip.backend]]
  address = "198.18.0.2"
  weight = 0
`
	file := filepath.Join(t.TempDir(), "warn.toml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCmd("check", "-c", file)
	if code != exitOK || !strings.Contains(stdout, "config "+file+": ok") || !strings.Contains(stdout, "icmp sent by the balancer: at most 1000/s per queue, burst 50") ||
		!strings.Contains(stdout, "syn flood guard: past 125000 SYNs/s per queue") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	want := "xlb: warning: " + file + ":9: vip[0].backend[0].address: 198.18.100.1 is the VIP's own address: its packets would come back to the balancer\n"
	if stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
	// Without the backend at the VIP's address, no weight is left.
	text = strings.Replace(text, "address = \"198.18.100.1\"\n  [[vip.backend]]", "address = \"198.18.0.3\"\n  weight = 0\n  [[vip.backend]]", 1)
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCmd("check", "-c", file)
	if want := "xlb: warning: " + file + ":5: vip[0]: every backend of 198.18.100.1:80/tcp has weight 0 or is drained: the VIP takes no new flows\n"; code != exitOK || stderr != want {
		t.Errorf("exit %d, stderr %q, want %q", code, stderr, want)
	}
}
