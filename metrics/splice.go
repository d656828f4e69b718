package metrics

import (
	"net"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/engine"
	"github.com/xlbproject/xlb/proxy"
)

// The splice VIPs' proxy (proxy.VIPStats). Labels: vip ("ADDR:PORT/tcp"),
// route (its SNI pattern or "default"), backend (its address), direction
// (client_to_backend, backend_to_client). Counters of a connection are
// added when it ends; a route or backend a reload removes takes its series
// with it.
var (
	spliceActive      = newDesc("xlb_splice_active_connections", "Connections of the splice VIP the proxy holds, routed or not yet.", "vip")
	spliceRefused     = newDesc("xlb_splice_refused_total", "Connections of the splice VIP reset before they reached a backend, by reason.", "vip", "reason")
	spliceConns       = newDesc("xlb_splice_connections_total", "Connections routed to the backend.", "vip", "route", "backend")
	spliceConnectFail = newDesc("xlb_splice_backend_connect_failures_total", "Connections to the backend that failed or timed out.", "vip", "route", "backend")
	spliceCopiedBytes = newDesc("xlb_splice_copied_bytes_total", "Bytes the proxy copied between the client and the backend (TCP payload), by direction.", "vip", "route", "backend", "direction")
	splicedTotal      = newDesc("xlb_splice_spliced_total", "Connections handed to the datapath once quiescent (splice_table_size).", "vip", "route", "backend")
	splicedNow        = newDesc("xlb_splice_spliced_connections", "Connections the datapath forwards now.", "vip", "route", "backend")
	splicedPackets    = newDesc("xlb_splice_spliced_packets_total", "Frames the datapath forwarded for spliced connections that ended, by direction.", "vip", "route", "backend", "direction")
	splicedBytes      = newDesc("xlb_splice_spliced_bytes_total", "Bytes of the frames the datapath forwarded for spliced connections that ended, by direction.", "vip", "route", "backend", "direction")
	spliceKept        = newDesc("xlb_splice_stayed_copied_total", "Connections that stayed copied by the proxy instead of being handed to the datapath, by reason.", "vip", "route", "backend", "reason")
	spliceTablePairs  = newDesc("xlb_splice_table_pairs", "Spliced pairs the steering program forwards now.")
	spliceTableCap    = newDesc("xlb_splice_table_capacity", "Pairs the steering program's splice table holds (splice_table_size).")
	spliceRouteEvents = newDesc("xlb_splice_route_events_total", "Route events: no_backend (reset: no backend up), idle_timeout (both peers reset), client_reset and backend_reset (passed on to the other peer), spliced_reset (a reset the datapath passed on).", "vip", "route", "event")
)

var spliceDirections = [2]string{"client_to_backend", "backend_to_client"}

func collectSplice(ch chan<- prometheus.Metric, table *engine.SpliceTableStats, vips []proxy.VIPStats) {
	if table != nil {
		gauge(ch, spliceTablePairs, float64(table.Pairs))
		gauge(ch, spliceTableCap, float64(table.Capacity))
	}
	for _, v := range vips {
		vip := net.JoinHostPort(v.Address, strconv.Itoa(int(v.Port))) + "/tcp"
		gauge(ch, spliceActive, float64(v.Active), vip)
		for reason, n := range v.Refused {
			counter(ch, spliceRefused, n, vip, reason)
		}
		for _, r := range v.Routes {
			for event, n := range map[string]uint64{
				"no_backend": r.NoBackend, "idle_timeout": r.IdleTimeouts,
				"client_reset": r.ClientResets, "backend_reset": r.BackendResets, "spliced_reset": r.SplicedResets,
			} {
				counter(ch, spliceRouteEvents, n, vip, r.SNI, event)
			}
			for _, b := range r.Backends {
				l := []string{vip, r.SNI, b.Address}
				counter(ch, spliceConns, b.Connections, l...)
				counter(ch, spliceConnectFail, b.ConnectFailed, l...)
				counter(ch, splicedTotal, b.Spliced, l...)
				gauge(ch, splicedNow, float64(b.SplicedActive), l...)
				for i, v := range [2][3]uint64{
					{b.BytesUp, b.SplicedPacketsUp, b.SplicedBytesUp},
					{b.BytesDown, b.SplicedPacketsDown, b.SplicedBytesDown},
				} {
					d := append(l[:3:3], spliceDirections[i])
					counter(ch, spliceCopiedBytes, v[0], d...)
					counter(ch, splicedPackets, v[1], d...)
					counter(ch, splicedBytes, v[2], d...)
				}
				for reason, n := range b.StayedCopied {
					counter(ch, spliceKept, n, append(l[:3:3], reason)...)
				}
			}
		}
	}
}
