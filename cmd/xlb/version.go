package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"

	"golang.org/x/sys/unix"
)

// versionInfo is what `xlb version` reports: enough to tell which code runs
// on which kernel in a bug report.
type versionInfo struct {
	Module  string `json:"module"`
	Version string `json:"version"` // "(devel)" unless built from a module version
	// Commit, CommitTime and Modified come from the VCS stamp `go build`
	// writes when it builds inside a git checkout (-buildvcs, on by
	// default); empty and false without one (go run, go test,
	// -buildvcs=false).
	Commit     string `json:"commit,omitempty"`
	CommitTime string `json:"commit_time,omitempty"`
	Modified   bool   `json:"modified"`
	Go         string `json:"go"`
	Kernel     string `json:"kernel"`
}

func readVersion() (versionInfo, error) {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return versionInfo{}, fmt.Errorf("uname: %w", err)
	}
	bi, _ := debug.ReadBuildInfo()
	return versionOf(bi, unix.ByteSliceToString(u.Release[:])), nil
}

// versionOf picks the fields out of the binary's build info (nil: none).
func versionOf(bi *debug.BuildInfo, kernel string) versionInfo {
	v := versionInfo{Go: runtime.Version(), Kernel: kernel}
	if bi == nil {
		return v
	}
	v.Module, v.Version = bi.Main.Path, bi.Main.Version
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			v.Commit = s.Value
		case "vcs.time":
			v.CommitTime = s.Value
		case "vcs.modified":
			v.Modified = s.Value == "true"
		}
	}
	return v
}

func cmdVersion(e *env, args []string) int {
	fs := newFlags(e, "version", "[--json]")
	asJSON := fs.Bool("json", false, "print one JSON object instead of one line per field")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	v, err := readVersion()
	if err != nil {
		fmt.Fprintf(e.stderr, "xlb: %v\n", err)
		return exitFail
	}
	if *asJSON {
		if err := json.NewEncoder(e.stdout).Encode(v); err != nil {
			fmt.Fprintf(e.stderr, "xlb: %v\n", err)
			return exitFail
		}
		return exitOK
	}
	commit := v.Commit
	switch {
	case commit == "":
		commit = "unknown (built without VCS information)"
	case v.Modified:
		commit += " (modified)"
	}
	fmt.Fprintf(e.stdout, "module  %s\nversion %s\ncommit  %s\n", v.Module, v.Version, commit)
	if v.CommitTime != "" {
		fmt.Fprintf(e.stdout, "time    %s\n", v.CommitTime)
	}
	fmt.Fprintf(e.stdout, "go      %s\nkernel  %s\n", v.Go, v.Kernel)
	return exitOK
}
