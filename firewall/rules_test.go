package firewall

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestRules(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	file := []Rule{rule(v4.String(), "198.18.0.0/16", "allow"), rule("", "198.18.66.0/24", "deny")}
	s := NewRules(file)
	tmp, err := ParseRule(v4.String(), "198.18.1.0/24", "deny", "10s", now)
	if err != nil {
		t.Fatal(err)
	}
	s, err = s.Add(tmp)
	if err != nil {
		t.Fatal(err)
	}
	forever, _ := ParseRule("", "198.18.9.9", "deny", "", now)
	if s, err = s.Add(forever); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Add(tmp); err == nil || !strings.Contains(err.Error(), "from the runtime") {
		t.Errorf("second add: %v", err)
	}
	if _, err := s.Add(Rule{VIP: v4, Prefix: netip.MustParsePrefix("198.18.0.0/16"), Action: Deny}); err == nil || !strings.Contains(err.Error(), "from the file") {
		t.Errorf("add over a file rule: %v", err)
	}
	if _, _, err := s.Del(file[0].Key()); err == nil || !strings.Contains(err.Error(), "config file") {
		t.Errorf("del of a file rule: %v", err)
	}
	if got := len(s.All()); got != 4 {
		t.Fatalf("%d rules, want 4", got)
	}
	if got := s.NextExpiry(); !got.Equal(now.Add(10 * time.Second)) {
		t.Errorf("next expiry %v", got)
	}
	if n, gone := s.Expire(now.Add(9 * time.Second)); len(gone) != 0 || n.Runtime() != 2 {
		t.Errorf("early expiry: %v", gone)
	}
	n, gone := s.Expire(now.Add(10 * time.Second))
	if len(gone) != 1 || gone[0].Key() != tmp.Key() || n.Runtime() != 1 || s.Runtime() != 2 {
		t.Errorf("expiry: gone %v, %d runtime rules left (the original has %d)", gone, n.Runtime(), s.Runtime())
	}
	// A reload: the VIP v4 is gone, the file now has 198.18.9.9/32.
	r, dropped := s.WithFile([]Rule{rule("", "198.18.9.9/32", "deny")}, []Policy{{VIP: v6}})
	if len(dropped) != 2 || r.Runtime() != 0 {
		t.Errorf("reload dropped %v, kept %d", dropped, r.Runtime())
	}
	r, dropped = s.WithFile(file, []Policy{{VIP: v4}})
	if len(dropped) != 0 || r.Runtime() != 2 {
		t.Errorf("reload dropped %v, kept %d", dropped, r.Runtime())
	}
	if n, old, err := s.Del(tmp.Key()); err != nil || old.Key() != tmp.Key() || n.Runtime() != 1 {
		t.Errorf("del: %v %v", old, err)
	}
}

func TestParseRule(t *testing.T) {
	now := time.Now()
	for _, tc := range []struct {
		vip, prefix, action, ttl string
		want                     string // "" ok, else part of the error
	}{
		{"", "198.18.0.0/16", "deny", "", ""},
		{"198.18.100.1:80/tcp", "198.18.1.1", "allow", "1m", ""},
		{"[2001:db8::1]:443/udp", "2001:db8::/32", "deny", "0", ""},
		{"198.18.100.1:80/tcp", "198.18.1.0/16", "deny", "", "host bits"},
		{"198.18.100.1:80/tcp", "198.18.0.0/33", "deny", "", "prefix"},
		{"198.18.100.1:80/tcp", "2001:db8::/32", "deny", "", "family"},
		{"198.18.100.1:80", "198.18.0.0/16", "deny", "", "ADDR:PORT/PROTO"},
		{"198.18.100.1:80/sctp", "198.18.0.0/16", "deny", "", "tcp or udp"},
		{"", "198.18.0.0/16", "allow", "", "global rules deny"},
		{"", "198.18.0.0/16", "block", "", "allow or deny"},
		{"", "198.18.0.0/16", "deny", "-1s", "ttl"},
		{"", "198.18.0.0/16", "deny", "forever", "ttl"},
		{"", "::ffff:198.18.0.0/112", "deny", "", "IPv4"},
	} {
		r, err := ParseRule(tc.vip, tc.prefix, tc.action, tc.ttl, now)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%v: error %v, want one with %q (rule %v)", tc, err, tc.want, r)
		}
	}
}
