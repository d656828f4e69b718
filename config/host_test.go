package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// hostConfig parses minimal with its interface line replaced by lines.
func hostConfig(t *testing.T, lines string) *Config {
	t.Helper()
	c, err := Parse("/etc/xlb.toml", []byte(strings.Replace(minimal, `interface = "eth0"`, lines, 1)))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func allowedCPUs(t *testing.T) []int {
	t.Helper()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		t.Fatal(err)
	}
	return cpuList(&set)
}

func TestCheckHostLoopback(t *testing.T) {
	c := hostConfig(t, "interface = \"lo\"\nqueues = [0]")
	if err := c.CheckHost(); err != nil {
		t.Fatal(err)
	}
	dp := c.Datapath
	if !reflect.DeepEqual(dp.Queues, []int{0}) || !reflect.DeepEqual(dp.CPUs, []int{allowedCPUs(t)[0]}) {
		t.Errorf("queues %v cpus %v", dp.Queues, dp.CPUs)
	}
	if !dp.Source.Is4() || !dp.Source.IsLoopback() {
		t.Errorf("source = %v, want lo's IPv4 address", dp.Source)
	}
}

func TestCheckHostResolvesQueues(t *testing.T) {
	c := hostConfig(t, "interface = \"lo\"\nsource = \"198.18.0.1\"")
	if err := c.CheckHost(); err != nil {
		t.Fatal(err)
	}
	n, err := os.ReadDir("/sys/class/net/lo/queues")
	if err != nil {
		t.Skipf("no sysfs: %v", err)
	}
	rx := 0
	for _, e := range n {
		if strings.HasPrefix(e.Name(), "rx-") {
			rx++
		}
	}
	if len(c.Datapath.Queues) != rx || len(c.Datapath.CPUs) != rx {
		t.Errorf("queues %v cpus %v, want %d of each", c.Datapath.Queues, c.Datapath.CPUs, rx)
	}
	if c.Datapath.Source != netip.MustParseAddr("198.18.0.1") {
		t.Errorf("source changed to %v", c.Datapath.Source)
	}
}

func TestCheckHostErrors(t *testing.T) {
	missing := fmt.Sprintf("xlbcfg%d", os.Getpid())
	tests := []struct {
		name  string
		lines string
		want  string
	}{
		{"unknown interface", fmt.Sprintf("interface = %q", missing),
			fmt.Sprintf("/etc/xlb.toml:2: datapath.interface: no interface %q in this network namespace", missing)},
		{"queue beyond the interface", "interface = \"lo\"\nqueues = [0, 60]",
			"/etc/xlb.toml:3: datapath.queues[1]: queue 60 does not exist: lo has 1 RX queues"},
		{"cpu outside the mask", "interface = \"lo\"\nqueues = [0]\ncpus = [\n  4000,\n]",
			fmt.Sprintf("/etc/xlb.toml:5: datapath.cpus[0]: CPU 4000 is not in this process's affinity mask %v", allowedCPUs(t))},
		{"cpus for default queues", "interface = \"lo\"\ncpus = [0, 0, 0]",
			"/etc/xlb.toml:3: datapath.cpus: 3 cpus for 1 queues (every RX queue of lo): give one CPU per queue"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := hostConfig(t, tt.lines)
			before := c.Datapath
			err := c.CheckHost()
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error:\n got %v\nwant %s", err, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("%T is not *Error", err)
			}
			if !reflect.DeepEqual(c.Datapath, before) {
				t.Errorf("failed CheckHost changed the config: %+v", c.Datapath)
			}
		})
	}
}
