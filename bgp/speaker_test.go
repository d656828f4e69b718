package bgp

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"
)

// TestSpeakerWithoutPeers drives the API of a speaker that has no peers
// and does not listen, so it opens no socket and needs no namespace.
func TestSpeakerWithoutPeers(t *testing.T) {
	cfg := Config{ASN: 65001, RouterID: netip.MustParseAddr("198.18.0.11")}
	if _, err := Start(context.Background(), Config{}, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("Start accepted an empty config")
	}
	s, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	routes := []Route{r("2001:db8:2::1/128", 0), r("198.18.2.1/32", 7, 65001<<16|1)}
	if err := s.Announce(routes); err != nil {
		t.Fatal(err)
	}
	if err := s.Announce(append(routes, r("198.18.2.3/31", 0))); err == nil {
		t.Error("Announce accepted a prefix with host bits")
	}
	st, err := s.Status()
	if err != nil {
		t.Fatal(err)
	}
	want := []Route{routes[1], routes[0]} // prefix order
	if !slices.EqualFunc(st.Announced, want, Route.equal) || len(st.Peers) != 0 {
		t.Errorf("status %+v, want announced %+v and no peers", st, want)
	}
	if err := s.Announce(routes[:1]); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Status(); len(st.Announced) != 1 || st.Announced[0].Prefix != routes[0].Prefix {
		t.Errorf("after withdrawing one: %+v", st.Announced)
	}

	bad := cfg
	bad.Peers = []Peer{{Address: netip.MustParseAddr("198.18.0.1")}} // no ASN
	var fe *FieldError
	if err := s.Reconfigure(bad); !errors.As(err, &fe) || fe.Key != "peer[0].asn" {
		t.Errorf("Reconfigure with a bad peer: %v", err)
	}
	other := cfg
	other.ASN = 65002
	if err := s.Reconfigure(other); !errors.Is(err, ErrRestartRequired) {
		t.Errorf("Reconfigure with another ASN: %v, want ErrRestartRequired", err)
	}
	if err := s.Reconfigure(cfg); err != nil {
		t.Errorf("Reconfigure with the same config: %v", err)
	}

	start := time.Now()
	if err := s.Shutdown(context.Background(), 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d < 50*time.Millisecond {
		t.Errorf("Shutdown returned after %v, before its drain", d)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := s.Announce(routes); !errors.Is(err, ErrClosed) {
		t.Errorf("Announce after Close: %v", err)
	}
	if _, err := s.Status(); !errors.Is(err, ErrClosed) {
		t.Errorf("Status after Close: %v", err)
	}
}

// manyRoutes is n IPv4 and n IPv6 host routes.
func manyRoutes(n int) []Route {
	var out []Route
	for i := range n {
		out = append(out,
			Route{Prefix: netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)}), 32)},
			Route{Prefix: netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 2, 14: byte(i >> 8), 15: byte(i)}), 128)})
	}
	return out
}

// BenchmarkAnnounceOneChange is the cost of an Announce call, with 2000
// routes announced, that withdraws or re-adds one of them: what the engine
// pays when one VIP's last backend goes down or comes back.
func BenchmarkAnnounceOneChange(b *testing.B) {
	s, err := Start(context.Background(), Config{ASN: 65001, RouterID: netip.MustParseAddr("198.18.0.11")}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	all := manyRoutes(1000)
	if err := s.Announce(all); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := range b.N {
		set := all
		if i%2 == 0 {
			set = all[1:]
		}
		if err := s.Announce(set); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDiffUnchanged is the diff alone for 2000 routes that did not
// change, the common case of a repeated Announce.
func BenchmarkDiffUnchanged(b *testing.B) {
	set, err := newRouteSet(manyRoutes(1000))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if add, del := diff(set, set); len(add)+len(del) != 0 {
			b.Fatal("diff of a set with itself")
		}
	}
}
