package main

import (
	"errors"
	"flag"
	"fmt"
	"net/netip"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/engine"
	"github.com/xlbproject/xlb/proxy"
)

func cmdLookup(e *env, args []string) int {
	fs := newFlags(e, "lookup", "-c FILE [--sni NAME] tcp|udp SRC:SPORT DST:DPORT")
	file := fs.String("c", "", "config file (TOML)")
	name := fs.String("sni", "", "server name of the ClientHello, for a splice VIP (\"\" for none)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		return exitUsage
	}
	if *file == "" || fs.NArg() != 3 {
		fs.Usage()
		return exitUsage
	}
	var proto config.Protocol
	if err := proto.UnmarshalText([]byte(fs.Arg(0))); err != nil {
		fmt.Fprintf(e.stderr, "xlb: lookup: %v\n", err)
		return exitUsage
	}
	src, err1 := netip.ParseAddrPort(fs.Arg(1))
	dst, err2 := netip.ParseAddrPort(fs.Arg(2))
	if err1 != nil || err2 != nil {
		fmt.Fprintf(e.stderr, "xlb: lookup: want SRC:SPORT DST:DPORT, got %s %s\n", fs.Arg(1), fs.Arg(2))
		return exitUsage
	}
	// The config alone decides: no interface is needed, so the host is not
	// checked and lookup works on any machine.
	cfg, err := config.Load(*file)
	if err != nil {
		fmt.Fprintf(e.stderr, "xlb: %v\n", err)
		return exitConfig
	}
	sniSet := false
	fs.Visit(func(f *flag.Flag) { sniSet = sniSet || f.Name == "sni" })
	// A splice VIP's backend depends on the server name as well: the proxy
	// answers for it, and only when told the name.
	for _, v := range cfg.VIPs {
		if v.Forward != config.Splice || v.Protocol != proto || v.Address != dst.Addr().Unmap() || v.Port != dst.Port() {
			continue
		}
		if !sniSet {
			fmt.Fprintf(e.stderr, "xlb: lookup: %s is a splice VIP, routed by the server name: give --sni NAME (--sni \"\" for a ClientHello without one)\n", v)
			return exitUsage
		}
		r, b, err := proxy.Lookup(v, src, *name)
		if err != nil {
			fmt.Fprintf(e.stderr, "xlb: %v\n", err)
			return exitFail
		}
		fmt.Fprintf(e.stdout, "%s (route %s)\n", b.Address, r.Name())
		return exitOK
	}
	if sniSet {
		fmt.Fprintf(e.stderr, "xlb: lookup: --sni is for splice VIPs, and %s/%s is none\n", dst, proto)
		return exitUsage
	}
	r, err := engine.NewResolver(cfg)
	if err != nil {
		fmt.Fprintf(e.stderr, "xlb: %v\n", err)
		return exitFail
	}
	_, b, err := r.Lookup(proto, src, dst)
	if err != nil {
		fmt.Fprintf(e.stderr, "xlb: %v\n", err)
		return exitFail
	}
	fmt.Fprintln(e.stdout, b.Address)
	return exitOK
}
