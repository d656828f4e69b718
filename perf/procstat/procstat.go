// Package procstat parses the /proc files the perf labs read CPU time
// from: /proc/stat, for the machine's and each core's times, and a task's
// stat file (/proc/PID/stat, /proc/self/task/TID/stat), for a process's
// or a thread's. Both perf (datapath comparison) and perf/tcpbench use it.
// It also reads a process's memory map (/proc/PID/maps), for the ranges
// that still map a socket.
//
// Times are in clock ticks (USER_HZ), ClockTick per second. /proc/stat is
// not namespaced: it reads the same from any network namespace.
package procstat

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// ClockTick is USER_HZ, the unit of /proc's CPU times: 100 on every Linux
// architecture xlb builds for.
const ClockTick = 100

// ErrFormat is wrapped by every error for a malformed file.
var ErrFormat = errors.New("procstat: malformed /proc file")

// Times is one "cpu" line of /proc/stat. Guest time is already part of
// User, so its columns are not kept.
type Times struct {
	User, Nice, System, Idle, IOWait, IRQ, SoftIRQ, Steal uint64
}

// Busy is the time not idle: user, nice, system, irq, softirq, steal.
func (t Times) Busy() uint64 {
	return t.User + t.Nice + t.System + t.IRQ + t.SoftIRQ + t.Steal
}

// CPU is one core's line, "cpuN".
type CPU struct {
	N int
	Times
}

// Stat is the CPU lines of /proc/stat.
type Stat struct {
	// All is the "cpu" line, the sum over every core.
	All Times
	// CPUs are the "cpuN" lines in file order (online cores only).
	CPUs []CPU
}

// Parse reads /proc/stat's CPU lines and skips the others. It wants the
// "cpu" line and at least one "cpuN" line, each with at least 8 columns.
func Parse(r io.Reader) (Stat, error) {
	var st Stat
	all := false
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || !strings.HasPrefix(f[0], "cpu") {
			continue
		}
		t, err := parseTimes(f)
		if err != nil {
			return Stat{}, err
		}
		if f[0] == "cpu" {
			st.All, all = t, true
			continue
		}
		n, err := strconv.Atoi(f[0][len("cpu"):])
		if err != nil || n < 0 {
			return Stat{}, fmt.Errorf("%w: /proc/stat line %q", ErrFormat, f[0])
		}
		st.CPUs = append(st.CPUs, CPU{N: n, Times: t})
	}
	if err := sc.Err(); err != nil {
		return Stat{}, fmt.Errorf("procstat: read /proc/stat: %w", err)
	}
	if !all || len(st.CPUs) == 0 {
		return Stat{}, fmt.Errorf("%w: /proc/stat without the cpu line or cpuN lines", ErrFormat)
	}
	return st, nil
}

// parseTimes parses the columns of a cpu line f (f[0] is its name).
func parseTimes(f []string) (Times, error) {
	if len(f) < 9 {
		return Times{}, fmt.Errorf("%w: /proc/stat %s has %d columns, want at least 8", ErrFormat, f[0], len(f)-1)
	}
	var v [8]uint64
	for i := range v {
		var err error
		if v[i], err = strconv.ParseUint(f[i+1], 10, 64); err != nil {
			return Times{}, fmt.Errorf("%w: /proc/stat %s column %d: %q", ErrFormat, f[0], i+1, f[i+1])
		}
	}
	return Times{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7]}, nil
}

// Read parses the machine's /proc/stat.
func Read() (Stat, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return Stat{}, fmt.Errorf("procstat: %w", err)
	}
	return Parse(bytes.NewReader(b))
}

// Task is the CPU time of a process (all its threads, live and exited) or
// of one thread, in clock ticks.
type Task struct {
	User, System uint64
}

// Nanoseconds converts t's times, at clock-tick resolution.
func (t Task) Nanoseconds() (user, system uint64) {
	const ns = 1e9 / ClockTick
	return t.User * ns, t.System * ns
}

// ParseTask parses a task's stat line, "PID (COMM) STATE ...". COMM may
// hold spaces and parentheses, so the fields count from the last ')':
// utime and stime are the 14th and 15th fields of the line.
func ParseTask(b []byte) (Task, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return Task{}, fmt.Errorf("%w: task stat without ')'", ErrFormat)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return Task{}, fmt.Errorf("%w: task stat has %d fields after the name, want at least 13", ErrFormat, len(f))
	}
	u, err1 := strconv.ParseUint(f[11], 10, 64)
	s, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return Task{}, fmt.Errorf("%w: task stat utime %q stime %q", ErrFormat, f[11], f[12])
	}
	return Task{User: u, System: s}, nil
}

// ReadTask parses the task stat file at path.
func ReadTask(path string) (Task, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Task{}, fmt.Errorf("procstat: %w", err)
	}
	return ParseTask(b)
}

// Mapping is one range of a process's address space, [Start, End).
type Mapping struct {
	Start, End uintptr
}

// ParseSocketMaps returns the ranges of a maps file (/proc/PID/maps,
// "START-END PERMS OFFSET DEV INODE [PATH]" per line) that map the socket
// of inode ino: the lines of that inode named "socket:[INO]".
func ParseSocketMaps(r io.Reader, ino uint64) ([]Mapping, error) {
	name := fmt.Sprintf("socket:[%d]", ino)
	var out []Mapping
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 5 {
			return nil, fmt.Errorf("%w: maps line %q has %d fields, want at least 5", ErrFormat, sc.Text(), len(f))
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if !ok || err1 != nil || err2 != nil || end < start {
			return nil, fmt.Errorf("%w: maps range %q", ErrFormat, f[0])
		}
		if len(f) == 6 && f[5] == name && f[4] == strconv.FormatUint(ino, 10) {
			out = append(out, Mapping{Start: uintptr(start), End: uintptr(end)})
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("procstat: %w", err)
	}
	return out, nil
}
