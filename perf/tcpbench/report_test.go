package tcpbench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/config"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		in               []float64
		median, min, max float64
	}{
		{nil, 0, 0, 0},
		{[]float64{3}, 3, 3, 3},
		{[]float64{5, 1, 3}, 3, 1, 5},
		{[]float64{4, 1, 3, 2}, 2.5, 1, 4},
	}
	for _, tc := range tests {
		in := append([]float64(nil), tc.in...)
		m, lo, hi := summarize(tc.in)
		if m != tc.median || lo != tc.min || hi != tc.max {
			t.Errorf("summarize(%v) = %v %v %v, want %v %v %v", tc.in, m, lo, hi, tc.median, tc.min, tc.max)
		}
		for i := range in {
			if in[i] != tc.in[i] {
				t.Fatalf("summarize reordered its input: %v", tc.in)
			}
		}
	}
}

func TestWithDefaults(t *testing.T) {
	o := Options{}.withDefaults()
	if o.Duration != 5*time.Second || o.Repeat != 3 || o.Streams != 8 || o.Clients != 16 || o.Rate != 2000 || len(o.Datapaths) != len(AllDatapaths) || o.Out == nil {
		t.Errorf("defaults %+v", o)
	}
	o = Options{Duration: time.Second, Repeat: 1, Datapaths: []string{HAProxy}}.withDefaults()
	if o.Duration != time.Second || o.Repeat != 1 || len(o.Datapaths) != 1 {
		t.Errorf("set values overridden: %+v", o)
	}
}

func TestReportWriters(t *testing.T) {
	rep := Report{Duration: time.Second, Repeat: 2, Records: []Record{
		newRecord(XLBAFXDP, TestStream1, "Gbit/s", []float64{2, 1}, []CPU{{LBProcs: 80, Softirq: 100, Busy: 150}, {LBProcs: 60}}),
		{Datapath: Nginx, Test: TestConnRate, Unit: "conn/s", Skipped: "nginx | not installed"},
		{Datapath: HAProxy, Test: TestLatencyP99, Unit: "µs", Error: "boom\nagain"},
		{Datapath: XLBSplice, Test: TestStreamN, Unit: "Gbit/s", Median: 1, Min: 1, Max: 1,
			Splice: &SpliceCount{Connections: 8, Spliced: 7, StayedCopied: map[string]uint64{"not_quiescent": 1}}},
	}}
	if r := rep.Records[0]; r.Median != 1.5 || r.CPU.LBProcs != 70 || r.CPU.Softirq != 50 {
		t.Errorf("record %+v", r)
	}
	var md bytes.Buffer
	if err := rep.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(md.String(), "\n")
	var rows []string
	for _, l := range lines {
		if strings.HasPrefix(l, "| ") {
			rows = append(rows, l)
		}
	}
	if len(rows) != 5 {
		t.Fatalf("%d table rows, want header + 4:\n%s", len(rows), md.String())
	}
	cols := strings.Count(rows[0], " | ")
	for _, r := range rows[1:] {
		if n := strings.Count(strings.ReplaceAll(r, `\|`, ""), " | "); n != cols {
			t.Errorf("row %q has %d separators, header %d", r, n, cols)
		}
	}
	if !strings.Contains(rows[1], "| 1.50 | 1.00 | 2.00 | Gbit/s | 70 |") {
		t.Errorf("figures row %q", rows[1])
	}
	if !strings.HasSuffix(rows[4], "| spliced 7 of 8 connections (kept copied: not_quiescent=1) |") {
		t.Errorf("splice row %q", rows[4])
	}
	var js bytes.Buffer
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if len(back.Records) != 4 || back.Records[3].Splice == nil || back.Records[3].Splice.Copied() != 1 || back.Records[1].Skipped == "" || back.Records[2].Error == "" || back.Records[0].Runs[1] != 1 {
		t.Errorf("json round trip: %+v", back)
	}
}

func TestConfigs(t *testing.T) {
	x := xlbConfig("native", "/tmp/x.sock")
	for _, want := range []string{`mode = "native"`, `address = "198.18.100.1"`, `address = "198.18.0.11"`, `address = "198.18.0.12"`, `forward = "ipip"`} {
		if !strings.Contains(x, want) {
			t.Errorf("xlb config lacks %s:\n%s", want, x)
		}
	}
	h := haproxyConfig(false)
	for _, want := range []string{"mode tcp", "balance roundrobin", "bind 198.18.100.2:5001", "server be2 198.18.0.12:5002"} {
		if !strings.Contains(h, want) {
			t.Errorf("haproxy config lacks %s:\n%s", want, h)
		}
	}
	n := nginxConfig("/tmp/d", nginxStreamModule, false)
	for _, want := range []string{"load_module " + nginxStreamModule, "stream {", "listen 198.18.100.2:5002;", "server 198.18.0.11:5001;", "pid /tmp/d/nginx.pid;"} {
		if !strings.Contains(n, want) {
			t.Errorf("nginx config lacks %s:\n%s", want, n)
		}
	}
	if strings.Count(n, "{") != strings.Count(n, "}") {
		t.Errorf("nginx config braces unbalanced:\n%s", n)
	}

	// The SNI-routed ones route the SNI ports by sniName.
	for cfg, wants := range map[string][]string{
		xlbSpliceConfig("/tmp/x.sock"):  {`forward = "splice"`, `address = "198.18.100.2"`, "port = 5011", "port = 5012", `sni = "bench.example.com"`, `address = "198.18.0.12"`},
		haproxyConfig(true):             {"bind 198.18.100.2:5011", "req.ssl_hello_type 1", "use_backend b5012 if { req.ssl_sni -i bench.example.com }", "server be2 198.18.0.12:5012"},
		nginxConfig("/tmp/d", "", true): {"ssl_preread on;", "map $ssl_preread_server_name $u5011", "bench.example.com p5011;", "listen 198.18.100.2:5012;", "server 198.18.0.11:5011;"},
	} {
		for _, want := range wants {
			if !strings.Contains(cfg, want) {
				t.Errorf("config lacks %s:\n%s", want, cfg)
			}
		}
	}
	if cfg, err := config.Parse("splice.toml", []byte(xlbSpliceConfig("/tmp/x.sock"))); err != nil || len(cfg.VIPs) != 2 {
		t.Errorf("xlb splice config: %v", err)
	}
}
