package metrics

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/datapath"
	"github.com/xlbproject/xlb/engine"
)

// bigSnapshot is 4 queues with every drop reason and event, 50 VIPs of 10
// backends each (500 backends).
func bigSnapshot() *fixed {
	src := afxdpSnapshot()
	st := &src.stats
	st.Queues = nil
	for q := range 4 {
		qs := engine.QueueStats{Queue: q, CPU: q, RxPackets: 1e9, RxBytes: 1e11, Drops: map[string]uint64{}, Events: map[string]uint64{}}
		for d := datapath.Drop(1); d <= datapath.DropEchoDisabled; d++ {
			qs.Drops[d.String()] = uint64(d)
		}
		for _, ev := range []string{"echo_reply", "frag_needed_sent", "icmp_error_forwarded"} {
			qs.Events[ev] = 1
		}
		st.Queues = append(st.Queues, qs)
	}
	st.VIPs = nil
	for v := range 50 {
		vs := engine.VIPStats{Address: fmt.Sprintf("198.18.100.%d", v+1), Port: 443, Protocol: "tcp", Forward: "ipip"}
		for b := range 10 {
			vs.Backends = append(vs.Backends, engine.BackendStats{Address: fmt.Sprintf("198.18.%d.%d", v+1, b+1), Weight: 1, Health: "up", Packets: 1e6, Bytes: 1e8})
		}
		st.VIPs = append(st.VIPs, vs)
	}
	return src
}

// BenchmarkCollect is the collector alone: one snapshot into const
// metrics, gathered and sorted by a registry.
func BenchmarkCollect(b *testing.B) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewCollector(bigSnapshot()))
	b.ReportAllocs()
	series := 0
	for b.Loop() {
		mfs, err := reg.Gather()
		if err != nil {
			b.Fatal(err)
		}
		series = 0
		for _, mf := range mfs {
			series += len(mf.GetMetric())
		}
	}
	b.ReportMetric(float64(series), "series")
}

// BenchmarkScrape is one whole scrape through the handler (Go and process
// collectors included), in the classic text format and in OpenMetrics.
func BenchmarkScrape(b *testing.B) {
	h := Handler(bigSnapshot(), quiet())
	for _, accept := range []string{"text/plain", "application/openmetrics-text;version=1.0.0"} {
		b.Run(accept, func(b *testing.B) {
			b.ReportAllocs()
			size := 0
			for b.Loop() {
				rec := httptest.NewRecorder()
				req := httptest.NewRequest(http.MethodGet, "/metrics", nil).WithContext(b.Context())
				req.Header.Set("Accept", accept)
				h.ServeHTTP(rec, req)
				if rec.Code != http.StatusOK {
					b.Fatal(rec.Code)
				}
				size = rec.Body.Len()
			}
			b.ReportMetric(float64(size), "bytes/scrape")
		})
	}
}
