package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xlbproject/xlb/bpf"
)

// TestCheckNative: `xlb check` accepts in native mode what the lb program
// does (IPv6 VIPs and backends, GUE, per-VIP table sizes, echo off, the
// fragment policy), states how its flow tables expire and that the AF_XDP
// settings are unused, and refuses an ICMP rate limit at its line.
func TestCheckNative(t *testing.T) {
	text := `[datapath]
interface = "lo"
mode = "native"
source6 = "2001:db8::1"
flow_tcp_timeout = "1m"

[[vip]]
address = "198.18.100.1"
port = 80
forward = "gue"
gue_port = 6080
table_size = 257
  [[vip.backend]]
  address = "198.18.0.2"
  mac = "02:00:00:00:00:02"

[[vip]]
address = "2001:db8::100"
port = 53
protocol = "udp"
icmp_echo = false
fragments = "pass"
  [[vip.backend]]
  address = "2001:db8::2"
  mac = "02:00:00:00:00:02"
`
	file := filepath.Join(t.TempDir(), "native.toml")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, stdout, stderr := runCmd("check", "-c", file)
	if code != exitOK {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	for _, want := range []string{
		"mode=native",
		"queues, cpus, umem, rings and polling are AF_XDP settings, unused",
		"flow tables: 262144 entries each (IPv4, IPv6), idle tcp 1m0s udp 30s: " + bpf.LBFlowExpiry,
		"icmp sent by the balancer: no rate limit (the native program has none)",
		"vip 198.18.100.1:80/tcp forward=gue(port 6080) maglev_slots=257",
		"vip [2001:db8::100]:53/udp forward=ipip",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("check output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "umem:") {
		t.Errorf("check output shows AF_XDP settings in native mode:\n%s", stdout)
	}

	text = strings.Replace(text, "flow_tcp_timeout", "icmp_rate_limit = 100\nflow_tcp_timeout", 1)
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	code, _, stderr = runCmd("check", "-c", file)
	if want := file + ":5: datapath.icmp_rate_limit: mode = \"native\" does not rate-limit"; code != exitConfig || !strings.Contains(stderr, want) {
		t.Errorf("exit %d, stderr %q, want exit 3 and %q", code, stderr, want)
	}
}
