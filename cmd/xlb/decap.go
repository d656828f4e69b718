package main

import (
	"fmt"

	"github.com/xlbproject/xlb/bpf/decap"
)

func cmdDecap(e *env, args []string) int {
	if len(args) == 0 || (args[0] != "attach" && args[0] != "detach" && args[0] != "status") {
		fmt.Fprintln(e.stderr, "usage: xlb decap attach|detach|status --interface IF")
		fmt.Fprintln(e.stderr, "\nOn a backend, strips the outer header of IPIP, 4in6, 6in6 and GUE packets in XDP and passes the inner\npacket to the stack, for kernels without the ipip module. The attachment outlives this command.")
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return exitOK
		}
		return exitUsage
	}
	action := args[0]
	fs := newFlags(e, "decap "+action, "--interface IF")
	ifname := fs.String("interface", "", "interface to act on")
	guePort := fs.Uint("gue-port", decap.DefaultGUEPort, "UDP port of GUE packets to decapsulate (attach; 0 = no GUE)")
	if code, ok := parseFlags(fs, args[1:]); !ok {
		return code
	}
	if *ifname == "" {
		fmt.Fprintln(e.stderr, "xlb: --interface is required")
		return exitUsage
	}
	var err error
	switch action {
	case "attach":
		var mode string
		if *guePort > 65535 {
			fmt.Fprintf(e.stderr, "xlb: --gue-port %d is not a port\n", *guePort)
			return exitUsage
		}
		if mode, err = decap.Attach(*ifname, decap.Options{GUEPort: uint16(*guePort)}); err == nil {
			fmt.Fprintf(e.stdout, "decap attached to %s (%s mode)\n", *ifname, mode)
		}
	case "detach":
		if err = decap.Detach(*ifname); err == nil {
			fmt.Fprintf(e.stdout, "decap detached from %s\n", *ifname)
		}
	case "status":
		var on bool
		if on, err = decap.Attached(*ifname); err == nil {
			fmt.Fprintf(e.stdout, "%s: decap attached: %t\n", *ifname, on)
		}
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "xlb: decap %s %s: %v\n", action, *ifname, err)
		return exitFail
	}
	return exitOK
}
