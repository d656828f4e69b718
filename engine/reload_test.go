package engine

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/datapath"
)

// A reload that fails at any commit step leaves everything as it was: the
// fakes' maps, settings and health targets, the published plan and the
// engine's state. The same reload then succeeds and applies all of it in
// both modes: outer sources, flow timeouts, a table of another size, GUE,
// echo off and the fragment policy included.
func TestReloadFailureChangesNothing(t *testing.T) {
	first := func() *config.Config {
		return parse(t, "", vipText(1, 11, 12, 13), vipText(2, 11, 12))
	}
	second := func() *config.Config {
		v1 := strings.Replace(vipText(1, 11, 14), "port = 80", "port = 80\ntable_size = 257\nforward = \"gue\"\ngue_port = 6080\nicmp_echo = false\nfragments = \"pass\"", 1)
		return parse(t, "source = \"198.18.0.9\"\nsource6 = \"2001:db8::9\"\nflow_tcp_timeout = \"1m\"\nflow_udp_timeout = \"20s\"\nicmp_rate_limit = 10\nicmp_rate_burst = 5\nflow_syn_rate = 7", v1, vipText(3, 11, 12, 13))
	}
	for _, tt := range []struct {
		native bool
		steps  []string
	}{
		{false, []string{"steer.SetVIPs", "health.Set"}},
		{true, []string{"lb.SetSource", "lb.SetSource6", "lb.SetTimeouts", "lb.SetICMPRate", "lb.SetSYNRate", "lb.SetBackends", "lb.SetTable", "lb.SetVIPs", "health.Set"}},
	} {
		for _, step := range tt.steps {
			e := newOffline(t, first(), tt.native, 4096)
			kernel, cur, plan := e.kernelState(), e.cur, e.plan.Load()
			ids := e.stateIDs()
			e.faults[step] = true
			if _, err := e.Reload(second()); !errors.Is(err, errInjected) {
				t.Fatalf("native %v, %s fails: reload error %v", tt.native, step, err)
			}
			if got := e.kernelState(); got != kernel {
				t.Errorf("native %v, %s fails: kernel state changed:\n%s\nwas:\n%s", tt.native, step, got, kernel)
			}
			if e.cur != cur || e.plan.Load() != plan || e.pub.Load() != cur {
				t.Errorf("native %v, %s fails: the committed state or plan changed", tt.native, step)
			}
			if got := e.stateIDs(); fmt.Sprint(got) != fmt.Sprint(ids) {
				t.Errorf("native %v, %s fails: IDs changed", tt.native, step)
			}
			changes, err := e.Reload(second())
			if err != nil {
				t.Fatalf("native %v: reload after the fault: %v", tt.native, err)
			}
			if e.kernelState() == kernel || e.cur.cfg.Datapath.Source.String() != "198.18.0.9" {
				t.Errorf("native %v: the reload applied nothing", tt.native)
			}
			if r := e.cur.spec.ICMPRate; r != (datapath.ICMPRate{PerSecond: 10, Burst: 5}) {
				t.Errorf("native %v: ICMP rate %+v after the reload", tt.native, r)
			}
			if r := e.cur.spec.SYNRate; r != 7 {
				t.Errorf("native %v: SYN rate %d after the reload", tt.native, r)
			}
			if tt.native {
				l := e.lb
				if l.src != [4]byte{198, 18, 0, 9} || netip.AddrFrom16(l.src6) != netip.MustParseAddr("2001:db8::9") {
					t.Errorf("native outer sources %v %v after the reload", l.src, l.src6)
				}
				if l.timeouts != [2]time.Duration{time.Minute, 20 * time.Second} {
					t.Errorf("native flow timeouts %v after the reload", l.timeouts)
				}
				if l.icmpRate != [2]uint32{10, 5} {
					t.Errorf("native ICMP rate %v after the reload", l.icmpRate)
				}
				if l.synRate != 7 {
					t.Errorf("native SYN rate %d after the reload", l.synRate)
				}
				v := l.vips[0]
				if v.Forward != bpf.LBForwardGUE || v.GUEPort != 6080 || v.ICMPEcho || !v.PassFragments || len(l.tables[v.ID]) != 257 {
					t.Errorf("native VIP %+v with a table of %d slots after the reload", v, len(l.tables[v.ID]))
				}
				for _, slot := range l.tables[v.ID] {
					if b := l.backends[slot&0xffff]; bpf.LBBackendID(int(slot&0xffff), b.Generation) != slot || !b.Addr.IsValid() {
						t.Fatalf("native table slot %#x names backend entry %+v", slot, b)
					}
				}
			}
			text := strings.Join(changes, "\n")
			for _, want := range []string{"outer source 198.18.0.1 -> 198.18.0.9", "outer IPv6 source invalid IP -> 2001:db8::9", "vip 198.18.100.2:80/tcp removed", "backend 198.18.1.14 added",
				"flow timeouts tcp 15m0s udp 30s -> tcp 1m0s udp 20s", "maglev slots 251 -> 257", "icmp_echo true -> false"} {
				if !strings.Contains(text, want) {
					t.Errorf("changes lack %q:\n%s", want, text)
				}
			}
		}
	}
}

// What the native program was sized for at start bounds a reload: more VIPs
// or tables larger than its maglev map are refused with the file's line
// before anything changes, and so is running out of backend IDs.
func TestReloadCapacity(t *testing.T) {
	cfg := parse(t, "", vipText(1, 11, 12))
	var many []string
	for v := range 70 {
		many = append(many, vipText(v+1, 11))
	}
	var lots []int
	for b := range 200 {
		lots = append(lots, b+1)
	}
	for _, tt := range []struct {
		name string
		cfg  *config.Config
		want string
	}{
		{"too many VIPs", parse(t, "", many...), "engine.toml:8: vip: 70 VIPs"},
		{"tables too large", parse(t, "", strings.Replace(vipText(1, 11), "port = 80", "port = 80\ntable_size = 65537", 1)), "engine.toml:8: vip: the VIPs' Maglev tables need 131074 slots"},
		{"too many backends", parse(t, "", vipText(1, lots...)), "backend IDs exhausted"},
	} {
		e := newOffline(t, cfg, true, 128)
		kernel, cur := e.kernelState(), e.cur
		_, err := e.Reload(tt.cfg)
		var ce *config.Error
		if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.As(err, &ce) {
			t.Errorf("%s: error %v, want a config error with %q", tt.name, err, tt.want)
		}
		if e.kernelState() != kernel || e.cur != cur {
			t.Errorf("%s: the refused reload changed something", tt.name)
		}
	}
}

// 1,000 reloads, each removing and adding backends, never run out of
// backend IDs: both modes reuse an index at once with a new generation (the
// native program checks generations too), so the indexes in use stay
// bounded by the backends present, and a backend that stays keeps its ID.
func TestBackendIDsSurviveChurn(t *testing.T) {
	const present, churn, reloads = 40, 10, 1000
	for _, native := range []bool{false, true} {
		rng := rand.New(rand.NewPCG(7, 9))
		next := 1
		var live []int // backend numbers, 198.18.1.x and beyond
		for range present {
			live = append(live, next)
			next++
		}
		cfgOf := func() *config.Config {
			var b strings.Builder
			fmt.Fprintf(&b, "\n[[vip]]\naddress = \"198.18.100.1\"\nport = 80\n")
			for _, n := range live {
				fmt.Fprintf(&b, "[[vip.backend]]\naddress = \"198.18.%d.%d\"\nmac = \"02:00:00:00:00:01\"\n", 1+n/250, 1+n%250)
			}
			return parse(t, "flow_tcp_timeout = \"10s\"\nflow_udp_timeout = \"5s\"", b.String())
		}
		// Room for the backends present and those a reload adds before the
		// ones it removes are released.
		e := newOffline(t, cfgOf(), native, present+churn)
		maxIndexes := 0
		for i := range reloads {
			before := e.stateIDs()
			for range churn {
				j := rng.IntN(len(live))
				live = slices.Delete(live, j, j+1)
			}
			for range churn {
				live = append(live, next)
				next++
			}
			if _, err := e.Reload(cfgOf()); err != nil {
				t.Fatalf("native %v, reload %d: %v", native, i, err)
			}
			after := e.stateIDs()
			seen := map[uint32]bool{}
			for k, id := range after {
				if old, ok := before[k]; ok && old != id {
					t.Fatalf("reload %d: backend %s changed ID %#x -> %#x", i, k.backend, old, id)
				}
				if x := datapath.IDIndex(id); seen[x] {
					t.Fatalf("reload %d: index %d given twice", i, x)
				} else {
					seen[x] = true
				}
			}
			maxIndexes = max(maxIndexes, e.cur.ids.indexes())
		}
		if next < reloads*churn {
			t.Fatalf("only %d backends churned", next)
		}
		if limit := present + churn; maxIndexes > limit {
			t.Errorf("native %v: %d indexes used for %d backends at once", native, maxIndexes, present)
		}
		t.Logf("native %v: %d backends over %d reloads used %d ID indexes", native, next, reloads, maxIndexes)
	}
}

// Every reloadable setting a reload changes is reported.
func TestDiffReportsEverySetting(t *testing.T) {
	base := vipText(1, 11, 12)
	old := parse(t, "", base)
	for _, tt := range []struct {
		extra, vip string
		want       string
	}{
		{"flow_tcp_timeout = \"1m\"", base, "flow timeouts tcp 15m0s"},
		{"source = \"198.18.0.2\"", base, "outer source 198.18.0.1 -> 198.18.0.2"},
		{"icmp_rate_limit = 10\nicmp_rate_burst = 5", base, "icmp rate limit 1000/s burst 50 -> 10/s burst 5"},
		{"flow_syn_rate = 0", base, "flow syn rate 125000/s -> 0/s"},
		{"source6 = \"2001:db8::2\"", base, "outer IPv6 source"},
		{"", strings.Replace(base, "port = 80", "port = 80\nicmp_echo = false", 1), "icmp_echo true -> false"},
		{"", strings.Replace(base, "port = 80", "port = 80\nfragments = \"pass\"", 1), "fragments drop -> pass"},
		{"", strings.Replace(base, "port = 80", "port = 80\nforward = \"gue\"", 1), "forward ipip (gue port 0) -> gue"},
		{"", strings.Replace(base, "port = 80", "port = 80\ntable_size = 257", 1), "maglev slots 251 -> 257"},
		{"", vipText(1, 11), "backend 198.18.1.12 removed"},
		{"", strings.Replace(base, "mac = \"02:00:00:00:01:0c\"", "weight = 3", 1), "backend 198.18.1.12 weight 1 -> 3"},
	} {
		next := parse(t, tt.extra, tt.vip)
		if got := strings.Join(diff(old, next), "\n"); !strings.Contains(got, tt.want) {
			t.Errorf("%q not reported:\n%s", tt.want, got)
		}
	}
}

// In native mode the lb program counts per ID index, across reuse: a
// backend given a reused index shows only what it was sent itself.
func TestNativeCountersOfAReusedIndex(t *testing.T) {
	e := newOffline(t, parse(t, "", vipText(1, 11, 12)), true, 4096)
	e.lb.counts = []bpf.LBBackendCounters{{Packets: 100, Bytes: 1000}, {Packets: 200, Bytes: 2000}, {}}
	for _, b := range []int{13, 14} { // .12 then .13 leave; .14 reuses .12's index
		if _, err := e.Reload(parse(t, "", vipText(1, 11, b))); err != nil {
			t.Fatal(err)
		}
	}
	if got := datapath.IDIndex(e.cur.ids.backends[backendKey{idOf(e.cur.cfg.VIPs[0]), netip.MustParseAddr("198.18.1.14")}]); got != 1 {
		t.Fatalf("198.18.1.14 got index %d, want the reused 1", got)
	}
	e.lb.counts[1] = bpf.LBBackendCounters{Packets: 250, Bytes: 2600}
	st := e.Stats()
	got := map[string]uint64{}
	for _, b := range st.VIPs[0].Backends {
		got[b.Address] = b.Packets
	}
	if got["198.18.1.11"] != 100 || got["198.18.1.14"] != 50 {
		t.Errorf("packets per backend %v, want .11 100 and .14 50", got)
	}
}
