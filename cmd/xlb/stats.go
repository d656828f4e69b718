package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"sort"
	"strconv"
	"time"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/engine"
	"github.com/xlbproject/xlb/proxy"
)

func cmdStats(e *env, args []string) int {
	var st runStats
	if code, text := askInstance(e, "stats", args, &st); !text {
		return code
	}
	printStats(e.stdout, st.Stats)
	if st.BGP != nil {
		printBGP(e.stdout, st.BGP)
	}
	return exitOK
}

// askInstance is the shared front of the commands that ask the running
// instance for its state and print it (stats, bgp): it parses -c/--socket,
// --json and --timeout, sends request and decodes the answer into out. It
// returns text true when the caller is to print out as text; otherwise the
// answer was printed as JSON, or the error reported, and code is the exit
// code.
func askInstance(e *env, request string, args []string, out any) (code int, text bool) {
	fs := newFlags(e, request, "[-c FILE | --socket PATH] [--json] [--timeout D]")
	file := fs.String("c", "", "config file of the running instance (to find its control socket)")
	socket := fs.String("socket", config.DefaultSocket, "control socket of the running instance")
	asJSON := fs.Bool("json", false, "print the answer as JSON")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the instance's answer (0: as long as it takes)")
	if code, ok := parseFlags(fs, args); !ok {
		return code, false
	}
	path, code := socketPath(e, *file, *socket)
	if path == "" {
		return code, false
	}
	ctx, cancel := withTimeout(*timeout)
	defer cancel()
	if err := control.Call(ctx, path, request, nil, out); err != nil {
		if errors.Is(err, control.ErrNoAnswer) {
			err = fmt.Errorf("no answer from %s within %s", path, *timeout)
		}
		fmt.Fprintf(e.stderr, "xlb: %v\n", err)
		return exitFail, false
	}
	if !*asJSON {
		return exitOK, true
	}
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintf(e.stderr, "xlb: %v\n", err)
		return exitFail, false
	}
	return exitOK, false
}

func printStats(w io.Writer, st engine.Stats) {
	fmt.Fprintf(w, "interface %s  mode %s  xdp_mode %s  up %s  state %s\n", st.Interface, st.Mode, st.XDPMode, time.Duration(st.UptimeSeconds)*time.Second, st.State)
	if st.Error != "" {
		fmt.Fprintf(w, "  datapath failed: %s\n", st.Error)
	}
	if n := st.Native; n != nil {
		fmt.Fprintf(w, "native: seen %d  forwarded %d  passed %d  malformed %d  flow_hits %d  dropped %d  icmp_rate_limited %d  flows %d\n", n.Seen, n.Forwarded, n.Passed, n.Malformed, n.FlowHits, n.Dropped, n.ICMPRateLimited, n.Flows)
		printCounters(w, "drops:", n.Drops)
		// Named as the workers' events, which AF_XDP mode prints the same way.
		printCounters(w, "events:", map[string]uint64{"echo_reply": n.EchoReplies, "frag_needed_sent": n.FragNeeded,
			"icmp_error_forwarded": n.ICMPErrors, "icmp_rate_limited": n.ICMPRateLimited, "syn_untracked": n.SYNUntracked})
	} else {
		s := st.Steer
		fmt.Fprintf(w, "steering: seen %d  redirected %d  passed %d  malformed %d  no_socket %d  spliced %d  splice_expired %d\n",
			s.Seen, s.Redirected, s.Passed, s.Malformed, s.NoSocket, s.Spliced, s.SpliceExpired)
	}
	if st.SteerErr != "" {
		fmt.Fprintf(w, "  steering counters unreadable: %s\n", st.SteerErr)
	}
	for _, q := range st.Queues {
		fmt.Fprintf(w, "queue %d (cpu %d, zero_copy %t): rx %d pkts %d B  tx %d pkts %d B  kicks %d (failed %d)  tx_ring_full %d  polls %d\n",
			q.Queue, q.CPU, q.ZeroCopy, q.RxPackets, q.RxBytes, q.TxPackets, q.TxBytes, q.Kicks, q.KickFailures, q.TxRingFull, q.Polls)
		f := q.Flows
		fmt.Fprintf(w, "  flows: %d of %d entries  hits %d  misses %d  inserts %d  evictions %d  expired %d\n",
			f.Entries, f.Capacity, f.Hits, f.Misses, f.Inserts, f.Evictions, f.Expired)
		k := q.Socket
		fmt.Fprintf(w, "  xdp_statistics: rx_dropped %d  rx_invalid_descs %d  tx_invalid_descs %d  rx_ring_full %d  rx_fill_ring_empty_descs %d  tx_ring_empty_descs %d\n",
			k.RxDropped, k.RxInvalidDescs, k.TxInvalidDescs, k.RxRingFull, k.RxFillRingEmptyDescs, k.TxRingEmptyDescs)
		if q.SocketErr != "" {
			fmt.Fprintf(w, "  xdp_statistics unreadable: %s\n", q.SocketErr)
		}
		printCounters(w, "  drops:", q.Drops)
		printCounters(w, "  events:", q.Events)
	}
	if len(st.Queues) > 0 {
		printCounters(w, "drops (all queues):", st.Drops)
	}
	printFirewall(w, st.Firewall)
	for _, v := range st.VIPs {
		fmt.Fprintf(w, "vip %s:%d/%s (%s)\n", v.Address, v.Port, v.Protocol, v.Forward)
		for _, b := range v.Backends {
			nh := b.NextHop
			if nh == "" {
				nh = "unresolved"
			}
			flows := "?"
			if b.FlowsKnown {
				flows = strconv.FormatUint(b.Flows, 10)
			}
			fmt.Fprintf(w, "  backend %-16s %-6s weight %-5d next_hop %-17s flows %-6s packets %d  bytes %d", b.Address, b.State, b.Weight, nh, flows, b.Packets, b.Bytes)
			if r := b.HandshakeRTT; r != nil && r.Count > 0 {
				fmt.Fprintf(w, "  handshake_rtt p50 %s p99 %s (%d)", seconds(r.P50Seconds), seconds(r.P99Seconds), r.Count)
			}
			if b.Health != "" {
				fmt.Fprintf(w, "  health %s since %s", b.Health, b.HealthSince)
				if b.HealthError != "" {
					fmt.Fprintf(w, " (last error: %s)", b.HealthError)
				}
			}
			fmt.Fprintln(w)
		}
	}
	if t := st.SpliceTable; t != nil {
		fmt.Fprintf(w, "splice table: %d of %d pairs\n", t.Pairs, t.Capacity)
	}
	printSplice(w, st.Splice)
}

// printSplice prints the counters of the splice VIPs' proxy.
func printSplice(w io.Writer, vips []proxy.VIPStats) {
	for _, v := range vips {
		fmt.Fprintf(w, "splice vip %s  active %d\n", net.JoinHostPort(v.Address, strconv.Itoa(int(v.Port))), v.Active)
		printCounters(w, "  refused:", v.Refused)
		for _, r := range v.Routes {
			fmt.Fprintf(w, "  route %-24s connections %d  active %d  bytes up %d  down %d  no_backend %d  backend_connect_failed %d  idle_timeouts %d  client_resets %d  backend_resets %d  spliced_resets %d\n",
				r.SNI, r.Connections, r.Active, r.BytesUp, r.BytesDown, r.NoBackend, r.ConnectFailed, r.IdleTimeouts, r.ClientResets, r.BackendResets, r.SplicedResets)
			printSpliced(w, "    ", r.SpliceStats)
			for _, b := range r.Backends {
				fmt.Fprintf(w, "    backend %-16s weight %-5d state %-6s connections %d  active %d  bytes up %d  down %d  connect_failed %d",
					b.Address, b.Weight, b.State, b.Connections, b.Active, b.BytesUp, b.BytesDown, b.ConnectFailed)
				if b.Health != "" {
					fmt.Fprintf(w, "  health %s", b.Health)
					if b.HealthError != "" {
						fmt.Fprintf(w, " (last error: %s)", b.HealthError)
					}
				}
				fmt.Fprintln(w)
				printSpliced(w, "      ", b.SpliceStats)
			}
		}
	}
}

// printSpliced prints a route's or backend's phase 2 counters.
func printSpliced(w io.Writer, indent string, s proxy.SpliceStats) {
	fmt.Fprintf(w, "%sspliced %d  now %d  packets up %d  down %d  bytes up %d  down %d\n", indent,
		s.Spliced, s.SplicedActive, s.SplicedPacketsUp, s.SplicedPacketsDown, s.SplicedBytesUp, s.SplicedBytesDown)
	printCounters(w, indent+"stayed copied:", s.StayedCopied)
}

// seconds prints a duration in seconds the way time.Duration does, to three
// significant digits.
func seconds(s float64) string {
	d := time.Duration(s * float64(time.Second))
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(time.Microsecond).String()
	}
	return d.Round(10 * time.Nanosecond).String()
}

// printCounters prints every counter of a set (drop reasons, events), zeros
// included: a reason that is absent from the output is one nobody can alert
// on.
func printCounters(w io.Writer, title string, drops map[string]uint64) {
	names := make([]string, 0, len(drops))
	for n := range drops {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprint(w, title)
	for _, n := range names {
		fmt.Fprintf(w, " %s=%d", n, drops[n])
	}
	fmt.Fprintln(w)
}
