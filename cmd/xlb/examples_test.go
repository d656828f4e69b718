package main

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/xlbproject/xlb/lab"
)

// TestExampleConfigChecks: examples/xlb.toml, unchanged, passes the real
// `xlb check` in the balancer namespace of the demo lab, whose interface,
// addresses and backends it uses: the example an operator copies is one
// that works. The test first does to the lab's balancer what the example
// asks of a host: an IPv6 address on the interface, from which the IPv6
// service takes its outer source (the lab is IPv4 only), and the splice
// VIP on lo.
func TestExampleConfigChecks(t *testing.T) {
	l := startLab(t, nil)
	file, err := filepath.Abs("../../examples/xlb.toml")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, cmd := range [][]string{
		{"sysctl", "-qw", "net.ipv6.conf." + lab.HostLink + ".disable_ipv6=0"}, // the lab turns IPv6 off
		{"ip", "-6", "addr", "add", "2001:db8::1/64", "dev", lab.HostLink, "nodad"},
		// The splice VIP is served by the balancer's own TCP stack.
		{"ip", "addr", "add", "198.18.100.5/32", "dev", "lo"},
	} {
		if err := l.lb.Run(ctx, cmd[0], cmd[1:]...); err != nil {
			t.Fatal(err)
		}
	}
	out, err := l.lb.Command(ctx, xlbBin, "check", "-c", file).CombinedOutput()
	if err != nil {
		t.Fatalf("xlb check -c %s in %s: %v\n%s", file, l.lb.NS, err, out)
	}
	t.Logf("xlb check:\n%s", out)
}
