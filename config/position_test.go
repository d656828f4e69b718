package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestPosIndex(t *testing.T) {
	src := `# a comment with key = "value" and [table] and [[aot]]
top = 1 # trailing = comment [x]

[datapath]
interface = "eth0" # "quoted" = [not a key]
queues = [
  0, # comment = [1]
  1,
  # a = b
  2
]
cpus = [[1, 2], [
  3]]
source = """
multi = line
[not.a.table]
"""
literal = '''
x = 'y'
[[nope]]'''
after_multiline = 1
edge = """a"""""
next = 'c:\path'
esc = "quote \" = [still string]"
"quoted.key" = 1
'literal key' = 2
dotted.sub.key = 3
date = 1979-05-27 07:32:00Z

[[vip]]
address = "198.18.100.1"
  [[vip.backend]]
  address = "198.18.0.11"
  [[vip.backend]]
  address = "198.18.0.12"

[[vip]]
address = "198.18.100.2"
backend = [
  { address = "198.18.0.21", weight = 2 },
  {address = "198.18.0.22"},
]
inline = { a = 1, b = { c = [1,
  2] } }

[vip.extra]
k = 1

[ control ]
socket = "/x"
[ "quoted table" . sub ]
z = 1
`
	want := map[string]int{
		"top":                       2,
		"datapath":                  4,
		"datapath.interface":        5,
		"datapath.queues":           6,
		"datapath.queues[0]":        7,
		"datapath.queues[1]":        8,
		"datapath.queues[2]":        10,
		"datapath.cpus":             12,
		"datapath.cpus[0]":          12,
		"datapath.cpus[0][1]":       12,
		"datapath.cpus[1]":          12,
		"datapath.cpus[1][0]":       13,
		"datapath.source":           14,
		"datapath.literal":          18,
		"datapath.after_multiline":  21,
		"datapath.edge":             22,
		"datapath.next":             23,
		"datapath.esc":              24,
		`datapath."quoted.key"`:     25,
		`datapath."literal key"`:    26,
		"datapath.dotted":           27,
		"datapath.dotted.sub.key":   27,
		"datapath.date":             28,
		"vip":                       30,
		"vip[0]":                    30,
		"vip[0].address":            31,
		"vip[0].backend":            32,
		"vip[0].backend[0]":         32,
		"vip[0].backend[0].address": 33,
		"vip[0].backend[1]":         34,
		"vip[0].backend[1].address": 35,
		"vip[1]":                    37,
		"vip[1].address":            38,
		"vip[1].backend":            39,
		"vip[1].backend[0]":         40,
		"vip[1].backend[0].address": 40,
		"vip[1].backend[0].weight":  40,
		"vip[1].backend[1].address": 41,
		"vip[1].inline.a":           43,
		"vip[1].inline.b.c[1]":      44,
		"vip[1].extra":              46,
		"vip[1].extra.k":            47,
		"control":                   49,
		"control.socket":            50,
		`"quoted table".sub`:        51,
		`"quoted table".sub.z`:      52,
		"datapath.queues[7]":        6,  // not set: falls back to the array
		"vip[0].backend[0].weight":  32, // not set: falls back to its table
		"control.missing":           49,
		"nothing.here":              1, // nothing: line 1
	}
	idx := newPosIndex([]byte(src))
	for key, line := range want {
		if got := idx.line(key); got != line {
			t.Errorf("line(%s) = %d, want %d", key, got, line)
		}
	}
	for _, notKey := range []string{"multi", "datapath.multi", "not.a.table", "nope", "x", "datapath.x", "a", "datapath.a", "nope[0]"} {
		if idx.has(notKey) {
			t.Errorf("index has %q, which is inside a string or comment", notKey)
		}
	}
}

func TestPosIndexLineKey(t *testing.T) {
	src := "[datapath]\ninterface = \"x\"\n\nqueues = [\n 0,\n]\n[[vip]]\n"
	idx := newPosIndex([]byte(src))
	tests := []struct {
		line int
		want string
	}{
		{1, "datapath"},
		{2, "datapath.interface"},
		{3, "datapath.interface"},
		{4, "datapath.queues"},
		{5, "datapath.queues[0]"},
		{7, "vip[0]"},
		{9, "vip[0]"},
	}
	for _, tt := range tests {
		if got := idx.lineKey(tt.line); got != tt.want {
			t.Errorf("lineKey(%d) = %q, want %q", tt.line, got, tt.want)
		}
	}
	if got := newPosIndex([]byte("# only a comment\n")).lineKey(1); got != "" {
		t.Errorf("lineKey in a file without keys = %q", got)
	}
}

func TestPosIndexBrokenInput(t *testing.T) {
	// Broken lines are skipped; the keys around them keep their lines.
	src := "a = 1\n[broken\nb = [1, 2\nc = \"unterminated\nd = {x = \ne = 5\n= 6\n[[\nf = '''never closed\n"
	idx := newPosIndex([]byte(src))
	for key, line := range map[string]int{"a": 1, "b": 3, "c": 4, "d": 5, "e": 6} {
		if got := idx.line(key); got != line {
			t.Errorf("line(%s) = %d, want %d", key, got, line)
		}
	}
}

func TestPosIndexCRLF(t *testing.T) {
	idx := newPosIndex([]byte("[datapath]\r\ninterface = \"x\"\r\nqueues = [\r\n 1]\r\n"))
	if idx.line("datapath.interface") != 2 || idx.line("datapath.queues[0]") != 4 {
		t.Errorf("CRLF lines: %v", idx.lines)
	}
}

func TestParentKey(t *testing.T) {
	tests := map[string]string{
		"a.b[2]":            "a.b",
		"a.b":               "a",
		"a":                 "",
		"vip[1].backend[0]": "vip[1].backend",
		`a."b.c"`:           "a",
		`a."b.c".d`:         `a."b.c"`,
		`"x\".y".z`:         `"x\".y"`,
	}
	for in, want := range tests {
		if got := parentKey(in); got != want {
			t.Errorf("parentKey(%s) = %s, want %s", in, got, want)
		}
	}
}

func TestJoinKey(t *testing.T) {
	got := []string{joinKey("", "vip"), joinKey("vip[0]", "backend"), joinKey("a", "b.c"), joinKey("a", ""), indexKey("q", 3)}
	want := []string{"vip", "vip[0].backend", `a."b.c"`, `a.""`, "q[3]"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestParseRefusesDeepNesting(t *testing.T) {
	// The TOML library is quadratic in nesting depth; xlb nests three
	// levels. Each input here, 5000 levels deep, took seconds to decode.
	tests := map[string]string{
		"dotted key": "x = 1\n" + strings.Repeat("a.", 5000) + "b = 1\n",
		"table":      "x = 1\n[" + strings.Repeat("a.", 5000) + "b]\n",
		"inline":     "x = 1\na = " + strings.Repeat("{b = ", 5000) + "1" + strings.Repeat("}", 5000) + "\n",
		"array":      "x = 1\na = " + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + "\n",
	}
	for name, src := range tests {
		_, err := Parse("f", []byte(src))
		var e *Error
		if !errors.As(err, &e) || e.Line != 2 || e.Msg != "nested more than 32 levels deep" {
			t.Errorf("%s: error %v", name, err)
		}
	}
	// 31 levels is fine for the scanner (the schema refuses it later).
	if _, err := Parse("f", []byte("a = "+strings.Repeat("[", 31)+strings.Repeat("]", 31))); err == nil || strings.Contains(err.Error(), "nested") {
		t.Errorf("31 levels: %v", err)
	}
}
