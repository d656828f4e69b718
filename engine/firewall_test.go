package engine

import (
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/bpf"
	"github.com/xlbproject/xlb/firewall"
)

// fakeFirewall keeps every entry set written, and fails "fw.Set" on demand
// (after applying it, the worst case).
type fakeFirewall struct {
	faults faults
	sets   []map[bpf.FirewallPrefix]bpf.FirewallEntry
}

func (f *fakeFirewall) Set(m map[bpf.FirewallPrefix]bpf.FirewallEntry) error {
	f.sets = append(f.sets, maps.Clone(m))
	return f.faults.hit("fw.Set")
}
func (f *fakeFirewall) RuleCounters(r []uint32) ([]bpf.FirewallCounter, error) {
	return make([]bpf.FirewallCounter, len(r)), nil
}
func (f *fakeFirewall) VIPCounters(s []uint32) ([]bpf.FirewallVIPCounters, error) {
	return make([]bpf.FirewallVIPCounters, len(s)), nil
}
func (f *fakeFirewall) ClearCounters(_, _ []uint32) error { return nil }

// vips returns the VIP addresses the last set has entries for.
func (f *fakeFirewall) vips() []string {
	seen := map[string]bool{}
	for p := range f.sets[len(f.sets)-1] {
		seen[p.VIP.IP().String()] = true
	}
	return slices.Sorted(maps.Keys(seen))
}

func withRules(vip, rules string) string {
	return strings.Replace(vip, "port = 80\n", "port = 80\n"+rules+"\n", 1)
}

// TestFirewallReload: a reload keeps the runtime rules whose VIP stays and
// says so, keeps a removed VIP's rules until the VIP map has dropped it,
// and a reload that fails restores the rules as they were; a change the
// maps refuse changes nothing.
func TestFirewallReload(t *testing.T) {
	first := parse(t, "", withRules(vipText(1, 11), `allow = ["198.18.0.0/16"]`), withRules(vipText(2, 11), `deny = ["198.18.5.0/24"]`))
	second := parse(t, "", withRules(vipText(1, 11), `allow = ["198.18.0.0/16"]`), vipText(3, 11))
	e := newOffline(t, first, false, 4096)
	fw := &fakeFirewall{faults: e.faults}
	e.fw.maps, e.fw.idx = fw, firewall.NewIndex()
	e.fw.rules, e.fw.policies = firewall.NewRules(first.FirewallRules()), first.FirewallPolicies()
	if err := e.fw.apply(e.fw.rules, e.fw.policies, nil); err != nil {
		t.Fatal(err)
	}
	add := func(vip, prefix string) {
		t.Helper()
		r, err := firewall.ParseRule(vip, prefix, "deny", "", time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := e.FirewallAdd(r); err != nil {
			t.Fatal(err)
		}
	}
	add("", "198.18.9.0/24")
	add("198.18.100.2:80/tcp", "198.18.6.0/24")
	before, rules := len(fw.sets), e.fw.rules

	// A change the maps refuse: nothing changes.
	e.faults["fw.Set"] = true
	r, _ := firewall.ParseRule("", "198.18.10.0/24", "deny", "", time.Now())
	if err := e.FirewallAdd(r); err == nil {
		t.Fatal("FirewallAdd succeeded with a failing map")
	}
	if len(e.fw.rules.All()) != len(rules.All()) {
		t.Errorf("a refused add changed the rules: %v", e.fw.rules.All())
	}

	// A reload whose commit fails: the staged rules are undone.
	e.faults["steer.SetVIPs"] = true
	if _, err := e.Reload(second); err == nil {
		t.Fatal("reload succeeded with a failing steer map")
	}
	if got := fw.sets[len(fw.sets)-1]; !maps.Equal(got, fw.sets[before-1]) {
		t.Errorf("after a failed reload the firewall holds %d entries, want the %d before", len(got), len(fw.sets[before-1]))
	}
	if got := e.fw.rules.Runtime(); got != 2 {
		t.Errorf("after a failed reload %d runtime rules, want 2", got)
	}

	before = len(fw.sets)
	changes, err := e.Reload(second)
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Join(changes, "\n")
	for _, want := range []string{"firewall: 1 runtime rules kept", "firewall: runtime rule 198.18.100.2:80/tcp 198.18.6.0/24 deny dropped: its VIP is gone"} {
		if !strings.Contains(text, want) {
			t.Errorf("changes lack %q:\n%s", want, text)
		}
	}
	// Staged: the removed VIP 198.18.100.2 still protected; committed: gone.
	staged := &fakeFirewall{sets: fw.sets[:before+1]}
	if got := staged.vips(); !slices.Equal(got, []string{"198.18.100.1", "198.18.100.2", "198.18.100.3"}) {
		t.Errorf("staged entries for %v", got)
	}
	if got := fw.vips(); !slices.Equal(got, []string{"198.18.100.1", "198.18.100.3"}) {
		t.Errorf("committed entries for %v", got)
	}
	// The global runtime rule reached the new VIP.
	k := bpf.FirewallPrefix{VIP: bpf.NewVIPKey(netip.MustParseAddr("198.18.100.3"), 80, 6), Src: netip.MustParsePrefix("198.18.9.0/24")}
	if en, ok := fw.sets[len(fw.sets)-1][k]; !ok || !en.Deny {
		t.Errorf("new VIP's entry for the global runtime rule: %+v %v", en, ok)
	}
}
