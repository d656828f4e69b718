package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/engine"
	"github.com/xlbproject/xlb/lab"
)

// The firewall lab's client addresses (all on the client's link; the
// backends answer the allowed ones over the lab's bridge).
var (
	fwAllowed   = labClient.Addr()                    // 198.18.0.2: in the allow list
	fwDenied    = netip.MustParseAddr("198.18.0.70")  // deny /26 inside the allow list
	fwReallowed = netip.MustParseAddr("198.18.0.100") // allow /28 inside that deny
	fwGlobal    = netip.MustParseAddr("198.18.0.201") // the global deny /29
	fwOutside   = netip.MustParseAddr("198.19.0.5")   // outside the allow list
)

// fwConfig is the lab's config with firewall rules on its VIP and a global
// deny; extra goes into the VIP (more rules, syn_rate_limit).
func fwConfig(l *lbLab, mode, extra string) string {
	cfg := configText(l.socketPath(), 0, []int{1, 1, 1})
	cfg = withMode(cfg, mode)
	cfg = strings.Replace(cfg, "forward = \"ipip\"\n", "forward = \"ipip\"\nallow = [\"198.18.0.0/24\", \"198.18.0.96/28\"]\ndeny = [\"198.18.0.64/26\"]\n"+extra, 1)
	return cfg + "\n[firewall]\ndeny = [\"198.18.0.200/29\"]\n"
}

// dialFrom connects from src to the VIP's port 80 within timeout.
func dialFrom(l *lbLab, src netip.Addr, timeout time.Duration) (net.Conn, error) {
	return dialVIP(l, src, labVIP, timeout)
}

// dialVIP connects from src to vip's port 80 within timeout.
func dialVIP(l *lbLab, src, vip netip.Addr, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := l.client.Do(func() error {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: timeout}
		var err error
		c, err = d.Dial("tcp", netip.AddrPortFrom(vip, 80).String())
		return err
	})
	return c, err
}

// reaches reports whether src can open a connection to the VIP.
func reaches(l *lbLab, src netip.Addr) bool {
	return reachesVIP(l, src, labVIP)
}

func reachesVIP(l *lbLab, src, vip netip.Addr) bool {
	c, err := dialVIP(l, src, vip, 1500*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

// firewallCLI runs `xlb firewall ARGS` against the lab's instance.
func firewallCLI(t *testing.T, l *lbLab, args ...string) (string, error) {
	t.Helper()
	args = append([]string{"firewall", "--socket", l.socketPath()}, args...)
	out, err := l.lb.Command(context.Background(), l.bin, args...).CombinedOutput()
	return string(out), err
}

func firewallStats(t *testing.T, l *lbLab) engine.FirewallStats {
	t.Helper()
	return stats(t, l).Firewall
}

func ruleDrops(st engine.FirewallStats, vip, prefix string) (uint64, bool) {
	for _, r := range st.Rules {
		if r.VIP == vip && r.Prefix == prefix {
			return r.Packets, true
		}
	}
	return 0, false
}

const fwVIP = "198.18.100.1:0/tcp"

func startFirewallLab(t *testing.T, mode, extra string) *lbLab {
	t.Helper()
	l, logw := labForTest(t, func(dir string) (*lbLab, error) {
		return newLBLab(fmt.Sprintf("xlbf%d", time.Now().UnixNano()%100000), xlbBin, dir)
	})
	for _, a := range []netip.Addr{fwDenied, fwReallowed, fwGlobal, fwOutside} {
		if err := l.client.Run(context.Background(), "ip", "addr", "add", netip.PrefixFrom(a, 32).String(), "dev", lab.HostLink); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.startXLB(fwConfig(l, mode, extra), logw); err != nil {
		t.Fatal(err)
	}
	return l
}

// TestFirewall: in both modes, the file's rules decide who connects (the
// most specific prefix, both ways, the global deny, the allow list), denied
// SYNs are counted on their rule and VIP; a runtime rule blocks and its
// deletion unblocks; a --ttl rule expires on time.
func TestFirewall(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) { testFirewall(t, mode) })
	}
}

func testFirewall(t *testing.T, mode string) {
	needRoot(t)
	l := startFirewallLab(t, mode, "")
	for _, c := range []struct {
		src   netip.Addr
		allow bool
		rule  string // the deny rule that counts it
	}{
		{fwAllowed, true, ""},
		{fwDenied, false, "198.18.0.64/26"},
		{fwReallowed, true, ""},
		{fwGlobal, false, "198.18.0.200/29"},
		{fwOutside, false, "0.0.0.0/0"},
	} {
		if got := reaches(l, c.src); got != c.allow {
			t.Errorf("%v reaches the VIP: %v, want %v", c.src, got, c.allow)
		}
		if c.rule != "" {
			vip := fwVIP
			if c.rule == "198.18.0.200/29" {
				vip = "global"
			}
			if n, ok := ruleDrops(firewallStats(t, l), vip, c.rule); !ok || n == 0 {
				t.Errorf("%v: rule %s %s counted %d drops (listed %v)", c.src, vip, c.rule, n, ok)
			}
		}
	}
	st := firewallStats(t, l)
	if len(st.VIPs) != 1 || st.VIPs[0].DeniedPackets < 3 {
		t.Errorf("VIP firewall counters %+v, want at least 3 denied SYNs", st.VIPs)
	}

	// A runtime rule: the allowed client is blocked, then not.
	if out, err := firewallCLI(t, l, "add", "--vip", fwVIP, fwAllowed.String(), "deny"); err != nil {
		t.Fatalf("firewall add: %v: %s", err, out)
	}
	if reaches(l, fwAllowed) {
		t.Errorf("%v reaches the VIP after a runtime deny", fwAllowed)
	}
	out, err := firewallCLI(t, l, "list")
	if err != nil || !strings.Contains(out, "198.18.0.2/32") || !strings.Contains(out, "runtime") {
		t.Errorf("firewall list: %v:\n%s", err, out)
	}
	t.Logf("xlb firewall list:\n%s", out)
	if out, err := firewallCLI(t, l, "del", "--vip", fwVIP, fwAllowed.String(), "deny"); err != nil {
		t.Fatalf("firewall del: %v: %s", err, out)
	}
	if !reaches(l, fwAllowed) {
		t.Errorf("%v does not reach the VIP after the runtime deny is deleted", fwAllowed)
	}
	// Refused: a malformed prefix, a duplicate of a file rule, a file rule's
	// deletion. Nothing changes.
	for _, args := range [][]string{
		{"add", "198.18.0.0/33", "deny"},
		{"add", "--vip", fwVIP, "198.18.0.64/26", "allow"},
		{"del", "--vip", fwVIP, "198.18.0.64/26"},
	} {
		if out, err := firewallCLI(t, l, args...); err == nil {
			t.Errorf("firewall %v accepted: %s", args, out)
		}
	}
	if got := firewallStats(t, l); len(got.Rules) != len(st.Rules) {
		t.Errorf("after refused changes: %d rules, want %d", len(got.Rules), len(st.Rules))
	}

	// A temporary block ends by itself.
	const ttl = 3 * time.Second
	added := time.Now()
	if out, err := firewallCLI(t, l, "add", "--vip", fwVIP, "--ttl", ttl.String(), fwReallowed.String(), "deny"); err != nil {
		t.Fatalf("firewall add --ttl: %v: %s", err, out)
	}
	if reaches(l, fwReallowed) {
		t.Errorf("%v reaches the VIP during its temporary block", fwReallowed)
	}
	for time.Since(added) < ttl+500*time.Millisecond {
		time.Sleep(100 * time.Millisecond)
	}
	if !reaches(l, fwReallowed) {
		t.Errorf("%v still blocked %v after a %v block", fwReallowed, time.Since(added).Round(time.Millisecond), ttl)
	}
	if _, ok := ruleDrops(firewallStats(t, l), fwVIP, "198.18.0.100/32"); ok {
		t.Error("the expired rule is still listed")
	}
}

// TestFirewallLiveUpdates: 20 long-lived streams from an allowed client keep
// every byte while 100 rule changes go through the control socket and 10
// through reloads, and runtime rules survive the reloads.
func TestFirewallLiveUpdates(t *testing.T) {
	needRoot(t)
	l := startFirewallLab(t, config.ModeAFXDP, "")
	startEchoServers(t, l.backends, labVIP)
	ss := startStreams(t, l.client, labVIP, 20)
	ss.progress(t, 16<<10)
	call := func(cmd string, a firewallArgs) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return control.Call(ctx, l.socketPath(), cmd, a, nil)
	}
	// A runtime rule that must outlive the reloads.
	if err := call("firewall.add", firewallArgs{Prefix: "198.18.0.240/28", Action: "deny"}); err != nil {
		t.Fatal(err)
	}
	for i := range 100 {
		// 50 adds then 50 deletes of /32s in the denied /26 and beyond
		// the client, on the VIP and globally.
		k := i % 50
		a := firewallArgs{Prefix: fmt.Sprintf("198.18.0.%d", 64+k), Action: "allow", VIP: fwVIP}
		if k%2 == 1 {
			a = firewallArgs{Prefix: fmt.Sprintf("198.18.1.%d", k), Action: "deny"}
		}
		cmd := "firewall.add"
		if i >= 50 {
			cmd = "firewall.del"
		}
		if err := call(cmd, a); err != nil {
			t.Fatalf("change %d (%s %+v): %v", i, cmd, a, err)
		}
		if i%10 == 9 {
			extra := fmt.Sprintf("syn_rate_limit = %d\n", 1000+i)
			out, err := reloadWith(t, l, fwConfig(l, config.ModeAFXDP, extra))
			if err != nil || !strings.Contains(out, "runtime rules kept") {
				t.Fatalf("reload %d: %v: %s", i/10, err, out)
			}
			if i == 99 {
				t.Logf("xlb reload:\n%s", out)
			}
		}
	}
	ss.progress(t, 16<<10)
	ss.finish(t)
	if reaches(l, fwDenied) || !reaches(l, fwReallowed) {
		t.Error("after the changes the file's rules no longer hold")
	}
	if _, ok := ruleDrops(firewallStats(t, l), "global", "198.18.0.240/28"); !ok {
		t.Error("the runtime rule did not survive the reloads")
	}
}

// TestFirewallSYNRateLimit: with syn_rate_limit = 5, a source opening
// connections as fast as it can for 3 s gets at most 5 a second (plus the
// first second's burst), the rest counted; another source connects
// meanwhile.
func TestFirewallSYNRateLimit(t *testing.T) {
	needRoot(t)
	const rate, window = 5, 3 * time.Second
	l := startFirewallLab(t, config.ModeAFXDP, fmt.Sprintf("syn_rate_limit = %d\n", rate))
	var ok, tried atomic.Int64
	var wg sync.WaitGroup
	stop := time.Now().Add(window)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(stop) {
				tried.Add(1)
				// Shorter than the first SYN retransmission (1 s): a
				// dropped SYN is a failed attempt, not a late success.
				c, err := dialFrom(l, fwAllowed, 500*time.Millisecond)
				if err == nil {
					ok.Add(1)
					c.Close()
				}
			}
		}()
	}
	other := 0
	for range 5 {
		if reaches(l, fwReallowed) {
			other++
		}
	}
	wg.Wait()
	max := int64(rate) + int64(rate)*int64(window/time.Second)
	if ok.Load() > max || ok.Load() < rate {
		t.Errorf("limited source: %d of %d connections in %v, want %d..%d", ok.Load(), tried.Load(), window, rate, max)
	}
	if other != 5 {
		t.Errorf("other source: %d of 5 connections", other)
	}
	st := firewallStats(t, l)
	if len(st.VIPs) != 1 || st.VIPs[0].SYNLimitedPackets == 0 {
		t.Errorf("VIP counters %+v: want SYN-limited drops", st.VIPs)
	}
	t.Logf("limited source: %d of %d connections in %v (limit %d/s); %d SYNs dropped", ok.Load(), tried.Load(), window, rate, st.VIPs[0].SYNLimitedPackets)
}

// TestFirewallIPv6: runtime rules on an IPv6 VIP in both modes: an allow
// list, a deny inside it, an allow inside that, each decided by the most
// specific prefix, and the drops counted.
func TestFirewallIPv6(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) { testFirewallIPv6(t, mode) })
	}
}

func testFirewallIPv6(t *testing.T, mode string) {
	needRoot(t)
	l := startProtoLab(t, mode)
	vip := vipIP6IP6.addr
	scope := netip.AddrPortFrom(vip, 80).String() + "/tcp"
	var (
		allowed   = protoClient6.Addr()                  // 2001:db8::2, in the /64
		denied    = netip.MustParseAddr("2001:db8::77")  // in the deny /122
		reallowed = netip.MustParseAddr("2001:db8::66")  // its own allow /128
		outside   = netip.MustParseAddr("2001:db8:1::5") // outside the allow list
	)
	for _, a := range []netip.Addr{denied, reallowed, outside} {
		if err := l.client.Run(context.Background(), "ip", "addr", "add", netip.PrefixFrom(a, 128).String(), "dev", lab.HostLink, "nodad"); err != nil {
			t.Fatal(err)
		}
	}
	if !reachesVIP(l, denied, vip) {
		t.Fatalf("%v does not reach %v before any rule", denied, vip)
	}
	for _, r := range [][2]string{{"2001:db8::/64", "allow"}, {"2001:db8::40/122", "deny"}, {"2001:db8::66/128", "allow"}} {
		if out, err := firewallCLI(t, l, "add", "--vip", scope, r[0], r[1]); err != nil {
			t.Fatalf("firewall add %v: %v: %s", r, err, out)
		}
	}
	if out, err := firewallCLI(t, l, "add", "--vip", scope, "198.18.0.0/16", "deny"); err == nil {
		t.Errorf("an IPv4 rule on an IPv6 VIP was accepted: %s", out)
	}
	for _, c := range []struct {
		src   netip.Addr
		allow bool
	}{{allowed, true}, {denied, false}, {reallowed, true}, {outside, false}} {
		if got := reachesVIP(l, c.src, vip); got != c.allow {
			t.Errorf("%v reaches %v: %v, want %v", c.src, vip, got, c.allow)
		}
	}
	st := firewallStats(t, l)
	if n, _ := ruleDrops(st, scope, "2001:db8::40/122"); n == 0 {
		t.Errorf("the deny /122 counted no drops: %+v", st.Rules)
	}
	if n, _ := ruleDrops(st, scope, "::/0"); n == 0 {
		t.Errorf("the allow list's implicit deny counted no drops: %+v", st.Rules)
	}
}

// TestFirewallCLIArgs: bad words are refused before any connection, with
// the reason; flags may follow the words.
func TestFirewallCLIArgs(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{nil, exitUsage, "want list, add or del"},
		{[]string{"block"}, exitUsage, `unknown subcommand "block"`},
		{[]string{"add", "198.18.0.0/16"}, exitUsage, "add wants PREFIX allow|deny"},
		{[]string{"add", "198.18.0.0/33", "deny"}, exitUsage, `prefix "198.18.0.0/33"`},
		{[]string{"add", "198.18.1.0/16", "deny"}, exitUsage, "has host bits set"},
		{[]string{"add", "198.18.0.0/16", "allow"}, exitUsage, "global rules deny"},
		{[]string{"add", "--vip", "198.18.100.1:80", "198.18.0.0/16", "allow"}, exitUsage, "ADDR:PORT/PROTO"},
		{[]string{"add", "--vip", "[2001:db8::1]:80/tcp", "198.18.0.0/16", "deny"}, exitUsage, "address family"},
		{[]string{"add", "198.18.0.0/16", "deny", "--ttl", "-1s"}, exitUsage, "ttl"},
		// Valid words, nothing listening: a runtime failure.
		{[]string{"add", "198.18.0.0/16", "deny", "--ttl", "10m", "--socket", sock}, exitFail, "no running xlb instance"},
		{[]string{"list", "--socket", sock}, exitFail, "no running xlb instance"},
	} {
		var out strings.Builder
		code := run(&env{stdout: &out, stderr: &out}, append([]string{"firewall"}, tc.args...))
		if code != tc.code || !strings.Contains(out.String(), tc.want) {
			t.Errorf("xlb firewall %v: exit %d, want %d with %q:\n%s", tc.args, code, tc.code, tc.want, out.String())
		}
	}
}
