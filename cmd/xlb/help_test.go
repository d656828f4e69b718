package main

import (
	"bytes"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var (
	// definedFlag matches a flag line of flag.PrintDefaults.
	definedFlag = regexp.MustCompile(`(?m)^  -([\w-]+)`)
	// synopsisFlag matches -f or --flag in a usage line; proseFlag only
	// --flag elsewhere, where a single dash is English (IPv4-in-IPv6).
	synopsisFlag = regexp.MustCompile(`(?:^|[\s\[|(])--?([a-zA-Z][\w-]*)`)
	proseFlag    = regexp.MustCompile(`(?:^|[\s\[|("])--([a-zA-Z][\w-]*)`)
)

// helpOf runs `xlb args... --help` in-process and returns what it printed
// and the flags its flag set defines (from the defaults it lists).
func helpOf(t *testing.T, args ...string) (text string, defined map[string]bool) {
	t.Helper()
	var out, errb bytes.Buffer
	if code := run(&env{stdout: &out, stderr: &errb}, append(args, "--help")); code != exitOK {
		t.Errorf("xlb %s --help: exit %d, want 0\n%s", strings.Join(args, " "), code, errb.String())
	}
	text = out.String() + errb.String()
	defined = map[string]bool{}
	for _, m := range definedFlag.FindAllStringSubmatch(text, -1) {
		defined[m[1]] = true
	}
	return text, defined
}

// mentionedFlags returns every flag a help text advertises.
func mentionedFlags(text string) []string {
	var out []string
	for line := range strings.Lines(text) {
		if definedFlag.MatchString(line) || strings.HasPrefix(line, "    \t") {
			continue // flag.PrintDefaults' own lines and descriptions
		}
		re := proseFlag
		if t := strings.TrimSpace(line); strings.HasPrefix(t, "usage:") || strings.HasPrefix(t, "xlb ") {
			re = synopsisFlag
		}
		for _, m := range re.FindAllStringSubmatch(line, -1) {
			out = append(out, m[1])
		}
	}
	return out
}

// TestHelpFlagsExist: every subcommand's --help (and every `xlb decap`
// action's) advertises only flags its flag set defines, and lists every
// flag it defines in its synopsis.
func TestHelpFlagsExist(t *testing.T) {
	check := func(name, text string, defined map[string]bool) {
		t.Helper()
		for _, f := range mentionedFlags(text) {
			if f != "help" && f != "h" && !defined[f] {
				t.Errorf("xlb %s --help mentions -%s, which is not one of its flags %v:\n%s", name, f, slices.Sorted(maps.Keys(defined)), text)
			}
		}
		synopsis, _, _ := strings.Cut(text, "\n")
		for f := range defined {
			if !regexp.MustCompile(`-` + regexp.QuoteMeta(f) + `\b`).MatchString(synopsis) {
				t.Errorf("xlb %s: flag -%s is missing from the synopsis %q", name, f, synopsis)
			}
		}
	}
	for _, name := range slices.Sorted(maps.Keys(commands)) {
		if name == "decap" {
			continue
		}
		text, defined := helpOf(t, name)
		check(name, text, defined)
	}
	all := map[string]bool{}
	for _, action := range slices.Sorted(maps.Keys(decapSynopsis)) {
		text, defined := helpOf(t, "decap", action)
		check("decap "+action, text, defined)
		maps.Copy(all, defined)
	}
	text, _ := helpOf(t, "decap")
	for _, f := range mentionedFlags(text) {
		if !all[f] {
			t.Errorf("xlb decap --help mentions --%s, which no decap action defines", f)
		}
	}
	text, _ = helpOf(t)
	for _, f := range mentionedFlags(text) {
		if f != "help" {
			t.Errorf("xlb --help mentions --%s", f)
		}
	}
}
