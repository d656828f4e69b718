package metrics

import (
	"net/netip"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xlbproject/xlb/bgp"
)

// withBGP is a Source with a BGP speaker.
type withBGP struct {
	*fixed
	st bgp.Status
	ok bool
}

func (s withBGP) BGP() (bgp.Status, bool) { return s.st, s.ok }

func TestCollectBGP(t *testing.T) {
	src := withBGP{fixed: afxdpSnapshot(), ok: true, st: bgp.Status{
		Peers: []bgp.PeerStatus{
			{Address: netip.MustParseAddr("198.18.0.1"), State: bgp.StateEstablished},
			{Address: netip.MustParseAddr("2001:db8::1"), State: bgp.StateActive, Errors: 3},
		},
		Announced: []bgp.Route{{Prefix: netip.MustParsePrefix("198.18.100.1/32")}, {Prefix: netip.MustParsePrefix("198.18.100.2/32")}},
	}}
	compare(t, src, `
# HELP xlb_bgp_peer_up 1 while the BGP session with the peer is established, else 0.
# TYPE xlb_bgp_peer_up gauge
xlb_bgp_peer_up{peer="198.18.0.1"} 1
xlb_bgp_peer_up{peer="2001:db8::1"} 0
# HELP xlb_bgp_peer_errors_total BGP session problems with the peer: failed connections, NOTIFICATIONs, expired hold timers.
# TYPE xlb_bgp_peer_errors_total counter
xlb_bgp_peer_errors_total{peer="198.18.0.1"} 0
xlb_bgp_peer_errors_total{peer="2001:db8::1"} 3
# HELP xlb_bgp_routes_announced VIP host routes the BGP speaker announces.
# TYPE xlb_bgp_routes_announced gauge
xlb_bgp_routes_announced 2
`, "xlb_bgp_peer_up", "xlb_bgp_peer_errors_total", "xlb_bgp_routes_announced")
	// No speaker (or an unreadable one): no BGP series at all.
	src.ok = false
	if n := testutil.CollectAndCount(NewCollector(src), "xlb_bgp_peer_up", "xlb_bgp_routes_announced"); n != 0 {
		t.Errorf("%d BGP series without a speaker", n)
	}
	if problems, err := testutil.CollectAndLint(NewCollector(withBGP{fixed: afxdpSnapshot(), ok: true, st: src.st})); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}
}
