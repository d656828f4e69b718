package metrics

import (
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/xlbproject/xlb/datapath"
	"github.com/xlbproject/xlb/engine"
)

// TestCollectHandshakeRTT: a backend's handshake RTT histogram goes out
// with cumulative buckets in seconds, and lints clean.
func TestCollectHandshakeRTT(t *testing.T) {
	src := afxdpSnapshot()
	r := &engine.HandshakeRTT{Count: 3, SumSeconds: 0.0012, Buckets: make([]uint64, datapath.RTTBuckets)}
	r.Buckets[9], r.Buckets[10] = 2, 1 // [262 µs, 524 µs), [524 µs, 1.05 ms)
	src.stats.VIPs = []engine.VIPStats{{Address: "198.18.100.1", Port: 80, Protocol: "tcp", Forward: "ipip",
		Backends: []engine.BackendStats{{Address: "198.18.0.11", Weight: 1, HandshakeRTT: r}}}}
	c := NewCollector(src)
	problems, err := testutil.CollectAndLint(c, "xlb_backend_handshake_rtt_seconds")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	var want strings.Builder
	want.WriteString("# HELP xlb_backend_handshake_rtt_seconds TCP handshake round trips through the balancer, a client's SYN to its first ACK.\n# TYPE xlb_backend_handshake_rtt_seconds histogram\n")
	labels := `backend="198.18.0.11",vip="198.18.100.1:80/tcp"`
	for i, le := range engine.RTTBucketBoundsSeconds() {
		n := 0
		switch {
		case i >= 10:
			n = 3
		case i == 9:
			n = 2
		}
		want.WriteString("xlb_backend_handshake_rtt_seconds_bucket{" + labels + `,le="` + formatFloat(le) + `"} ` + itoa(n) + "\n")
	}
	want.WriteString("xlb_backend_handshake_rtt_seconds_bucket{" + labels + `,le="+Inf"} 3` + "\n")
	want.WriteString("xlb_backend_handshake_rtt_seconds_sum{" + labels + "} 0.0012\n")
	want.WriteString("xlb_backend_handshake_rtt_seconds_count{" + labels + "} 3\n")
	if err := testutil.CollectAndCompare(c, strings.NewReader(want.String()), "xlb_backend_handshake_rtt_seconds"); err != nil {
		t.Error(err)
	}
}

func formatFloat(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) }

func itoa(n int) string { return strconv.Itoa(n) }
