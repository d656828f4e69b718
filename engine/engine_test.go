package engine

import (
	"fmt"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/health"
)

// vipText is a checked TCP VIP on 198.18.100.v:80 with backends
// 198.18.v.b for each b.
func vipText(v int, backends ...int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n[[vip]]\naddress = \"198.18.100.%d\"\nport = 80\n[vip.health]\nkind = \"tcp\"\n", v)
	for _, be := range backends {
		fmt.Fprintf(&b, "[[vip.backend]]\naddress = \"198.18.%d.%d\"\nmac = \"02:00:00:00:%02x:%02x\"\n", v, be, v, be)
	}
	return b.String()
}

// parse parses a config of small tables whose [datapath] section holds
// extra besides the interface, the source and the table size.
func parse(t testing.TB, extra string, vips ...string) *config.Config {
	t.Helper()
	text := "[datapath]\ninterface = \"eth0\"\nqueues = [0]\ntable_size = 251\n" + extra + "\n" + strings.Join(vips, "")
	if !strings.Contains(extra, "source") {
		text = strings.Replace(text, "table_size", "source = \"198.18.0.1\"\ntable_size", 1)
	}
	cfg, err := config.Parse("engine.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// A health flap rebuilds the Maglev table of the VIP the backend belongs to
// and no other, and the published plan drops the backend from that table.
func TestHealthFlapRebuildsOnlyItsVIP(t *testing.T) {
	for _, native := range []bool{false, true} {
		cfg := parse(t, "", vipText(1, 11, 12, 13), vipText(2, 11, 12, 13), vipText(3, 11, 12, 13))
		e := newOffline(t, cfg, native, 4096)
		before := append(e.cur.tables[:0:0], e.cur.tables...)
		flap := cfg.VIPs[1].Backends[0]
		for _, state := range []health.State{health.StateDown, health.StateUp} {
			e.onHealth(health.Status{ID: healthID(cfg.VIPs[1], flap.Address), State: state})
			e.applyHealth()
			for i := range cfg.VIPs {
				if rebuilt := e.cur.tables[i] != before[i]; rebuilt != (i == 1) {
					t.Errorf("native %v, %s: vip %d table rebuilt: %v", native, state, i, rebuilt)
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
			down := state == health.StateDown
			if b.Down != down || (slots == 0) != down {
				t.Errorf("native %v, %s: backend down %v with %d slots", native, state, b.Down, slots)
			}
			if native {
				// Down: its index holds the zero entry, so pinned flows re-pick.
				if valid := e.lb.backends[b.ID&0xffff].Addr.IsValid(); valid == down {
					t.Errorf("native %s: backend entry valid %v", state, valid)
				}
			}
			before[1] = e.cur.tables[1]
		}
	}
}
