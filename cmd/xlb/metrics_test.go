package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/xlbproject/xlb/engine"
	"github.com/xlbproject/xlb/lab"
)

const metricsAddr = "127.0.0.1:9350"

// TestMetricsEndpoint: after real TCP traffic through `xlb run`, a scrape
// of its metrics endpoint over HTTP (in the balancer's namespace) agrees
// with `xlb stats --json`, in both modes; /healthz and /readyz answer, a
// Prometheus Accept header gets OpenMetrics, a refused reload shows in
// xlb_config_last_reload_successful, and the endpoint goes with xlb.
func TestMetricsEndpoint(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode, func(t *testing.T) {
			l, logw := labForTest(t, func(dir string) (*lbLab, error) {
				return newLBLab(fmt.Sprintf("xlbm%d", os.Getpid()%100000), xlbBin, dir)
			})
			cfg := withMode(configText(l.socketPath(), 0, []int{1, 1, 2}), mode) +
				fmt.Sprintf("\n[metrics]\nlisten = %q\n", metricsAddr)
			started := time.Now()
			if err := l.startXLB(cfg, logw); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if _, failed := sendRequests(ctx, l, 100, 4); failed > 0 {
				t.Fatalf("%d of 100 requests failed", failed)
			}
			client := lab.HTTPClient(l.lb)
			for path, want := range map[string]string{"/healthz": "ok\n", "/readyz": "ready\n"} {
				if status, _, body := httpGet(t, client, path, ""); status != "200 OK" || body != want {
					t.Errorf("GET %s: %s %q, want 200 %q", path, status, body, want)
				}
			}

			// Counters only grow: each scraped value lies between the
			// stats read just before and just after the scrape.
			before := stats(t, l)
			_, _, body := httpGet(t, client, "/metrics", "")
			after := stats(t, l)
			got := parseMetrics(t, body)
			checks := []struct {
				name   string
				labels []string // name=value pairs
				of     func(engine.Stats) uint64
			}{}
			add := func(name string, of func(engine.Stats) uint64, labels ...string) {
				checks = append(checks, struct {
					name   string
					labels []string
					of     func(engine.Stats) uint64
				}{name, labels, of})
			}
			vip := "198.18.100.1:0/tcp"
			for i, b := range before.VIPs[0].Backends {
				add("xlb_backend_packets_total", func(s engine.Stats) uint64 { return s.VIPs[0].Backends[i].Packets }, "vip", vip, "backend", b.Address)
				add("xlb_backend_bytes_total", func(s engine.Stats) uint64 { return s.VIPs[0].Backends[i].Bytes }, "vip", vip, "backend", b.Address)
				// Flows only come within this test (the idle timeouts are
				// minutes), so the gauge too lies between the two reads.
				add("xlb_backend_flows", func(s engine.Stats) uint64 { return s.VIPs[0].Backends[i].Flows }, "vip", vip, "backend", b.Address)
				if !b.FlowsKnown || b.Flows == 0 {
					t.Errorf("backend %s: flows %d (known %v)", b.Address, b.Flows, b.FlowsKnown)
				}
				if b.Packets == 0 {
					t.Errorf("backend %s forwarded nothing", b.Address)
				}
				if v, ok := metricValue(got, "xlb_backend_state", "vip", vip, "backend", b.Address, "state", "active"); !ok || v != 1 || b.State != "active" {
					t.Errorf("backend %s: xlb_backend_state{state=\"active\"} %v %v, xlb stats says %q", b.Address, v, ok, b.State)
				}
			}
			add("xlb_vip_packets_total", func(s engine.Stats) (n uint64) {
				for _, b := range s.VIPs[0].Backends {
					n += b.Packets
				}
				return n
			}, "vip", vip)
			if mode == "afxdp" {
				q := func(f func(engine.QueueStats) uint64) func(engine.Stats) uint64 {
					return func(s engine.Stats) uint64 { return f(s.Queues[0]) }
				}
				add("xlb_rx_packets_total", q(func(q engine.QueueStats) uint64 { return q.RxPackets }), "queue", "0")
				add("xlb_rx_bytes_total", q(func(q engine.QueueStats) uint64 { return q.RxBytes }), "queue", "0")
				add("xlb_tx_packets_total", q(func(q engine.QueueStats) uint64 { return q.TxPackets }), "queue", "0")
				add("xlb_tx_bytes_total", q(func(q engine.QueueStats) uint64 { return q.TxBytes }), "queue", "0")
				add("xlb_flow_table_misses_total", q(func(q engine.QueueStats) uint64 { return q.Flows.Misses }), "queue", "0")
				add("xlb_flow_table_inserts_total", q(func(q engine.QueueStats) uint64 { return q.Flows.Inserts }), "queue", "0")
				add("xlb_xsk_rx_ring_full_total", q(func(q engine.QueueStats) uint64 { return q.Socket.RxRingFull }), "queue", "0")
				add("xlb_xsk_tx_ring_empty_descs_total", q(func(q engine.QueueStats) uint64 { return q.Socket.TxRingEmptyDescs }), "queue", "0")
				for reason := range before.Queues[0].Drops {
					add("xlb_dropped_packets_total", q(func(q engine.QueueStats) uint64 { return q.Drops[reason] }), "queue", "0", "reason", reason)
				}
				add("xlb_steer_packets_total", func(s engine.Stats) uint64 { return s.Steer.Redirected }, "verdict", "redirected")
				add("xlb_steer_packets_total", func(s engine.Stats) uint64 { return s.Steer.Passed }, "verdict", "passed")
			} else {
				add("xlb_native_packets_total", func(s engine.Stats) uint64 { return s.Native.Forwarded }, "verdict", "forwarded")
				add("xlb_native_flow_hits_total", func(s engine.Stats) uint64 { return s.Native.FlowHits })
				add("xlb_native_events_total", func(s engine.Stats) uint64 { return s.Native.EchoReplies }, "event", "echo_reply")
				add("xlb_native_events_total", func(s engine.Stats) uint64 { return s.Native.FragNeeded }, "event", "frag_needed_sent")
				add("xlb_native_events_total", func(s engine.Stats) uint64 { return s.Native.ICMPErrors }, "event", "icmp_error_forwarded")
				add("xlb_native_events_total", func(s engine.Stats) uint64 { return s.Native.ICMPRateLimited }, "event", "icmp_rate_limited")
				add("xlb_native_events_total", func(s engine.Stats) uint64 { return s.Native.SYNUntracked }, "event", "syn_untracked")
				for reason := range before.Native.Drops {
					add("xlb_native_dropped_packets_total", func(s engine.Stats) uint64 { return s.Native.Drops[reason] }, "reason", reason)
				}
			}
			t.Logf("%d values agree with xlb stats, e.g. %s%v = %d", len(checks), checks[0].name, checks[0].labels, checks[0].of(after))
			for _, c := range checks {
				v, ok := metricValue(got, c.name, c.labels...)
				lo, hi := c.of(before), c.of(after)
				if !ok || v < float64(lo) || v > float64(hi) {
					t.Errorf("%s%v = %v (found %v), xlb stats says %d before and %d after the scrape", c.name, c.labels, v, ok, lo, hi)
				}
			}
			if v, _ := metricValue(got, "xlb_rx_packets_total", "queue", "0"); mode == "afxdp" && v < 100*5 {
				t.Errorf("queue 0 received %v frames for 100 HTTP requests", v)
			}
			if _, ok := metricValue(got, "xlb_build_info", "goversion", runtime.Version()); !ok {
				t.Errorf("no xlb_build_info for %s", runtime.Version())
			}
			if v, ok := metricValue(got, "xlb_datapath_info", "mode", mode, "interface", lab.HostLink); !ok || v != 1 {
				t.Errorf("xlb_datapath_info for mode %s on %s: %v %v", mode, lab.HostLink, v, ok)
			}
			reloadedAt, _ := metricValue(got, "xlb_config_last_reload_success_timestamp_seconds")
			if ok, _ := metricValue(got, "xlb_config_last_reload_successful"); ok != 1 || reloadedAt < float64(started.Unix()) {
				t.Errorf("after start: last reload successful %v at %v, want 1 after %d", ok, reloadedAt, started.Unix())
			}

			// A Prometheus server's Accept header gets OpenMetrics.
			if _, ct, om := httpGet(t, client, "/metrics", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5"); !strings.HasPrefix(ct, "application/openmetrics-text") || !strings.HasSuffix(om, "# EOF\n") {
				t.Errorf("OpenMetrics scrape: Content-Type %q", ct)
			}

			// A refused reload is visible; the last success keeps its time.
			if out, err := reloadWith(t, l, strings.Replace(cfg, "weight = 1", "weight = -1", 1)); err == nil {
				t.Fatalf("reload of a bad file succeeded: %s", out)
			}
			_, _, body = httpGet(t, client, "/metrics", "")
			got = parseMetrics(t, body)
			ok, _ := metricValue(got, "xlb_config_last_reload_successful")
			at, _ := metricValue(got, "xlb_config_last_reload_success_timestamp_seconds")
			if ok != 0 || at != reloadedAt {
				t.Errorf("after a refused reload: successful %v at %v, want 0 at %v", ok, at, reloadedAt)
			}

			if err := l.stopXLB(); err != nil {
				t.Fatal(err)
			}
			if _, err := client.Get("http://" + metricsAddr + "/healthz"); err == nil {
				t.Error("the metrics endpoint still answers after xlb stopped")
			}
		})
	}
}

// httpGet gets path from the metrics endpoint.
func httpGet(t *testing.T, client *http.Client, path, accept string) (status, contentType, body string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+metricsAddr+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.Status, resp.Header.Get("Content-Type"), string(b)
}

func parseMetrics(t *testing.T, body string) map[string]*dto.MetricFamily {
	t.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse the exposition: %v", err)
	}
	return mfs
}

// metricValue is the value of the series of name with the given labels
// (name=value pairs; others may be present).
func metricValue(mfs map[string]*dto.MetricFamily, name string, labels ...string) (float64, bool) {
	mf, ok := mfs[name]
	if !ok {
		return 0, false
	}
next:
	for _, m := range mf.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			if !found {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		}
	}
	return 0, false
}
