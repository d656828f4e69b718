package sni

import (
	"strings"
	"testing"
)

func mustPatterns(t *testing.T, ss ...string) []Pattern {
	t.Helper()
	ps := make([]Pattern, len(ss))
	for i, s := range ss {
		p, err := ParsePattern(s)
		if err != nil {
			t.Fatal(err)
		}
		ps[i] = p
	}
	return ps
}

func TestParsePattern(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"api.example.com", "api.example.com", ""},
		{"API.Example.COM.", "api.example.com", ""},
		{"*.example.com", "*.example.com", ""},
		{"*.Example.com.", "*.example.com", ""},
		{"_acme-x.example.com", "_acme-x.example.com", ""},
		{"localhost", "localhost", ""},
		{"", "", "empty name"},
		{".", "", "empty name"},
		{"*", "", "wildcard"},
		{"*.", "", "wildcard"},
		{"a.*.example.com", "", "wildcard"},
		{"*a.example.com", "", "wildcard"},
		{"*.*.example.com", "", "wildcard"},
		{"a..example.com", "", "empty label"},
		{".example.com", "", "empty label"},
		{"a b.example.com", "", "letters, digits"},
		{"é.example.com", "", "letters, digits"},
		{strings.Repeat("a", 64) + ".com", "", "longer than 63"},
		{strings.Repeat("abcdefgh.", 29) + "com", "", "longer than 253"},
	} {
		p, err := ParsePattern(tc.in)
		switch {
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParsePattern(%q) = %v, %v; want error with %q", tc.in, p, err, tc.err)
		case tc.err == "" && (err != nil || p.String() != tc.want):
			t.Errorf("ParsePattern(%q) = %v, %v; want %q", tc.in, p, err, tc.want)
		}
	}
}

func TestMatch(t *testing.T) {
	ps := mustPatterns(t, "api.example.com", "*.example.com", "example.com", "*.b.example.com", "www.example.org")
	tbl, err := NewTable(ps, 5)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		route   int
		matched bool
	}{
		{"api.example.com", 0, true},  // exact beats the wildcard
		{"web.example.com", 1, true},  // one label under the wildcard
		{"example.com", 2, true},      // the wildcard does not match its own suffix
		{"x.b.example.com", 3, true},  // its own wildcard
		{"a.c.example.com", 5, false}, // two labels: no wildcard, the default
		{"b.example.com", 1, true},    // one label
		{"www.example.org", 4, true},  //
		{"example.org", 5, false},     //
		{"", 5, false},                // no SNI: the default
		{".example.com", 5, false},    // an empty label is no label
		{"xapi.example.com", 1, true}, //
		{"api.example.com.evil", 5, false},
	} {
		route, matched := tbl.Match([]byte(tc.name))
		if route != tc.route || matched != tc.matched {
			t.Errorf("Match(%q) = %d, %v; want %d, %v", tc.name, route, matched, tc.route, tc.matched)
		}
	}
	withHole, _ := NewTable([]Pattern{ps[0], {}, ps[1]}, 1)
	if r, m := withHole.Match([]byte("a.example.com")); r != 2 || !m {
		t.Errorf("table with a zero pattern: Match = %d, %v", r, m)
	}
	if r, m := withHole.Match([]byte("example.net")); r != 1 || m {
		t.Errorf("table with a zero pattern: Match = %d, %v; want the default", r, m)
	}
	noDefault, _ := NewTable(ps[:1], -1)
	if r, m := noDefault.Match([]byte("other.example.com")); r != -1 || m {
		t.Errorf("no default: Match = %d, %v", r, m)
	}
	if _, err := NewTable(mustPatterns(t, "*.a.com", "x.a.com", "*.A.com."), -1); err == nil {
		t.Error("NewTable accepted a duplicate pattern")
	}
	if n := testing.AllocsPerRun(100, func() {
		tbl.Match([]byte("web.example.com"))
		tbl.Match([]byte("nothing.here"))
	}); n != 0 {
		t.Errorf("Match allocates %v times", n)
	}
}

// The names Parse returns and the patterns ParsePattern returns are in one
// form, so a hello's name matches its route whatever its case or dot.
func TestHelloMatchesPattern(t *testing.T) {
	tbl, err := NewTable(mustPatterns(t, "API.example.com."), -1)
	if err != nil {
		t.Fatal(err)
	}
	h, _, err := Parse(hello(sniExt("api.EXAMPLE.com.")), testLimit)
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := tbl.Match(h.ServerName()); r != 0 || !ok {
		t.Errorf("Match(%q) = %d, %v", h.ServerName(), r, ok)
	}
}
