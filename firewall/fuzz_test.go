package firewall

import (
	"testing"
	"time"
)

// FuzzParseRule: whatever the control socket receives, ParseRule either
// fails or returns a rule that passes Check, whose prefix is canonical, and
// whose words parse back to the same rule.
func FuzzParseRule(f *testing.F) {
	f.Add("198.18.100.1:80/tcp", "198.18.0.0/16", "allow", "")
	f.Add("", "198.18.66.0/24", "deny", "10m")
	f.Add("[2001:db8::1]:443/udp", "2001:db8:bad::/48", "deny", "1h")
	f.Add("198.18.100.1:0/udp", "198.18.1.1", "deny", "0")
	f.Add("[::ffff:198.18.0.1]:1/tcp", "::ffff:1.2.3.4/128", "allow", "1ns")
	now := time.Unix(1e9, 0)
	f.Fuzz(func(t *testing.T, vip, prefix, action, ttl string) {
		r, err := ParseRule(vip, prefix, action, ttl, now)
		if err != nil {
			return
		}
		if err := r.Check(); err != nil {
			t.Fatalf("ParseRule returned %v failing Check: %v", r, err)
		}
		if r.Prefix != r.Prefix.Masked() {
			t.Fatalf("prefix %v not canonical", r.Prefix)
		}
		vs := ""
		if !r.VIP.Global() {
			vs = r.VIP.String()
		}
		again, err := ParseRule(vs, r.Prefix.String(), r.Action.String(), "", now)
		if err != nil || again.Key() != r.Key() || again.Action != r.Action {
			t.Fatalf("%v does not parse back: %v, %v", r, again, err)
		}
	})
}
