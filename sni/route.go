package sni

import (
	"errors"
	"fmt"
	"strings"
)

// Pattern is a validated route pattern: an exact name or a one-level
// wildcard, in lower case without a trailing dot.
type Pattern struct {
	// Name is the name, or for a wildcard the suffix after "*."
	// ("example.com" for "*.example.com").
	Name     string
	Wildcard bool
}

// String returns the pattern as a file writes it.
func (p Pattern) String() string {
	if p.Wildcard {
		return "*." + p.Name
	}
	return p.Name
}

// ParsePattern validates a route pattern: "api.example.com" or
// "*.example.com". Case does not matter and a trailing dot is dropped; the
// wildcard must be the whole first label, and a name's labels are 1..63
// letters, digits, '-' or '_' (253 characters in all).
func ParsePattern(s string) (Pattern, error) {
	p := Pattern{Name: strings.TrimSuffix(strings.ToLower(s), ".")}
	if rest, ok := strings.CutPrefix(p.Name, "*."); ok {
		p.Name, p.Wildcard = rest, true
	}
	if err := checkPattern(p.Name); err != nil {
		return Pattern{}, fmt.Errorf("%q: %w", s, err)
	}
	return p, nil
}

func checkPattern(name string) error {
	switch {
	case name == "":
		return errors.New("empty name")
	case len(name) > 253:
		return errors.New("name longer than 253 characters")
	}
	for label := range strings.SplitSeq(name, ".") {
		switch {
		case label == "":
			return errors.New("empty label")
		case label == "*" || strings.Contains(label, "*"):
			return errors.New(`a wildcard is only "*." before the rest of the name, for one label`)
		case len(label) > 63:
			return fmt.Errorf("label %q longer than 63 characters", label)
		}
		for _, c := range []byte(label) {
			if c != '-' && c != '_' && (c < '0' || c > '9') && (c < 'a' || c > 'z') {
				return fmt.Errorf("label %q has %q: names are letters, digits, '-' and '_'", label, c)
			}
		}
	}
	return nil
}

// Table maps server names to route indexes. It is immutable once built.
type Table struct {
	exact map[string]int
	wild  map[string]int // by the suffix after "*."
	def   int            // -1: no default route
}

// NewTable builds a table of patterns, route i matching patterns[i], and
// def the default route (-1 for none). A zero Pattern matches nothing (the
// default route's own slot); two equal patterns are an error.
func NewTable(patterns []Pattern, def int) (*Table, error) {
	t := &Table{exact: map[string]int{}, wild: map[string]int{}, def: def}
	for i, p := range patterns {
		if p == (Pattern{}) {
			continue
		}
		m := t.exact
		if p.Wildcard {
			m = t.wild
		}
		if j, dup := m[p.Name]; dup {
			return nil, fmt.Errorf("sni: pattern %s is both route %d and route %d", p, j, i)
		}
		m[p.Name] = i
	}
	return t, nil
}

// Match returns the route of a server name as Hello.ServerName returns it
// (lower case, no trailing dot), and whether a pattern matched it. A name
// no pattern matches, or an empty one, gets the default route, which is -1
// when there is none. Match allocates nothing.
func (t *Table) Match(name []byte) (route int, matched bool) {
	if len(name) == 0 {
		return t.def, false
	}
	if i, ok := t.exact[string(name)]; ok {
		return i, true
	}
	// One label, then the suffix a wildcard names: the label must not be
	// empty (".example.com" is no name).
	for j, c := range name {
		if c == '.' {
			if j > 0 {
				if i, ok := t.wild[string(name[j+1:])]; ok {
					return i, true
				}
			}
			break
		}
	}
	return t.def, false
}
