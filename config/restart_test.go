package config

import (
	"slices"
	"strconv"
	"strings"
	"testing"
)

// reloadableDatapathKeys are the [datapath] keys a reload applies.
var reloadableDatapathKeys = []string{"source", "source6", "table_size", "flow_tcp_timeout", "flow_udp_timeout", "icmp_rate_limit", "icmp_rate_burst", "flow_syn_rate"}

func TestRestartKeysCoverEveryKey(t *testing.T) {
	var restart []string
	for _, k := range restartKeys {
		restart = append(restart, k.key)
	}
	for _, k := range datapathKeys {
		r, l := slices.Contains(restart, "datapath."+k), slices.Contains(reloadableDatapathKeys, k)
		if r == l {
			t.Errorf("datapath.%s: restart %v, reloadable %v: it must be exactly one", k, r, l)
		}
	}
	for _, k := range []string{"control.socket", "metrics.listen", "metrics.allow_remote"} {
		if !slices.Contains(restart, k) {
			t.Errorf("%s is not a restart key", k)
		}
	}
}

func TestRestartKeys(t *testing.T) {
	base := `[datapath]
interface = "lo"
xdp_mode = "auto"
tx_budget = 64
source = "198.18.0.1"

[control]
socket = "/run/xlb/xlb.sock"

[[vip]]
address = "198.18.100.1"
port = 80

  [[vip.backend]]
  address = "198.18.0.11"
`
	tests := []struct {
		name string
		old  string // a line of base, or "" to append
		new  string
		want []string
	}{
		{"same file", "", "", nil},
		{"queues resolved to the same", `interface = "lo"`, "interface = \"lo\"\nqueues = [0]", nil},
		{"cpus resolved to the same", `interface = "lo"`, "interface = \"lo\"\ncpus = [CPU0]", nil},
		// Not on this host, so not resolved: its queues and CPUs differ too.
		{"interface", `interface = "lo"`, `interface = "xlbcfgnone"`, []string{"datapath.interface", "datapath.queues", "datapath.cpus"}},
		{"xdp mode", `xdp_mode = "auto"`, `xdp_mode = "generic"`, []string{"datapath.xdp_mode"}},
		{"zero copy", `xdp_mode = "auto"`, `zero_copy = "off"`, []string{"datapath.zero_copy"}},
		{"frame size", `xdp_mode = "auto"`, `frame_size = 4096`, []string{"datapath.frame_size"}},
		{"frame count", `xdp_mode = "auto"`, `frame_count = 8192`, []string{"datapath.frame_count"}},
		{"headroom", `xdp_mode = "auto"`, `headroom = 64`, []string{"datapath.headroom"}},
		{"rx ring", `xdp_mode = "auto"`, `rx_ring = 1024`, []string{"datapath.rx_ring"}},
		{"tx ring", `xdp_mode = "auto"`, `tx_ring = 1024`, []string{"datapath.tx_ring"}},
		{"fill ring", `xdp_mode = "auto"`, `fill_ring = 1024`, []string{"datapath.fill_ring"}},
		{"completion ring", `xdp_mode = "auto"`, `completion_ring = 1024`, []string{"datapath.completion_ring"}},
		{"batch size", `xdp_mode = "auto"`, `batch_size = 32`, []string{"datapath.batch_size"}},
		{"need wakeup", `xdp_mode = "auto"`, `need_wakeup = false`, []string{"datapath.need_wakeup"}},
		{"busy poll", `xdp_mode = "auto"`, `busy_poll = true`, []string{"datapath.busy_poll"}},
		{"busy poll budget", `xdp_mode = "auto"`, `busy_poll_budget = 8`, []string{"datapath.busy_poll_budget"}},
		{"spin", `xdp_mode = "auto"`, `spin = true`, []string{"datapath.spin"}},
		{"tx budget", `tx_budget = 64`, `tx_budget = 0`, []string{"datapath.tx_budget"}},
		{"flow table size", `xdp_mode = "auto"`, `flow_table_size = 1024`, []string{"datapath.flow_table_size"}},
		{"control socket", `socket = "/run/xlb/xlb.sock"`, `socket = "/run/xlb/other.sock"`, []string{"control.socket"}},
		{"several, in the order of the keys", `xdp_mode = "auto"`, "spin = true\nrx_ring = 1024\nxdp_mode = \"native\"",
			[]string{"datapath.xdp_mode", "datapath.rx_ring", "datapath.spin"}},
		{"source", `source = "198.18.0.1"`, `source = "198.18.0.2"`, nil},
		{"source6", `xdp_mode = "auto"`, `source6 = "2001:db8::1"`, nil},
		{"table size", `xdp_mode = "auto"`, `table_size = 251`, nil},
		{"flow timeouts", `xdp_mode = "auto"`, "flow_tcp_timeout = \"1m\"\nflow_udp_timeout = \"5s\"", nil},
		{"vip forward and options", "port = 80", "port = 80\nforward = \"gue\"\nicmp_echo = false\nfragments = \"pass\"\ntable_size = 251", nil},
		{"new vip", `source = "198.18.0.1"`, "source = \"198.18.0.1\"\nsource6 = \"2001:db8::1\"\n[[vip]]\naddress = \"2001:db8::1\"\nport = 443\n[[vip.backend]]\naddress = \"2001:db8::11\"", nil},
		{"backend weight, state, health", "", "  weight = 3\n  state = \"drain\"\n  health = {kind = \"tcp\"}", nil},
	}
	cpu0 := allowedCPUs(t)[0]
	load := func(t *testing.T, src string) *Config {
		t.Helper()
		c, err := Parse("r.toml", []byte(src))
		if err != nil {
			t.Fatal(err)
		}
		if c.Datapath.Interface == "lo" {
			if err := c.CheckHost(); err != nil {
				t.Fatal(err)
			}
		}
		return c
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := base + tt.new + "\n"
			if tt.old != "" {
				if !strings.Contains(base, tt.old) {
					t.Fatalf("base has no %q", tt.old)
				}
				src = strings.Replace(base, tt.old, tt.new, 1)
			}
			src = strings.ReplaceAll(src, "CPU0", strconv.Itoa(cpu0))
			old, next := load(t, base), load(t, src)
			if got := old.RestartKeys(next); !slices.Equal(got, tt.want) {
				t.Errorf("RestartKeys = %q, want %q", got, tt.want)
			}
			if got := next.RestartKeys(old); !slices.Equal(got, tt.want) {
				t.Errorf("RestartKeys back = %q, want %q", got, tt.want)
			}
		})
	}
}
