package ring

import (
	"errors"
	"strings"
	"testing"
)

func validConfig() Config {
	return Config{
		Ifindex: 7, Ifname: "eth0", Queue: 3,
		FrameSize: 2048, FrameCount: 4096, Headroom: 64,
		FillSize: 2048, CompletionSize: 2048, RxSize: 2048, TxSize: 2048,
		ZeroCopy: ZeroCopyAuto, NeedWakeup: true, TxBudget: 64,
		BusyPoll: true, BusyPollBudget: 64,
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(*Config)
		want   string // in the error; "" for a valid config
	}{
		{"valid", func(*Config) {}, ""},
		{"4 KiB frames", func(c *Config) { c.FrameSize = 4096; c.Headroom = 3839 }, ""},
		{"tx budget default", func(c *Config) { c.TxBudget = 0 }, ""},
		{"tx budget at ring size", func(c *Config) { c.TxBudget = c.TxSize }, ""},
		{"zero-copy on", func(c *Config) { c.ZeroCopy = ZeroCopyOn }, ""},
		{"zero-copy off", func(c *Config) { c.ZeroCopy = ZeroCopyOff }, ""},
		{"no ifname", func(c *Config) { c.Ifname = ""; c.FrameSize = 1 }, "ifindex 7 queue 3: frame size 1"},
		{"ifindex 0", func(c *Config) { c.Ifindex = 0 }, "interface index 0"},
		{"negative queue", func(c *Config) { c.Queue = -1 }, "queue -1"},
		{"frame size 3000", func(c *Config) { c.FrameSize = 3000 }, "eth0 queue 3: frame size 3000"},
		{"frame size 0", func(c *Config) { c.FrameSize = 0 }, "frame size 0"},
		{"no frames", func(c *Config) { c.FrameCount = 0 }, "frame count 0"},
		{"too many frames", func(c *Config) { c.FrameCount = 1<<20 + 1 }, "frame count 1048577"},
		{"headroom too big", func(c *Config) { c.Headroom = 1792 }, "headroom 1792"},
		{"fill size 0", func(c *Config) { c.FillSize = 0 }, "fill ring size 0"},
		{"completion size 1000", func(c *Config) { c.CompletionSize = 1000 }, "completion ring size 1000"},
		{"rx size 3", func(c *Config) { c.RxSize = 3 }, "rx ring size 3"},
		{"tx size 2^21", func(c *Config) { c.TxSize = 1 << 21 }, "tx ring size 2097152"},
		{"zero-copy empty", func(c *Config) { c.ZeroCopy = "" }, `zero-copy mode ""`},
		{"zero-copy yes", func(c *Config) { c.ZeroCopy = "yes" }, `zero-copy mode "yes"`},
		{"tx budget 16", func(c *Config) { c.TxBudget = 16 }, "tx budget 16"},
		{"tx budget over ring", func(c *Config) { c.TxBudget = 4096 }, "tx budget 4096"},
		{"busy-poll budget negative", func(c *Config) { c.BusyPollBudget = -1 }, "busy-poll budget -1"},
		{"busy-poll budget 65536", func(c *Config) { c.BusyPollBudget = 65536 }, "busy-poll budget 65536"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := validConfig()
			tc.change(&c)
			err := c.Validate()
			if tc.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted %+v", c)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error %q does not wrap ErrInvalidConfig", err)
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "ring: ") {
				t.Errorf("error %q, want it to start with \"ring: \" and name %q", err, tc.want)
			}
			// Open must refuse it before touching the kernel.
			if _, err := Open(c); !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("Open: %v, want ErrInvalidConfig", err)
			}
		})
	}
}
