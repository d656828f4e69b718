// Package metrics serves xlb's counters to Prometheus: /metrics (Prometheus
// text or OpenMetrics, negotiated from the Accept header), /healthz and
// /readyz, on one HTTP listener (the listen key of the config's metrics
// section).
//
// Model. The datapath already counts everything, per worker, in plain
// atomics that `xlb stats` reads (engine.Stats). A Collector reads
// one snapshot of them from its Source at each scrape and turns it into
// const metrics, as node_exporter's IPVS collector does with
// /proc/net/ip_vs_stats. Why: a registry of live prometheus.Counter values
// would put a second write (and a shared cache line) on every packet; here
// the per-packet path pays nothing, a scrape costs what `xlb stats` costs
// (atomic loads, the program's counter maps, one getsockopt per socket, on
// the scraping goroutine, never on a worker's CPU), and the metrics can
// never disagree with `xlb stats` because they are the same numbers. A
// counter that cannot be read (a BPF map or a socket gone bad) is left out
// of that scrape rather than sent as 0, which a rate() would take for a
// counter reset; a *_readable gauge says so. For the same reason a VIP's totals, the sum over its backends,
// keep what a backend counted when a reload removes it (the collector
// remembers each backend's last value), so they never go down.
//
// Contracts. Source is the whole interface to the running xlb: Stats (one
// snapshot per scrape), Reloads (the last config load's outcome, which
// Reloads records), Ready (nil when the datapath is attached and every
// worker runs, else the reason /readyz returns with 503) and Build (the
// binary's version, as `xlb version` reads it), so the collector is tested
// with fixed values. /healthz only says the process answers. The endpoint has no authentication and shows
// backend addresses and traffic volumes, so Options.Validate refuses a
// listen address that is not loopback unless AllowRemote is set. The
// server has read, write and idle timeouts, serves at most 4 scrapes at
// once, logs its errors and shuts down gracefully.
//
// Names follow the Prometheus naming guide: one xlb_ prefix, base units
// (bytes, seconds), _total on counters, label names never repeated inside
// metric names, no per-flow labels. Labels: queue is the NIC queue of an
// AF_XDP worker; reason a drop reason as `xlb stats` names it; vip is
// "ADDR:PORT/PROTO" ("[2001:db8::1]:53/udp"; port 0 is every port);
// backend is the backend's address. The registry also carries the standard
// go_*, process_* and promhttp_metric_handler_* (scrapes served, failed)
// metrics.
//
// Both modes:
//
//	xlb_build_info{version,revision,goversion}           gauge   1; the module version, VCS revision and Go version of the binary
//	xlb_datapath_info{interface,mode,xdp_mode}          gauge   1; mode afxdp or native, xdp_mode the XDP attach mode
//	xlb_config_last_reload_successful                   gauge   1 if the last config load (start or reload) succeeded
//	xlb_config_last_reload_success_timestamp_seconds    gauge   when a config last loaded successfully
//	xlb_program_counters_readable                       gauge   1 if the XDP program's counters were read at this scrape
//	xlb_vip_info{vip,forward}                           gauge   1; forward is ipip, gue or dsr
//	xlb_vip_packets_total{vip}                          counter frames forwarded to the VIP's backends, removed ones included
//	xlb_vip_bytes_total{vip}                            counter their bytes as received (Ethernet header in, before encapsulation)
//	xlb_backend_packets_total{vip,backend}              counter frames forwarded to the backend
//	xlb_backend_bytes_total{vip,backend}                counter their bytes as received
//	xlb_backend_up{vip,backend}                         gauge   0 while its health check holds it down, else 1
//	xlb_backend_weight{vip,backend}                     gauge   configured weight
//	xlb_backend_effective_weight{vip,backend}           gauge   weight new flows see: 0 while drained or down
//	xlb_backend_state{vip,backend,state}                gauge   state set: 1 for the current one of active, drain, down
//	xlb_backend_flows{vip,backend}                      gauge   flows pinned to the backend in the flow tables, counted at the scrape (left out when the count failed)
//	xlb_backend_handshake_rtt_seconds{vip,backend}      histogram TCP handshake RTT through the balancer (client SYN to first ACK); buckets double from 1.024 µs to 4.29 s
//
// AF_XDP mode (mode = "afxdp"):
//
//	xlb_steer_packets_total{verdict}                    counter steering program: redirected, passed, malformed, spliced, splice_expired
//	xlb_steer_no_socket_packets_total                   counter VIP frames on a queue no worker serves (part of passed)
//	xlb_queue_info{queue,cpu,zero_copy}                 gauge   1; the worker's CPU and the socket's copy mode
//	xlb_rx_packets_total{queue}, xlb_rx_bytes_total{queue}   counter frames a worker received and their bytes
//	xlb_tx_packets_total{queue}, xlb_tx_bytes_total{queue}   counter frames a worker transmitted and their bytes (encapsulation in)
//	xlb_dropped_packets_total{queue,reason}             counter frames a worker dropped, by reason
//	xlb_events_total{queue,event}                       counter frames sent that are not plain forwarded packets: echo_reply, frag_needed_sent, icmp_error_forwarded
//	xlb_tx_kicks_total{queue}                           counter sendto(2) kicks; xlb_tx_kick_failures_total{queue} the failed ones
//	xlb_tx_ring_full_total{queue}                       counter batches that did not fit the TX ring (retried, never dropped)
//	xlb_polls_total{queue}                              counter poll(2) calls of an idle worker
//	xlb_rx_wakeups_total{queue}                         counter poll(2) wakeups a spinning worker gave the kernel when its fill ring asked for one (need_wakeup)
//	xlb_flow_table_entries{queue}, xlb_flow_table_capacity{queue}   gauge  flows held, flows it can hold
//	xlb_flow_table_{hits,misses,inserts,evictions,expired}_total{queue}   counter lookups that found / did not find the flow, inserts, live flows pushed out, idle flows reclaimed
//	xlb_xsk_statistics_readable{queue}                  gauge   1 if the socket's XDP_STATISTICS was read at this scrape
//	xlb_xsk_{rx_dropped,rx_invalid_descs,tx_invalid_descs,rx_ring_full,rx_fill_ring_empty_descs,tx_ring_empty_descs}_total{queue}   counter the socket's XDP_STATISTICS
//
// With [bgp] (the Source is a BGPSource):
//
//	xlb_bgp_peer_up{peer}                               gauge   1 while the BGP session with the peer is established
//	xlb_bgp_peer_errors_total{peer}                     counter failed connections, NOTIFICATIONs, expired hold timers
//	xlb_bgp_routes_announced                            gauge   VIP host routes the speaker announces
//
// Native mode (mode = "native"; no workers, so no queue series):
//
//	xlb_native_packets_total{verdict}                   counter lb program: forwarded, passed, malformed, dropped (their sum is every frame seen)
//	xlb_native_dropped_packets_total{reason}            counter its drops by reason
//	xlb_native_flow_hits_total                          counter forwarded frames whose backend came from the flow table
//	xlb_native_events_total{event}                      counter as xlb_events_total: echo_reply, frag_needed_sent, icmp_error_forwarded, icmp_rate_limited, syn_untracked
//
// Splice VIPs (the proxy; see docs/metrics.md for the label values):
//
//	xlb_splice_table_pairs, xlb_splice_table_capacity   gauge   spliced pairs now, splice_table_size
//	xlb_splice_active_connections{vip}                  gauge   connections the proxy holds
//	xlb_splice_refused_total{vip,reason}                counter connections reset before a backend
//	xlb_splice_connections_total{vip,route,backend}     counter connections routed to the backend
//	xlb_splice_backend_connect_failures_total{vip,route,backend} counter failed backend connections
//	xlb_splice_copied_bytes_total{vip,route,backend,direction}   counter payload the proxy copied
//	xlb_splice_spliced_total{vip,route,backend}         counter connections handed to the datapath
//	xlb_splice_spliced_connections{vip,route,backend}   gauge   connections the datapath forwards now
//	xlb_splice_spliced_{packets,bytes}_total{vip,route,backend,direction} counter frames the datapath forwarded
//	xlb_splice_stayed_copied_total{vip,route,backend,reason}     counter connections not handed over, by reason
//	xlb_splice_route_events_total{vip,route,event}      counter no_backend, idle_timeout, resets
package metrics
