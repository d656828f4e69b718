package main

import (
	"context"
	"testing"
	"time"
)

// TestSYNFloodGuard: with flow_syn_rate = 1, real connections through xlb
// still all succeed, in both modes: the SYNs past the rate go to their
// Maglev pick untracked (counted syn_untracked) and each client's ACK
// makes its flow's entry, on the same backend.
func TestSYNFloodGuard(t *testing.T) {
	l := startLab(t, nil)
	inEachModeWith(t, l, "flow_syn_rate = 1", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		const conns = 40
		if _, failed := sendRequests(ctx, l, conns, 4); failed > 0 {
			t.Fatalf("%d of %d connections failed", failed, conns)
		}
		st := stats(t, l)
		untracked := st.Events["syn_untracked"]
		if st.Native != nil {
			untracked = st.Native.SYNUntracked
		}
		// At most one SYN a second per worker or CPU makes an entry: a
		// run of a second or two leaves most of them untracked.
		if untracked < conns/2 {
			t.Errorf("syn_untracked %d after %d connections at flow_syn_rate 1", untracked, conns)
		}
		t.Logf("%d connections, %d SYNs untracked", conns, untracked)
	})
}
