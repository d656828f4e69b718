package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/bgp"
)

// BGPSource is implemented by a Source whose xlb announces its VIPs over
// BGP ([bgp] in the config). BGP returns the speaker's status; ok is false
// without a speaker or when its status cannot be read, and the BGP series
// are then left out of the scrape.
type BGPSource interface {
	BGP() (st bgp.Status, ok bool)
}

// The BGP series:
//
//	xlb_bgp_peer_up{peer}                gauge   1 while the session with the peer is established
//	xlb_bgp_peer_errors_total{peer}      counter failed connections, NOTIFICATIONs, expired hold timers (as `xlb bgp` counts them)
//	xlb_bgp_routes_announced             gauge   VIP host routes the speaker announces
var (
	bgpPeerUp     = newDesc("xlb_bgp_peer_up", "1 while the BGP session with the peer is established, else 0.", "peer")
	bgpPeerErrors = newDesc("xlb_bgp_peer_errors_total", "BGP session problems with the peer: failed connections, NOTIFICATIONs, expired hold timers.", "peer")
	bgpRoutes     = newDesc("xlb_bgp_routes_announced", "VIP host routes the BGP speaker announces.")
)

func collectBGP(ch chan<- prometheus.Metric, src Source) {
	bs, ok := src.(BGPSource)
	if !ok {
		return
	}
	st, ok := bs.BGP()
	if !ok {
		return
	}
	for _, p := range st.Peers {
		peer := p.Address.String()
		gauge(ch, bgpPeerUp, boolValue(p.State == bgp.StateEstablished), peer)
		counter(ch, bgpPeerErrors, p.Errors, peer)
	}
	gauge(ch, bgpRoutes, float64(len(st.Announced)))
}
