package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// manyVIPs renders a config with n VIPs (on distinct addresses, or on one
// address with ports 1..n) and backends backends each.
func manyVIPs(head string, n, backends int, oneAddr bool) string {
	var b strings.Builder
	b.WriteString("[datapath]\ninterface = \"eth0\"\n" + head + "\n")
	for i := range n {
		addr, port := fmt.Sprintf("198.18.%d.%d", 100+i/250, 1+i%250), 80
		if oneAddr {
			addr, port = "198.18.100.1", 1+i
		}
		fmt.Fprintf(&b, "[[vip]]\naddress = %q\nport = %d\n", addr, port)
		for j := range backends {
			fmt.Fprintf(&b, "  [[vip.backend]]\n  address = \"198.19.%d.%d\"\n", j/250, 1+j%250)
		}
	}
	return b.String()
}

// bigTables is n native VIPs with tables of 16777213 slots each.
func bigTables(n int) string {
	return strings.ReplaceAll(manyVIPs("mode = \"native\"\ntable_size = 251", n, 1, false), "port = 80\n", "port = 80\ntable_size = 16777213\n")
}

// lineOf is the line of "[[vip]]" number i (from 0) in text.
func lineOf(text string, i int) int {
	n := -1
	for l, line := range strings.Split(text, "\n") {
		if line == "[[vip]]" {
			if n++; n == i {
				return l + 1
			}
		}
	}
	return 0
}

func TestLimits(t *testing.T) {
	tests := []struct {
		name      string
		text      string
		key, want string // "" = fits
		vip       int    // the VIP the error is at, when key is a vip
	}{
		{"2048 VIPs on 2048 addresses fit", manyVIPs("", 2048, 1, false), "", "", 0},
		{"2049 VIPs on 2049 addresses", manyVIPs("", 2049, 1, false), "vip[2048]", "the VIP map is full: 2049 VIPs on 2049 addresses need 4098 entries (one per VIP and one per address), it holds 4096", 2048},
		{"4095 VIPs on one address fit", manyVIPs("", 4095, 1, true), "", "", 0},
		{"4096 VIPs on one address", manyVIPs("", 4096, 1, true), "vip[4095]", "4096 VIPs on 1 addresses need 4097 entries", 4095},
		{"queue 63", manyVIPs("queues = [63]", 1, 1, false), "", "", 0},
		{"queue 64", manyVIPs("queues = [0, 64]", 1, 1, false), "datapath.queues[1]", "queue 64: the steering program serves queues 0..63", 0},
		{"queue 64 in native mode", manyVIPs("mode = \"native\"\nqueues = [64]", 1, 1, false), "", "", 0},
		{"native: 4096 backends fit", manyVIPs("mode = \"native\"", 2, 2048, false), "", "", 0},
		{"native: 4097 backends", manyVIPs("mode = \"native\"", 3, 1366, false), "vip[2]", "mode = \"native\": 3 VIPs have 4098 backends, the lb program holds 4096", 2},
		{"afxdp: 4097 IDs fit", manyVIPs("", 2, 2048, false), "", "", 0},
		{"native: largest table", manyVIPs("mode = \"native\"\ntable_size = 4129771", 1, 1, false), "", "", 0},
		{"native: table too large", manyVIPs("mode = \"native\"\ntable_size = 4129777", 1, 1, false), "datapath.table_size",
			"mode = \"native\": 65 Maglev tables (one spare) of 4129777 slots (268435505 slots) exceed the lb program's 268435456; use a table_size of at most 4129776", 0},
		{"native: VIP tables too large", bigTables(20), "vip[14].table_size", "the Maglev tables need 268446452 slots or more", 14},
		{"native: VIP tables fit", bigTables(14), "", "", 0},
		{"afxdp: large table fits", manyVIPs("table_size = 16777213", 1, 1, false), "", "", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("x.toml", []byte(tt.text))
			if tt.key == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %v, want an *Error", err)
			}
			if e.Key != tt.key || !strings.Contains(e.Msg, tt.want) {
				t.Errorf("error %v, want %s: ...%s...", err, tt.key, tt.want)
			}
			if strings.HasPrefix(tt.key, "vip[") {
				line := lineOf(tt.text, tt.vip)
				if strings.HasSuffix(tt.key, ".table_size") {
					line += 3 // [[vip]], address, port, table_size
				}
				if e.Line != line {
					t.Errorf("error at line %d, want %d (the [[vip]] of %s)", e.Line, line, tt.key)
				}
			}
		})
	}
}

// TestFileTooLarge: a file over MaxFileSize is refused, naming the file and
// the limit, and a file that never ends (/dev/zero) is read no further.
func TestFileTooLarge(t *testing.T) {
	big := filepath.Join(t.TempDir(), "big.toml")
	text := manyVIPs("", 1, 1, false)
	data := []byte(text + "# " + strings.Repeat("x", MaxFileSize-len(text)) + "\n")
	if err := os.WriteFile(big, data, 0o600); err != nil {
		t.Fatal(err)
	}
	want := big + ": larger than 16 MiB, the limit for a config file"
	if _, err := Load(big); err == nil || err.Error() != want {
		t.Errorf("Load(%d bytes) = %v, want %q", len(data), err, want)
	}
	if _, err := os.Stat("/dev/zero"); err != nil {
		t.Skip(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err := Load("/dev/zero")
	runtime.ReadMemStats(&after)
	if err == nil || err.Error() != "/dev/zero: larger than 16 MiB, the limit for a config file" {
		t.Errorf("Load(/dev/zero) = %v", err)
	}
	// Reading 16 MiB takes a few copies of it while the buffer grows.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 256<<20 {
		t.Errorf("Load(/dev/zero) allocated %d MiB", alloc>>20)
	}
}

func TestWarnings(t *testing.T) {
	text := `[datapath]
interface = "eth0"

[[vip]]
address = "198.18.100.1"
port = 80
  [[vip.backend]]
  address = "198.18.0.11"
  [[vip.backend]]
  address = "198.18.100.1"

[[vip]]
address = "198.18.100.2"
port = 80
  [[vip.backend]]
  address = "198.18.0.11"
  weight = 0
  [[vip.backend]]
  address = "198.18.0.12"
  state = "drain"
`
	c, err := Parse("w.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range c.Warnings() {
		got = append(got, w.Error())
	}
	want := []string{
		"w.toml:10: vip[0].backend[1].address: 198.18.100.1 is the VIP's own address: its packets would come back to the balancer",
		"w.toml:12: vip[1]: every backend of 198.18.100.2:80/tcp has weight 0 or is drained: the VIP takes no new flows",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	c, err = Parse("ok.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if ws := c.Warnings(); len(ws) != 0 {
		t.Errorf("warnings for a plain file: %v", ws)
	}
}
