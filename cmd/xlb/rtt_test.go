package main

import (
	"context"
	"regexp"
	"testing"
	"time"
)

// TestHandshakeRTT: after real connections through xlb every backend has
// handshake RTT samples, as many as the connections it served, with a p50
// and a p99 that `xlb stats` prints; in both modes (the AF_XDP workers'
// histograms, the native program's).
func TestHandshakeRTT(t *testing.T) {
	l := startLab(t, nil)
	inEachMode(t, l, func(t *testing.T) { handshakeRTT(t, l) })
}

func handshakeRTT(t *testing.T, l *lbLab) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const conns = 90
	served, failed := sendRequests(ctx, l, conns, 4)
	if failed > 0 {
		t.Fatalf("%d of %d connections failed", failed, conns)
	}
	st := stats(t, l)
	for i, b := range st.VIPs[0].Backends {
		r := b.HandshakeRTT
		name := l.backends[i].Name
		if r == nil || r.Count == 0 {
			t.Errorf("backend %s (%s, served %d): no handshake RTT samples: %+v", b.Address, name, served[name], r)
			continue
		}
		t.Logf("backend %s: %d handshakes, p50 %.1f µs, p99 %.1f µs", b.Address, r.Count, r.P50Seconds*1e6, r.P99Seconds*1e6)
		// Every connection is one handshake; a sample is lost only when
		// two handshakes in flight share a side-table slot.
		if r.Count > uint64(served[name]) {
			t.Errorf("backend %s: %d samples for %d connections", b.Address, r.Count, served[name])
		}
		if r.P50Seconds <= 0 || r.P99Seconds < r.P50Seconds || r.P99Seconds > 5 {
			t.Errorf("backend %s: p50 %g s, p99 %g s", b.Address, r.P50Seconds, r.P99Seconds)
		}
	}
	out := runXLB(t, l.lb, "stats", "--socket", l.socketPath())
	t.Logf("xlb stats:\n%s", out)
	if n := len(regexp.MustCompile(`handshake_rtt p50 \S+ p99 \S+ \(\d+\)`).FindAllString(out, -1)); n != len(l.backends) {
		t.Errorf("xlb stats shows %d handshake RTT lines, want %d:\n%s", n, len(l.backends), out)
	}
}
