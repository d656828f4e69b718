package procstat

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

const sample = `cpu  153882 0 36844 132474 734 0 399 2861 0 0
cpu0 76068 0 18264 67609 166 0 84 1420 0 0
cpu1 77813 5 18579 64864 568 1 315 1440 0 0
intr 1234 0 0
ctxt 5678
btime 1700000000
processes 42
softirq 1 2 3
`

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want Stat // zero: an error wrapping ErrFormat
	}{
		{"sample", sample, Stat{
			All: Times{User: 153882, System: 36844, Idle: 132474, IOWait: 734, SoftIRQ: 399, Steal: 2861},
			CPUs: []CPU{
				{0, Times{User: 76068, System: 18264, Idle: 67609, IOWait: 166, SoftIRQ: 84, Steal: 1420}},
				{1, Times{User: 77813, Nice: 5, System: 18579, Idle: 64864, IOWait: 568, IRQ: 1, SoftIRQ: 315, Steal: 1440}},
			},
		}},
		{"old kernel, 8 columns", "cpu 1 2 3 4 5 6 7 8\ncpu3 1 2 3 4 5 6 7 8\n", Stat{
			All:  Times{1, 2, 3, 4, 5, 6, 7, 8},
			CPUs: []CPU{{3, Times{1, 2, 3, 4, 5, 6, 7, 8}}},
		}},
		{"cpu lines after others", "intr 1\ncpu 1 0 0 1 0 0 0 0\ncpu0 1 0 0 1 0 0 0 0\n", Stat{
			All:  Times{User: 1, Idle: 1},
			CPUs: []CPU{{0, Times{User: 1, Idle: 1}}},
		}},
		{"no cpu line", "cpu0 1 2 3 4 5 6 7 8\n", Stat{}},
		{"no cpuN line", "cpu 1 2 3 4 5 6 7 8\n", Stat{}},
		{"short", "cpu 1 2 3\ncpu0 1 2 3 4 5 6 7 8\n", Stat{}},
		{"not a number", "cpu 1 2 3 4 5 6 7 8\ncpu0 1 2 x 4 5 6 7 8\n", Stat{}},
		{"negative", "cpu 1 2 -3 4 5 6 7 8\ncpu0 1 2 3 4 5 6 7 8\n", Stat{}},
		{"bad core", "cpu 1 2 3 4 5 6 7 8\ncpux 1 2 3 4 5 6 7 8\n", Stat{}},
		{"empty", "", Stat{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tc.in))
			if tc.want.CPUs == nil {
				if !errors.Is(err, ErrFormat) {
					t.Fatalf("error %v, want ErrFormat", err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tc.want)
			}
		})
	}
	if b := (Times{1, 2, 3, 4, 5, 6, 7, 8}).Busy(); b != 1+2+3+6+7+8 {
		t.Errorf("Busy = %d", b)
	}
}

func TestParseTask(t *testing.T) {
	good := map[string]Task{
		"4242 (haproxy) S 1 4242 4242 0 -1 4194560 500 0 0 0 150 70 0 0 20 0 2 0 1234 0 0": {150, 70},
		// A thread name may hold spaces and ')'.
		"1234 (xlb (worker) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 37 0 0 20 0 9 0 100 1000000 500\n": {250, 37},
	}
	for in, want := range good {
		if got, err := ParseTask([]byte(in)); err != nil || got != want {
			t.Errorf("ParseTask(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, bad := range []string{
		"7 xlb R 1 7 7 0 -1 0 0 0 0 0 3 4", // no parenthesis
		"7 (xlb) R 1 7 7",                  // short
		"7 (xlb) R 1 7 7 0 -1 0 0 0 0 0 x 4 0",
		"",
	} {
		if _, err := ParseTask([]byte(bad)); !errors.Is(err, ErrFormat) {
			t.Errorf("ParseTask(%q): error %v, want ErrFormat", bad, err)
		}
	}
	if u, s := (Task{250, 37}).Nanoseconds(); u != 2500e6 || s != 370e6 {
		t.Errorf("Nanoseconds = %d, %d; want 2.5 s and 0.37 s", u, s)
	}
}

func TestRead(t *testing.T) {
	st, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	if len(st.CPUs) == 0 || st.All.Busy() == 0 {
		t.Fatalf("/proc/stat: %+v", st)
	}
	if _, err := ReadTask("/proc/self/stat"); err != nil {
		t.Fatal(err)
	}
}

// FuzzParse: Parse never panics, and returns either an error and nothing,
// or the machine line and at least one core.
func FuzzParse(f *testing.F) {
	f.Add(sample)
	f.Add("cpu 1 2 3 4 5 6 7 8\ncpu0 1 2 3 4 5 6 7 8 9 10\n")
	f.Add("cpu 18446744073709551615 18446744073709551615 0 0 0 0 0 0\ncpu9999999999999999999 1 2 3 4 5 6 7 8\n")
	f.Add("cpu\n")
	f.Fuzz(func(t *testing.T, s string) {
		st, err := Parse(strings.NewReader(s))
		if err != nil {
			if !reflect.DeepEqual(st, Stat{}) {
				t.Fatalf("error %v with a value %+v", err, st)
			}
			return
		}
		if len(st.CPUs) == 0 {
			t.Fatal("no error and no cores")
		}
	})
}

// FuzzParseTask: ParseTask never panics, and an error comes with nothing.
func FuzzParseTask(f *testing.F) {
	f.Add([]byte("4242 (haproxy) S 1 4242 4242 0 -1 4194560 500 0 0 0 150 70 0 0 20 0 2 0 1234 0 0"))
	f.Add([]byte("7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 3 4 0 0"))
	f.Add([]byte(")"))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := ParseTask(b)
		if err != nil && v != (Task{}) {
			t.Fatalf("error %v with value %+v", err, v)
		}
	})
}

const mapsSample = `55d0c0a00000-55d0c0a21000 r--p 00000000 fe:01 1835 /usr/bin/xlb-lab
7f3a10000000-7f3a10001000 rw-s 100000000 00:08 4242                       socket:[4242]
7f3a10001000-7f3a10003000 rw-s 180000000 00:08 4242                       socket:[4242]
7f3a10003000-7f3a10004000 rw-s 00000000 00:08 4243                       socket:[4243]
7f3a20000000-7f3a20400000 rw-p 00000000 00:00 0
7ffc5b3e0000-7ffc5b401000 rw-p 00000000 00:00 0                          [stack]
7f3a30000000-7f3a30001000 r--p 00000000 fe:01 4242                       /a file named socket:[4242]
`

// TestParseSocketMaps: only the lines naming the socket's inode are
// returned, a file of the same inode number or with the name in its path
// is not, and a malformed line is an error.
func TestParseSocketMaps(t *testing.T) {
	got, err := ParseSocketMaps(strings.NewReader(mapsSample), 4242)
	if err != nil {
		t.Fatal(err)
	}
	want := []Mapping{{0x7f3a10000000, 0x7f3a10001000}, {0x7f3a10001000, 0x7f3a10003000}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %x, want %x", got, want)
	}
	for _, bad := range []string{"7f00-7e00 rw-s 0 00:08 1 socket:[1]\n", "zz-7e00 rw-s 0 00:08 1 socket:[1]\n", "7f00 rw-s 0 00:08\n"} {
		if _, err := ParseSocketMaps(strings.NewReader(bad), 1); !errors.Is(err, ErrFormat) {
			t.Errorf("%q: err %v, want ErrFormat", bad, err)
		}
	}
}

// FuzzParseSocketMaps: ParseSocketMaps never panics, an error comes with
// nothing, and every range it returns is ordered.
func FuzzParseSocketMaps(f *testing.F) {
	f.Add(mapsSample, uint64(4242))
	f.Add("0-0 r 0 0 0\n", uint64(0))
	f.Fuzz(func(t *testing.T, s string, ino uint64) {
		ms, err := ParseSocketMaps(strings.NewReader(s), ino)
		if err != nil && ms != nil {
			t.Fatalf("error %v with ranges %v", err, ms)
		}
		for _, m := range ms {
			if m.End < m.Start {
				t.Fatalf("range %x", m)
			}
		}
	})
}
