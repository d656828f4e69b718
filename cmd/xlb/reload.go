package main

import (
	"context"
	"fmt"
	"time"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/control"
)

func cmdReload(e *env, args []string) int {
	fs := newFlags(e, "reload", "[-c FILE | --socket PATH]")
	file := fs.String("c", "", "config file of the running instance (to find its control socket)")
	socket := fs.String("socket", config.DefaultSocket, "control socket of the running instance")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	path, code := socketPath(e, *file, *socket)
	if path == "" {
		return code
	}
	// Building tables for many backends and resolving new next hops takes
	// a while; the instance answers when the new plan is in place.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var changes []string
	if err := control.Call(ctx, path, "reload", nil, &changes); err != nil {
		fmt.Fprintf(e.stderr, "xlb: reload refused, the running config is unchanged: %v\n", err)
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
