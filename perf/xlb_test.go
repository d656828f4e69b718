package perf

import (
	"testing"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/lab"
)

// configLab is a perfLab with just what xlbConfig reads: the balancer's and
// the sink's links.
func configLab() *perfLab {
	return &perfLab{
		lb:   lab.End{Name: "eth0", MAC: [6]byte{0x02, 0, 0, 0, 0, 1}},
		sink: lab.End{Name: "eth0", MAC: [6]byte{0x02, 0, 0, 0, 0, 2}},
	}
}

// TestXLBFlowTableSize: each xlb datapath's config parses with the flow
// table the report states, by default and with Options.FlowTableSize.
func TestXLBFlowTableSize(t *testing.T) {
	for _, tc := range []struct {
		size, native, afxdp int
	}{
		{0, NativeFlowTableSize, config.DefaultFlowTableSize},
		{8192, 8192, 8192},
	} {
		o, err := Options{FlowTableSize: tc.size}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		for mode, want := range map[string]int{config.ModeNative: tc.native, "": tc.afxdp} {
			c, err := config.Parse("perf.toml", []byte(xlbConfig(configLab(), o, 0, "/run/xlb-test.sock", mode)))
			if err != nil {
				t.Fatalf("size %d, mode %q: %v", tc.size, mode, err)
			}
			if got := int(c.Datapath.FlowTableSize); got != want || got != o.flowTableSize(mode) {
				t.Errorf("size %d, mode %q: flow_table_size %d, want %d", tc.size, mode, got, want)
			}
			if native := c.Datapath.Mode == config.ModeNative; native != (mode == config.ModeNative) {
				t.Errorf("size %d, mode %q: native %t", tc.size, mode, native)
			}
		}
	}
}
