package engine

import (
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/health"
)

// testConfig is n TCP VIPs 198.18.100.1.. on port 80, each with backends
// 198.18.V.11 to .13 checked by TCP, plus extra lines appended.
func testConfig(t testing.TB, n int, extra string) *config.Config {
	t.Helper()
	var b strings.Builder
	b.WriteString("[datapath]\ninterface = \"eth0\"\nsource = \"198.18.0.1\"\n")
	for v := 1; v <= n; v++ {
		fmt.Fprintf(&b, "\n[[vip]]\naddress = \"198.18.100.%d\"\nport = 80\ntable_size = 251\n[vip.health]\nkind = \"tcp\"\n", v)
		for be := 11; be <= 13; be++ {
			fmt.Fprintf(&b, "[[vip.backend]]\naddress = \"198.18.%d.%d\"\nmac = \"02:00:00:00:%02x:%02x\"\n", v, be, v, be)
		}
	}
	b.WriteString(extra)
	cfg, err := config.Parse("engine.toml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// offlineEngine is an engine for cfg with its plan published and nothing
// loaded into the kernel: the control logic alone.
func offlineEngine(t testing.TB, cfg *config.Config) *Engine {
	t.Helper()
	e := newEngine(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	var err error
	if e.tables, err = buildTables(cfg, e.down); err != nil {
		t.Fatal(err)
	}
	_, e.healthKeys = healthTargets(cfg)
	if err := e.publish(); err != nil {
		t.Fatal(err)
	}
	return e
}

// A health flap rebuilds the Maglev table of the VIP the backend belongs to
// and no other, and the published plan drops the backend from that table.
func TestHealthFlapRebuildsOnlyItsVIP(t *testing.T) {
	cfg := testConfig(t, 3, "")
	e := offlineEngine(t, cfg)
	before := append(e.tables[:0:0], e.tables...)
	flap := cfg.VIPs[1].Backends[0]
	for _, state := range []health.State{health.StateDown, health.StateUp} {
		e.onHealth(health.Status{ID: healthID(cfg.VIPs[1], flap.Address), State: state})
		e.applyHealth()
		for i := range cfg.VIPs {
			if rebuilt := e.tables[i] != before[i]; rebuilt != (i == 1) {
				t.Errorf("%s: vip %d table rebuilt: %v", state, i, rebuilt)
			}
		}
		pub := e.pub.Load()
		b := pub.spec.VIPs[1].Backends[0]
		slots := 0
		for _, s := range pub.spec.VIPs[1].Table.Slots() {
			if s == 0 {
				slots++
			}
		}
		if down := state == health.StateDown; b.Down != down || (slots == 0) != down {
			t.Errorf("%s: backend down %v with %d slots", state, b.Down, slots)
		}
		before[1] = e.tables[1]
	}
}
