package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/control"
)

// defaultReloadTimeout is how long `xlb reload` waits by default: a reload
// of thousands of backends builds their tables and resolves their next
// hops, which takes seconds, not minutes.
const defaultReloadTimeout = 2 * time.Minute

func cmdReload(e *env, args []string) int {
	fs := newFlags(e, "reload", "[-c FILE | --socket PATH] [--timeout D]")
	file := fs.String("c", "", "config file of the running instance (to find its control socket)")
	socket := fs.String("socket", config.DefaultSocket, "control socket of the running instance")
	timeout := fs.Duration("timeout", defaultReloadTimeout, "how long to wait for the instance's answer (0: as long as it takes)")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	path, code := socketPath(e, *file, *socket)
	if path == "" {
		return code
	}
	// The instance answers once the new plan is in place, however long
	// that takes; only the caller's own timeout cuts the wait short.
	ctx, cancel := withTimeout(*timeout)
	defer cancel()
	var changes []string
	err := control.Call(ctx, path, "reload", nil, &changes)
	var refused *control.RemoteError
	switch {
	case err == nil:
	case errors.As(err, &refused):
		fmt.Fprintf(e.stderr, "xlb: reload refused, the running config is unchanged: %s\n", refused.Message)
		return exitFail
	case errors.Is(err, control.ErrNoAnswer):
		fmt.Fprintf(e.stderr, "xlb: no answer within %s; the reload may still be applying (its outcome is in the log of xlb run)\n", *timeout)
		return exitFail
	default:
		fmt.Fprintf(e.stderr, "xlb: %v\n", clientError(err, "reload"))
		return exitFail
	}
	if len(changes) == 0 {
		fmt.Fprintln(e.stdout, "reloaded: no changes")
	}
	for _, c := range changes {
		fmt.Fprintf(e.stdout, "reloaded: %s\n", c)
	}
	return exitOK
}

// withTimeout is context.WithTimeout where 0 means no limit.
func withTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	if d <= 0 {
		return context.WithCancel(context.Background())
	}
	return context.WithTimeout(context.Background(), d)
}

// clientError words an error of control.Call that is neither an answer nor
// a timeout. Nothing listening is the common case and needs no more than
// its own sentence; anything else (the connection broke mid-way) leaves
// the outcome unknown, which the message must not hide.
func clientError(err error, command string) error {
	if errors.Is(err, control.ErrNotRunning) || errors.Is(err, fs.ErrPermission) {
		return err // it never reached an instance
	}
	return fmt.Errorf("%w (whether the %s was done is unknown)", err, command)
}

// socketPath picks the control socket: the config file's if one is given,
// else the flag. On error it prints and returns "" and the exit code.
func socketPath(e *env, file, socket string) (string, int) {
	if file == "" {
		return socket, exitOK
	}
	cfg, err := config.Load(file)
	if err != nil {
		fmt.Fprintf(e.stderr, "xlb: %v\n", err)
		return "", exitConfig
	}
	return cfg.Control.Socket, exitOK
}
