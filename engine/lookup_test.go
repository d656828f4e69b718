package engine

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/config"
)

// resolverFor builds a resolver for one VIP with the given backends, listed
// in the given order.
func resolverFor(t *testing.T, backends []string) *Resolver {
	t.Helper()
	var b strings.Builder
	b.WriteString("[datapath]\ninterface = \"eth0\"\n\n[[vip]]\naddress = \"198.18.100.1\"\nport = 80\n")
	for _, be := range backends {
		addr, weight, _ := strings.Cut(be, "*")
		if weight == "" {
			weight = "1"
		}
		fmt.Fprintf(&b, "[[vip.backend]]\naddress = %q\nweight = %s\n", addr, weight)
	}
	cfg, err := config.Parse("order.toml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewResolver(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Two instances whose files list the same backends in different orders agree
// on every flow: the property that lets xlb instances sit behind ECMP.
func TestLookupIgnoresBackendOrder(t *testing.T) {
	backends := []string{"198.18.0.11", "198.18.0.12*3", "198.18.0.13", "198.18.1.7*2", "198.18.0.200"}
	shuffled := []string{"198.18.0.200", "198.18.1.7*2", "198.18.0.11", "198.18.0.13", "198.18.0.12*3"}
	a, b := resolverFor(t, backends), resolverFor(t, shuffled)
	rng := rand.New(rand.NewPCG(1, 2))
	vip := netip.AddrPortFrom(netip.MustParseAddr("198.18.100.1"), 80)
	counts := map[netip.Addr]int{}
	for range 10000 {
		src := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 18, byte(rng.IntN(256)), byte(rng.IntN(256))}), uint16(rng.IntN(65536)))
		_, ba, err := a.Lookup(config.TCP, src, vip)
		if err != nil {
			t.Fatal(err)
		}
		_, bb, err := b.Lookup(config.TCP, src, vip)
		if err != nil {
			t.Fatal(err)
		}
		if ba.Address != bb.Address {
			t.Fatalf("flow %s: %s in one order, %s in the other", src, ba.Address, bb.Address)
		}
		counts[ba.Address]++
	}
	if len(counts) != len(backends) {
		t.Errorf("10000 flows reached %d of %d backends", len(counts), len(backends))
	}
}

func TestLookupErrors(t *testing.T) {
	r := resolverFor(t, []string{"198.18.0.11"})
	src := netip.MustParseAddrPort("198.18.0.2:1000")
	tests := []struct {
		name  string
		proto config.Protocol
		dst   string
	}{
		{"other port", config.TCP, "198.18.100.1:81"},
		{"other protocol", config.UDP, "198.18.100.1:80"},
		{"other address", config.TCP, "198.18.100.2:80"},
		{"IPv6", config.TCP, "[2001:db8::1]:80"},
	}
	for _, tt := range tests {
		if _, _, err := r.Lookup(tt.proto, src, netip.MustParseAddrPort(tt.dst)); err == nil {
			t.Errorf("%s: no error", tt.name)
		}
	}
	drained := resolverFor(t, []string{"198.18.0.11*0"})
	if _, _, err := drained.Lookup(config.TCP, src, netip.MustParseAddrPort("198.18.100.1:80")); err == nil {
		t.Error("drained VIP answered")
	}
}
