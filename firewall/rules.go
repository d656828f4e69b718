package firewall

import (
	"cmp"
	"fmt"
	"slices"
	"time"
)

// Rules is the running rule set: the file's rules and the runtime ones. A
// value: its methods return a new Rules, so a change that fails later (in
// Compile or the datapath) is simply not stored.
type Rules struct {
	file    []Rule
	runtime map[Key]Rule
}

// NewRules returns the rules of a config file (every rule's Origin is set
// to File).
func NewRules(file []Rule) Rules {
	f := slices.Clone(file)
	for i := range f {
		f[i].Origin = File
	}
	return Rules{file: f, runtime: map[Key]Rule{}}
}

// All returns every rule, sorted by scope (global first), family, prefix.
func (s Rules) All() []Rule {
	out := slices.Clone(s.file)
	for _, r := range s.runtime {
		out = append(out, r)
	}
	slices.SortFunc(out, compareRules)
	return out
}

func compareRules(a, b Rule) int {
	if c := cmp.Compare(b2i(!a.VIP.Global()), b2i(!b.VIP.Global())); c != 0 {
		return c
	}
	if c := a.VIP.Addr.Compare(b.VIP.Addr); c != 0 {
		return c
	}
	if c := cmp.Compare(a.VIP.Port, b.VIP.Port); c != 0 {
		return c
	}
	if c := cmp.Compare(a.VIP.Proto, b.VIP.Proto); c != 0 {
		return c
	}
	if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
		return c
	}
	return cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits())
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Runtime returns how many runtime rules there are.
func (s Rules) Runtime() int { return len(s.runtime) }

func (s Rules) find(k Key) (Rule, bool) {
	if r, ok := s.runtime[k]; ok {
		return r, true
	}
	for _, r := range s.file {
		if r.Key() == k {
			return r, true
		}
	}
	return Rule{}, false
}

func (s Rules) clone() Rules {
	rt := make(map[Key]Rule, len(s.runtime))
	for k, r := range s.runtime {
		rt[k] = r
	}
	return Rules{file: s.file, runtime: rt}
}

// Add returns the rules with the runtime rule r added. A rule for the same
// scope and prefix is an error (delete it first), whatever its origin.
func (s Rules) Add(r Rule) (Rules, error) {
	r.Origin = Runtime
	if err := r.Check(); err != nil {
		return s, err
	}
	if old, ok := s.find(r.Key()); ok {
		return s, fmt.Errorf("%v already has a rule for %v (%v, from the %v); delete it first", r.VIP, r.Prefix, old.Action, old.Origin)
	}
	n := s.clone()
	n.runtime[r.Key()] = r
	return n, nil
}

// Del returns the rules without the runtime rule k. A rule of the file
// cannot be deleted at run time: the next reload would bring it back.
func (s Rules) Del(k Key) (Rules, Rule, error) {
	r, ok := s.find(k)
	switch {
	case !ok:
		return s, Rule{}, fmt.Errorf("%v has no rule for %v", k.VIP, k.Prefix)
	case r.Origin == File:
		return s, Rule{}, fmt.Errorf("%v's rule for %v comes from the config file: edit the file and reload", k.VIP, k.Prefix)
	}
	n := s.clone()
	delete(n.runtime, k)
	return n, r, nil
}

// Expire returns the rules without the runtime rules expired at now, and
// those.
func (s Rules) Expire(now time.Time) (Rules, []Rule) {
	var gone []Rule
	for _, r := range s.runtime {
		if !r.Expires.IsZero() && !r.Expires.After(now) {
			gone = append(gone, r)
		}
	}
	if len(gone) == 0 {
		return s, nil
	}
	n := s.clone()
	for _, r := range gone {
		delete(n.runtime, r.Key())
	}
	slices.SortFunc(gone, compareRules)
	return n, gone
}

// NextExpiry returns the earliest expiry of a runtime rule, zero if none.
func (s Rules) NextExpiry() time.Time {
	var t time.Time
	for _, r := range s.runtime {
		if !r.Expires.IsZero() && (t.IsZero() || r.Expires.Before(t)) {
			t = r.Expires
		}
	}
	return t
}

// Dropped is a runtime rule a reload did not keep, and why.
type Dropped struct {
	Rule   Rule
	Reason string
}

// WithFile returns the rules with file in place of the file's rules: the
// runtime rules are kept except those whose VIP is not in vips any more or
// whose scope and prefix the file now has a rule for (the file wins).
func (s Rules) WithFile(file []Rule, vips []Policy) (Rules, []Dropped) {
	n := NewRules(file)
	have := map[VIP]bool{}
	for _, p := range vips {
		have[p.VIP] = true
	}
	inFile := map[Key]bool{}
	for _, r := range file {
		inFile[r.Key()] = true
	}
	var dropped []Dropped
	for k, r := range s.runtime {
		switch {
		case !r.VIP.Global() && !have[r.VIP]:
			dropped = append(dropped, Dropped{r, "its VIP is gone"})
		case inFile[k]:
			dropped = append(dropped, Dropped{r, "the file has a rule for its prefix"})
		default:
			n.runtime[k] = r
		}
	}
	slices.SortFunc(dropped, func(a, b Dropped) int { return compareRules(a.Rule, b.Rule) })
	return n, dropped
}
