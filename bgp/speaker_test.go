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
