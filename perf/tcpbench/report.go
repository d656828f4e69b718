package tcpbench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Options of a Run. Zero fields take the defaults named.
type Options struct {
	// Duration of each measured window; default 5s.
	Duration time.Duration
	// Repeat is how many windows per test; the report keeps the median,
	// min and max. Default 3.
	Repeat int
	// Streams is the number of parallel streams of the many-stream
	// throughput test; default 8.
	Streams int
	// Clients is the number of concurrent clients of the connection-rate
	// test; default 16.
	Clients int
	// Rate is the offered load of the latency test in requests per second,
	// paced over LatencyConns persistent connections; default 2000. It
	// should stay well below saturation: the test measures latency, not
	// capacity.
	Rate float64
	// XLBBinary is the xlb binary run in the lab. Empty: built from the
	// module's source with `go build` into a temporary directory (the
	// working directory must then be inside the module).
	XLBBinary string
	// Datapaths to measure, in order; default AllDatapaths.
	Datapaths []string
	// Out receives progress lines; nil discards them.
	Out io.Writer
}

// The datapaths Run knows.
const (
	XLBAFXDP  = "xlb-afxdp"  // xlb, mode = "afxdp"
	XLBNative = "xlb-native" // xlb, mode = "native"
	HAProxy   = "haproxy"    // HAProxy, mode tcp, roundrobin
	Nginx     = "nginx"      // nginx stream module, round robin
	// The SNI-routed datapaths: every connection starts with a TLS
	// ClientHello for one name, which they read before picking a backend.
	XLBSplice  = "xlb-splice"  // xlb, forward = "splice": proxied until quiescent, then spliced by the datapath
	HAProxySNI = "haproxy-sni" // HAProxy, mode tcp, req.ssl_sni
	NginxSNI   = "nginx-sni"   // nginx stream module, ssl_preread
)

// AllDatapaths is the default Options.Datapaths.
var AllDatapaths = []string{XLBAFXDP, XLBNative, HAProxy, Nginx, XLBSplice, HAProxySNI, NginxSNI}

// The tests, in the order each datapath runs them. The latency test gives
// three records, one per percentile.
const (
	TestStream1      = "stream-1"    // one-stream throughput
	TestStreamN      = "stream-n"    // Options.Streams-stream throughput
	TestConnRate     = "conn-rate"   // short connections per second
	TestLatencyP50   = "rr-lat-p50"  // request/response round trip, median
	TestLatencyP99   = "rr-lat-p99"  // 99th percentile
	TestLatencyP999  = "rr-lat-p999" // 99.9th percentile
	TestLatencyRate  = "rr-lat-rate" // requests per second achieved during the latency test
	latencyTestGroup = "rr-latency"  // the test that makes the TestLatency* records
)

// LatencyConns is the number of persistent connections the latency test
// spreads its paced requests over.
const LatencyConns = 4

func (o Options) withDefaults() Options {
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.Repeat <= 0 {
		o.Repeat = 3
	}
	if o.Streams <= 0 {
		o.Streams = 8
	}
	if o.Clients <= 0 {
		o.Clients = 16
	}
	if o.Rate <= 0 {
		o.Rate = 2000
	}
	if len(o.Datapaths) == 0 {
		o.Datapaths = AllDatapaths
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	return o
}

// Record is one datapath × test: the figure over Options.Repeat windows.
type Record struct {
	Datapath string    `json:"datapath"`
	Test     string    `json:"test"`
	Unit     string    `json:"unit"`
	Median   float64   `json:"median"`
	Min      float64   `json:"min"`
	Max      float64   `json:"max"`
	Runs     []float64 `json:"runs,omitempty"`
	// CPU is the median of the windows' CPU figures, field by field.
	CPU CPU `json:"cpu"`
	// Splice, for xlb-splice, is what became of the connections of the
	// test's windows (the latency test's records share theirs).
	Splice *SpliceCount `json:"splice,omitempty"`
	// Skipped says why the test did not run (a proxy not installed); Error
	// why it failed. Either leaves the figures zero.
	Skipped string `json:"skipped,omitempty"`
	Error   string `json:"error,omitempty"`
}

// Report is what Run measured.
type Report struct {
	Started  time.Time     `json:"started"`
	Duration time.Duration `json:"duration_ns"`
	Repeat   int           `json:"repeat"`
	Streams  int           `json:"streams"`
	Clients  int           `json:"clients"`
	Rate     float64       `json:"rate"`
	// CPUs is the machine's CPU count; Load1 its 1-minute load average
	// when the run started, for judging how shared the machine was.
	CPUs    int      `json:"cpus"`
	Load1   float64  `json:"load1"`
	Records []Record `json:"records"`
}

// newRecord summarizes runs (one value and one CPU per window).
func newRecord(datapath, test, unit string, vals []float64, cpus []CPU) Record {
	r := Record{Datapath: datapath, Test: test, Unit: unit, Runs: vals}
	r.Median, r.Min, r.Max = summarize(vals)
	var procs, soft, busy []float64
	for _, c := range cpus {
		procs, soft, busy = append(procs, c.LBProcs), append(soft, c.Softirq), append(busy, c.Busy)
	}
	r.CPU.LBProcs, _, _ = summarize(procs)
	r.CPU.Softirq, _, _ = summarize(soft)
	r.CPU.Busy, _, _ = summarize(busy)
	return r
}

// summarize returns the median (the mean of the middle two for an even
// count), min and max; zeros for no values.
func summarize(v []float64) (median, lo, hi float64) {
	if len(v) == 0 {
		return 0, 0, 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	n := len(s)
	median = s[n/2]
	if n%2 == 0 {
		median = (s[n/2-1] + s[n/2]) / 2
	}
	return median, s[0], s[n-1]
}

// WriteJSON writes the report as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	if err := e.Encode(r); err != nil {
		return fmt.Errorf("tcpbench: write json: %w", err)
	}
	return nil
}

// WriteMarkdown writes the report as a Markdown table, one row per
// record, with the conditions of the run above it.
func (r Report) WriteMarkdown(w io.Writer) error {
	p := &errWriter{w: w}
	p.printf("TCP through the balancer: %s × %d windows per test, %d streams, %d clients, latency at %.0f req/s over %d connections; %d CPUs, load average %.2f at start (%s).\n\n",
		r.Duration, r.Repeat, r.Streams, r.Clients, r.Rate, LatencyConns, r.CPUs, r.Load1, r.Started.UTC().Format(time.RFC3339))
	p.printf("| datapath | test | median | min | max | unit | LB procs %%CPU | machine softirq %%CPU | machine busy %%CPU | note |\n")
	p.printf("|---|---|---:|---:|---:|---|---:|---:|---:|---|\n")
	for _, rec := range r.Records {
		note := rec.Skipped
		if rec.Error != "" {
			note = "error: " + rec.Error
		}
		if note != "" {
			if r := []rune(note); len(r) > 200 {
				note = string(r[:200]) + "…"
			}
			p.printf("| %s | %s | – | – | – | %s | – | – | – | %s |\n", rec.Datapath, rec.Test, rec.Unit, mdEscape(note))
			continue
		}
		p.printf("| %s | %s | %s | %s | %s | %s | %.0f | %.0f | %.0f | %s |\n", rec.Datapath, rec.Test,
			fmtVal(rec.Median), fmtVal(rec.Min), fmtVal(rec.Max), rec.Unit, rec.CPU.LBProcs, rec.CPU.Softirq, rec.CPU.Busy, spliceNote(rec.Splice))
	}
	p.printf("\nCPU columns are percent of one CPU, medians over the windows. LB procs: user+system time of the processes in the balancer's namespace (no softirq). Machine softirq and busy: all namespaces together (client, balancer, backends, and whatever else shares the machine); veth packet work runs on the sending CPU, so it cannot be split per namespace. For xlb-native, and xlb-splice's spliced connections, the balancer's work is all softirq. The SNI-routed datapaths' long-lived connections (stream-1, stream-n, rr-lat-*) open like a TLS handshake (ClientHello, the backend's answer, the client's last flight) and pause before the load starts, so that xlb can hand them to the datapath; the note says how many of xlb-splice's connections were spliced (xlb stats). conn-rate's short connections are never spliced.\n")
	return p.err
}

// spliceNote says how many of a record's connections were spliced, empty
// for a datapath without splice counters.
func spliceNote(s *SpliceCount) string {
	if s == nil {
		return ""
	}
	note := fmt.Sprintf("spliced %d of %d connections", s.Spliced, s.Connections)
	if len(s.StayedCopied) > 0 {
		var kept []string
		for _, k := range slices.Sorted(maps.Keys(s.StayedCopied)) {
			kept = append(kept, fmt.Sprintf("%s=%d", k, s.StayedCopied[k]))
		}
		note += " (kept copied: " + strings.Join(kept, " ") + ")"
	}
	return note
}

func fmtVal(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func mdEscape(s string) string {
	b := []byte(s)
	out := make([]byte, 0, len(b))
	for _, c := range b {
		switch c {
		case '|':
			out = append(out, '\\', '|')
		case '\n':
			out = append(out, ' ')
		default:
			out = append(out, c)
		}
	}
	return string(out)
}

// errWriter keeps the first write error so a table's many Fprintfs need
// one check.
type errWriter struct {
	w   io.Writer
	err error
}

func (p *errWriter) printf(format string, args ...any) {
	if p.err != nil {
		return
	}
	if _, err := fmt.Fprintf(p.w, format, args...); err != nil {
		p.err = fmt.Errorf("tcpbench: write markdown: %w", err)
	}
}
