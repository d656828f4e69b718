package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/lab"
	"github.com/xlbproject/xlb/privilege"
)

// unitFile is the shipped systemd unit, relative to this package.
const unitFile = "../../deploy/xlb.service"

// unitBinary is the path the unit starts xlb from.
const unitBinary = "/usr/local/bin/xlb"

// TestUnitVerify runs systemd-analyze verify on the shipped unit. verify
// needs the ExecStart binary to exist, so it checks a copy whose ExecStart
// names this test binary instead.
func TestUnitVerify(t *testing.T) {
	analyze := testenv.Tool(t, "systemd-analyze")
	text, err := os.ReadFile(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(text, []byte("ExecStart="+unitBinary+" run ")) {
		t.Fatalf("%s: no ExecStart=%s run", unitFile, unitBinary)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	copyFile := filepath.Join(t.TempDir(), "xlb.service")
	if err := os.WriteFile(copyFile, bytes.ReplaceAll(text, []byte(unitBinary), []byte(exe)), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", copyFile).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// unitSettings reads the unit's [Service] settings (the last value of a
// repeated key wins, as it does for these keys in systemd).
func unitSettings(t *testing.T) map[string]string {
	t.Helper()
	f, err := os.Open(unitFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out, section := map[string]string{}, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			k, v, _ := strings.Cut(line, "=")
			out[k] = v
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// nobody stands in for the unit's dynamic user.
const nobody = 65534

// TestUnitCapabilities runs the real binary in the lab the way the unit
// does: as an unprivileged user (for DynamicUser=yes) holding only the
// unit's AmbientCapabilities, bounded by its CapabilityBoundingSet, with
// no_new_privs and, where the machine allows, an unlimited RLIMIT_MEMLOCK;
// and checks that this is
// enough to attach, forward, reload and answer `xlb stats` in both modes,
// and that afterwards only privilege.Kept is left.
func TestUnitCapabilities(t *testing.T) {
	testenv.Root(t, "runs xlb in network namespaces under setpriv")
	setpriv := testenv.Tool(t, "setpriv")
	u := unitSettings(t)
	capList := func(key string) string {
		var out []string
		for c := range strings.FieldsSeq(u[key]) {
			out = append(out, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
		}
		return strings.Join(append([]string{"-all"}, out...), ",")
	}
	args := []string{setpriv}
	// LimitMEMLOCK=infinity, where this machine allows raising the limit
	// (it takes CAP_SYS_RESOURCE); else the default UMEM must fit the
	// limit the test runs with.
	if prlimit, err := exec.LookPath("prlimit"); err == nil {
		memlock := []string{prlimit, "--memlock=unlimited:unlimited"}
		if out, err := exec.Command(memlock[0], append(memlock[1:], "true")...).CombinedOutput(); err == nil {
			args = append(memlock, args...)
		} else {
			t.Logf("RLIMIT_MEMLOCK stays as it is: %v: %s", err, out)
		}
	}
	uid := 0
	if u["DynamicUser"] == "yes" || u["User"] != "" {
		uid = nobody
		args = append(args, fmt.Sprintf("--reuid=%d", uid), fmt.Sprintf("--regid=%d", uid), "--clear-groups")
	}
	args = append(args, "--inh-caps="+capList("AmbientCapabilities"), "--ambient-caps="+capList("AmbientCapabilities"),
		"--bounding-set="+capList("CapabilityBoundingSet"))
	if u["NoNewPrivileges"] == "yes" {
		args = append(args, "--no-new-privs")
	}

	// The lab's directory (config, control socket) belongs to the service
	// user, as /etc/xlb/xlb.toml and /run/xlb would.
	dir, err := os.MkdirTemp("", "xlbunit")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	l, logw := labForTest(t, func(string) (*lbLab, error) {
		return newLBLab(fmt.Sprintf("xlbt%d", os.Getpid()%100000), xlbBin, dir)
	})
	cfgFile := filepath.Join(dir, "xlb.toml")
	for _, p := range []string{dir, cfgFile} {
		if p == cfgFile {
			if err := os.WriteFile(cfgFile, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chown(p, uid, uid); err != nil {
			t.Fatal(err)
		}
	}
	wrapper := filepath.Join(dir, "xlb-as-unit")
	script := fmt.Sprintf("#!/bin/sh\nexec %s %s \"$@\"\n", strings.Join(args, " "), xlbBin)
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("xlb runs as: %s", strings.Join(append(args, xlbBin), " "))
	l.bin = wrapper

	var want uint64
	for _, v := range privilege.Kept {
		want |= 1 << uint(v)
	}
	for _, mode := range modes {
		if err := l.startXLB(withMode(configText(l.socketPath(), 0, []int{1, 1}), mode), logw); err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
		th := readThreads(t, l.xlb.Process.Pid)["0"]
		if th.eff != want || th.prm != want || th.amb != 0 {
			t.Errorf("%s: CapEff %016x CapPrm %016x CapAmb %016x after start, want %016x %016x 0", mode, th.eff, th.prm, th.amb, want, want)
		}
		// An operator reloads as root (the control socket admits only
		// root), not as the service's user.
		if err := os.WriteFile(cfgFile, []byte(withMode(configText(l.socketPath(), 0, []int{1, 1, 1}), mode)), 0o600); err != nil {
			t.Fatal(err)
		}
		var out bytes.Buffer
		if code := run(&env{stdout: &out, stderr: &out}, []string{"reload", "--socket", l.socketPath()}); code != exitOK || !strings.Contains(out.String(), "backend 198.18.0.13 added") {
			t.Fatalf("%s: xlb reload: exit %d: %s", mode, code, out.String())
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		served, failed := sendRequests(ctx, l, 60, 4)
		cancel()
		if failed > 0 || len(served) != 3 {
			t.Errorf("%s: %d of 60 failed, served %v", mode, failed, served)
		}
		if st := stats(t, l); st.Queues == nil && mode == "afxdp" {
			t.Errorf("%s: stats without queues: %+v", mode, st)
		}
		if err := l.stopXLB(); err != nil {
			t.Fatalf("%s: %v", mode, err)
		}
	}
}

// TestSystemdNotify: with NOTIFY_SOCKET set, `xlb run` tells the listener
// READY=1 once the program is attached and the control socket answers,
// RELOADING=1 (with MONOTONIC_USEC) and READY=1 around a reload by `xlb
// reload` and by SIGHUP, and STOPPING=1 on SIGTERM.
func TestSystemdNotify(t *testing.T) {
	testenv.Root(t, "runs xlb in network namespaces")
	sockPath := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sockPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msgs := make(chan string, 16)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, _, err := conn.ReadFromUnix(buf)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	next := func(when string) string {
		t.Helper()
		select {
		case m, ok := <-msgs:
			if !ok {
				t.Fatalf("%s: notify socket closed", when)
			}
			return m
		case <-time.After(20 * time.Second):
			t.Fatalf("%s: no notification within 20s", when)
		}
		return ""
	}
	expectReload := func(when string) {
		t.Helper()
		if m := next(when); !regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=[0-9]+$`).MatchString(m) {
			t.Errorf("%s: first notification %q, want RELOADING=1 and MONOTONIC_USEC", when, m)
		}
		if m := next(when); m != "READY=1" {
			t.Errorf("%s: second notification %q, want READY=1", when, m)
		}
	}

	t.Setenv("NOTIFY_SOCKET", sockPath)
	l := startLab(t, nil)
	if err := l.startXLB(configText(l.socketPath(), 0, []int{1, 1}), io.Discard); err != nil {
		t.Fatal(err)
	}
	if m := next("start"); m != "READY=1" {
		t.Fatalf("start: first notification %q, want READY=1", m)
	}
	if err := l.lb.Do(func() error {
		link, err := netlink.LinkByName(lab.HostLink)
		if err != nil {
			return err
		}
		if x := link.Attrs().Xdp; x == nil || !x.Attached {
			return fmt.Errorf("READY=1 sent but no XDP program attached to %s", lab.HostLink)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	if out, err := reloadWith(t, l, configText(l.socketPath(), 0, []int{1, 1, 1})); err != nil || !strings.Contains(out, "backend 198.18.0.13 added") {
		t.Fatalf("xlb reload: %v: %s", err, out)
	}
	expectReload("xlb reload")
	if err := l.xlb.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	expectReload("SIGHUP")
	if err := l.stopXLB(); err != nil {
		t.Fatal(err)
	}
	if m := next("SIGTERM"); m != "STOPPING=1" {
		t.Errorf("SIGTERM: notification %q, want STOPPING=1", m)
	}
}
