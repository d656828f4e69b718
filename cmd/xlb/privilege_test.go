package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/lab"
	"github.com/xlbproject/xlb/privilege"
)

// threadStatus is the privilege part of /proc/PID/task/TID/status.
type threadStatus struct {
	inh, prm, eff, bnd, amb uint64
	noNewPrivs              bool
	cpus                    string // Cpus_allowed_list
}

// readThreads reads the capability sets and no_new_privs of every thread of
// pid (the process's own status too, as "0").
func readThreads(t *testing.T, pid int) map[string]threadStatus {
	t.Helper()
	dir := fmt.Sprintf("/proc/%d", pid)
	paths := []string{filepath.Join(dir, "status")}
	tasks, err := os.ReadDir(filepath.Join(dir, "task"))
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		paths = append(paths, filepath.Join(dir, "task", task.Name(), "status"))
	}
	out := map[string]threadStatus{}
	for i, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		var s threadStatus
		fields := map[string]*uint64{"CapInh": &s.inh, "CapPrm": &s.prm, "CapEff": &s.eff, "CapBnd": &s.bnd, "CapAmb": &s.amb}
		for line := range strings.Lines(string(b)) {
			key, val, _ := strings.Cut(strings.TrimSpace(line), ":")
			val = strings.TrimSpace(val)
			if f, ok := fields[key]; ok {
				if *f, err = strconv.ParseUint(val, 16, 64); err != nil {
					t.Fatalf("%s: %s: %v", p, key, err)
				}
				delete(fields, key)
			}
			switch key {
			case "NoNewPrivs":
				s.noNewPrivs = val == "1"
			case "Cpus_allowed_list":
				s.cpus = val
			}
		}
		if len(fields) != 0 {
			t.Fatalf("%s lacks %v", p, fields)
		}
		name := "0"
		if i > 0 {
			name = tasks[i-1].Name()
		}
		out[name] = s
	}
	return out
}

// TestLeastPrivilege: once `xlb run` is up, the process and every one of its
// threads (the locked worker threads among them) hold only privilege.Kept,
// with nothing inheritable or ambient, the bounding set cut to the same and
// no_new_privs set; and with that, `xlb stats`, `xlb reload` and the
// next-hop resolution of a backend added by the reload (its
// neighbour entry deleted first, so only xlb's own NTF_USE request can
// resolve it: no health check, which would make the kernel resolve it)
// still work. (TestHealthChecks runs with the same dropped set.)
func TestLeastPrivilege(t *testing.T) {
	testenv.Root(t, "runs xlb in network namespaces and reads its capabilities")
	l := startLab(t, nil)
	if err := l.startXLB(configText(l.socketPath(), 0, []int{1, 1}), io.Discard); err != nil {
		t.Fatal(err)
	}
	pid := l.xlb.Process.Pid
	if comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid)); err != nil || strings.TrimSpace(string(comm)) != "xlb" {
		t.Fatalf("pid %d is %q (%v), not xlb", pid, comm, err)
	}
	var want uint64
	for _, v := range privilege.Kept {
		want |= 1 << uint(v)
	}
	// CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12).
	if want != 0x1400 {
		t.Errorf("privilege.Kept is %016x, the capabilities this test exercises are 0000000000001400", want)
	}
	// The worker is the thread pinned to its queue's CPU alone.
	workerCPU := strconv.Itoa(stats(t, l).Queues[0].CPU)
	checkCaps := func(when string) {
		t.Helper()
		threads := readThreads(t, pid)
		if len(threads) < 3 {
			t.Errorf("%s: %d threads read, expected the process and its threads", when, len(threads))
		}
		workers := 0
		for tid, s := range threads {
			if tid != "0" && s.cpus == workerCPU {
				workers++
				t.Logf("%s: worker thread %s (CPU %s): CapEff %016x", when, tid, s.cpus, s.eff)
			}
		}
		if workers == 0 {
			t.Errorf("%s: no thread pinned to the worker's CPU %s", when, workerCPU)
		}
		for tid, s := range threads {
			if s.eff != want || s.prm != want || s.bnd != want || s.inh != 0 || s.amb != 0 || !s.noNewPrivs {
				t.Errorf("%s: thread %s: CapEff %016x CapPrm %016x CapBnd %016x CapInh %016x CapAmb %016x NoNewPrivs %v; want %016x in the first three, 0 in the others, no_new_privs set",
					when, tid, s.eff, s.prm, s.bnd, s.inh, s.amb, s.noNewPrivs, want)
			}
		}
		t.Logf("%s: %d threads, every one CapEff=CapPrm=CapBnd=%016x", when, len(threads), want)
	}
	checkCaps("after start")

	var out, errb bytes.Buffer
	if code := run(&env{stdout: &out, stderr: &errb}, []string{"stats", "--socket", l.socketPath()}); code != exitOK || !strings.Contains(out.String(), "backend 198.18.0.12") {
		t.Fatalf("xlb stats: exit %d: %s%s", code, out.String(), errb.String())
	}

	// be3 is not in the balancer's neighbour table when the reload adds it.
	be3 := labBackends[2].Addr()
	if err := l.lb.Do(func() error {
		err := netlink.NeighDel(&netlink.Neigh{LinkIndex: l.lb.Ifindex, IP: be3.AsSlice()})
		if err != nil && !strings.Contains(err.Error(), "no such file") {
			return err
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if out, err := reloadWith(t, l, configText(l.socketPath(), 0, []int{1, 1, 1})); err != nil || !strings.Contains(out, "backend 198.18.0.13 added") {
		t.Fatalf("xlb reload: %v: %s", err, out)
	}
	wantMAC := net.HardwareAddr(l.backends[2].MAC[:]).String()
	var b3 string
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		st := stats(t, l)
		b3 = st.VIPs[0].Backends[2].NextHop
		if b3 == wantMAC {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("be3 after the reload: next_hop %q, want %s", b3, wantMAC)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	served, failed := sendRequests(ctx, l, 90, 4)
	if failed > 0 || served["be3"] == 0 {
		t.Fatalf("after the reload: %d of 90 failed, served %v (be3 must get some)", failed, served)
	}
	t.Logf("after the reload: be3 next_hop %s, served %v", b3, served)
	checkCaps("after reload")

	// A reload adds a splice VIP on port 443 (below 1024, so its listener
	// needs CAP_NET_BIND_SERVICE), on an address of its own since the ipip
	// VIP takes every port of labVIP.
	splice := netip.AddrPortFrom(netip.MustParseAddr("198.18.100.2"), 443)
	if err := l.lb.Run(ctx, "ip", "address", "add", splice.Addr().String()+"/32", "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	if err := l.client.Run(ctx, "ip", "route", "add", splice.Addr().String()+"/32", "via", lab.BalancerLB.Addr().String()); err != nil {
		t.Fatal(err)
	}
	startTLSEcho(t, l, splice.Port())
	withSplice := configText(l.socketPath(), 0, []int{1, 1, 1}) + fmt.Sprintf(
		"\n[[vip]]\naddress = %q\nport = %d\nforward = \"splice\"\n\n  [[vip.route]]\n  default = true\n    [[vip.route.backend]]\n    address = %q\n",
		splice.Addr(), splice.Port(), labBackends[0].Addr())
	if out, err := reloadWith(t, l, withSplice); err != nil || !strings.Contains(out, "added") {
		t.Fatalf("xlb reload adding splice VIP %s: %v: %s", splice, err, out)
	}
	if cn, err := handshakeTo(l, splice, "any.example.com"); err != nil || cn != "be1" {
		t.Fatalf("through splice VIP %s: certificate of %q, %v; want be1's", splice, cn, err)
	}
	checkCaps("after the splice reload")
}
