package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/xlbproject/xlb/bpf/decap"
)

const decapUsage = `usage: xlb decap attach --interface IF --allow-source PREFIX [--allow-source PREFIX ...] [--gue-port N]
       xlb decap allow  --interface IF PREFIX [PREFIX ...]
       xlb decap status --interface IF
       xlb decap detach --interface IF

On a backend, strips the outer header of IPIP, 6in4, 4in6, 6in6 and GUE packets in XDP and passes the inner
packet to the stack, for kernels without the ipip module. The attachment outlives this command.

Only tunnels addressed to one of this host's addresses and sent from an --allow-source prefix (the
balancers' addresses) are decapsulated; the rest are dropped and counted. --allow-source is required:
"any" accepts tunnels from every source (anyone who reaches the backend can then inject packets with
any inner source address). "allow" replaces the allowed set of the attached program in place and
re-reads the host's addresses; "attach" again replaces the program (its counters restart).`

// decapSynopsis is each `xlb decap` action's flags and arguments.
var decapSynopsis = map[string]string{
	"attach": "--interface IF --allow-source PREFIX [--allow-source PREFIX ...] [--gue-port N]",
	"allow":  "--interface IF PREFIX [PREFIX ...]",
	"detach": "--interface IF",
	"status": "--interface IF",
}

func cmdDecap(e *env, args []string) int {
	var synopsis string
	if len(args) > 0 {
		synopsis = decapSynopsis[args[0]]
	}
	if synopsis == "" {
		fmt.Fprintln(e.stderr, decapUsage)
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help") {
			return exitOK
		}
		return exitUsage
	}
	action := args[0]
	fs := newFlags(e, "decap "+action, synopsis)
	ifname := fs.String("interface", "", "interface to act on")
	var guePort *uint
	var allowArgs []string
	if action == "attach" {
		guePort = fs.Uint("gue-port", decap.DefaultGUEPort, "UDP port of GUE packets to decapsulate (0 = no GUE)")
		fs.Func("allow-source", "balancer address or prefix tunnels may come from (repeat for more; \"any\" for every source)", func(s string) error {
			allowArgs = append(allowArgs, s)
			return nil
		})
	}
	if action == "allow" {
		// allow takes its prefixes as arguments after the flags.
		if err := fs.Parse(args[1:]); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return exitOK
			}
			return exitUsage
		}
		allowArgs = fs.Args()
	} else if code, ok := parseFlags(fs, args[1:]); !ok {
		return code
	}
	if *ifname == "" {
		fmt.Fprintln(e.stderr, "xlb: --interface is required")
		return exitUsage
	}
	var allow []netip.Prefix
	if action == "attach" || action == "allow" {
		what := map[string]string{"attach": "--allow-source", "allow": "a PREFIX argument"}[action]
		if len(allowArgs) == 0 {
			fmt.Fprintf(e.stderr, "xlb: decap %s needs %s: the balancers' addresses, the only sources tunnels are accepted from (\"any\" for every source, not recommended)\n", action, what)
			return exitUsage
		}
		var open bool
		var err error
		if allow, open, err = parseAllow(allowArgs); err != nil {
			fmt.Fprintf(e.stderr, "xlb: decap %s: %v\n", action, err)
			return exitUsage
		}
		if open {
			fmt.Fprintf(e.stderr, "xlb: WARNING: decap on %s accepts tunnels from ANY source: whoever can reach this host can inject packets with any inner source address. Give the balancers' addresses instead.\n", *ifname)
		}
	}
	var err error
	switch action {
	case "attach":
		if *guePort > 65535 {
			fmt.Fprintf(e.stderr, "xlb: --gue-port %d is not a port\n", *guePort)
			return exitUsage
		}
		var mode string
		if mode, err = decap.Attach(*ifname, decap.Options{GUEPort: uint16(*guePort), Allow: allow}); err == nil {
			fmt.Fprintf(e.stdout, "decap attached to %s (%s mode), tunnels accepted from %s\n", *ifname, mode, joinPrefixes(allow))
		}
	case "allow":
		if err = decap.SetAllowed(*ifname, allow, nil); err == nil {
			fmt.Fprintf(e.stdout, "decap on %s: tunnels accepted from %s\n", *ifname, joinPrefixes(allow))
		}
	case "detach":
		if err = decap.Detach(*ifname); err == nil {
			fmt.Fprintf(e.stdout, "decap detached from %s\n", *ifname)
		}
	case "status":
		var st decap.Status
		if st, err = decap.GetStatus(*ifname); err == nil {
			printDecapStatus(e.stdout, *ifname, st)
		}
	}
	if err != nil {
		fmt.Fprintf(e.stderr, "xlb: decap %s %s: %v\n", action, *ifname, err)
		return exitFail
	}
	return exitOK
}

// parseAllow parses --allow-source values: a prefix in canonical form
// (198.18.0.0/24, 2001:db8::/64), a bare address (a /32 or /128), or "any"
// (0.0.0.0/0 and ::/0, alone). open reports the last.
func parseAllow(args []string) (allow []netip.Prefix, open bool, err error) {
	for _, s := range args {
		if strings.EqualFold(s, "any") {
			if len(args) > 1 {
				return nil, false, errors.New(`"any" allows every source: give it alone`)
			}
			return []netip.Prefix{netip.PrefixFrom(netip.IPv4Unspecified(), 0), netip.PrefixFrom(netip.IPv6Unspecified(), 0)}, true, nil
		}
		p, err := netip.ParsePrefix(s)
		if err != nil {
			a, aerr := netip.ParseAddr(s)
			if aerr != nil || a.Zone() != "" {
				return nil, false, fmt.Errorf("allowed source %q is neither an address nor a prefix", s)
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Masked() != p {
			return nil, false, fmt.Errorf("allowed source %s has host bits set: write %s for the network or %s for the host", s, p.Masked(), netip.PrefixFrom(p.Addr(), p.Addr().BitLen()))
		}
		if p.Addr().Is4In6() {
			return nil, false, fmt.Errorf("allowed source %s is IPv4-mapped IPv6: write it in IPv4 form", s)
		}
		allow = append(allow, p)
	}
	if err := decap.CheckAllow(allow); err != nil {
		return nil, false, err
	}
	return allow, false, nil
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// printDecapStatus writes what `xlb decap status` shows: the attachment, the
// configuration read back from the program's maps and every counter.
func printDecapStatus(w io.Writer, ifname string, st decap.Status) {
	if !st.Attached {
		fmt.Fprintf(w, "%s: decap not attached\n", ifname)
		return
	}
	fmt.Fprintf(w, "%s: decap attached, %s mode, program %d\n", ifname, st.Mode, st.ProgramID)
	if st.GUEPort == 0 {
		fmt.Fprintln(w, "gue port: off")
	} else {
		fmt.Fprintf(w, "gue port: %d\n", st.GUEPort)
	}
	fmt.Fprintf(w, "allowed sources: %s\n", joinPrefixes(st.Allow))
	for _, p := range st.Allow {
		if p.Bits() == 0 {
			fmt.Fprintf(w, "WARNING: %s allows every source of its family\n", p)
		}
	}
	addrs := make([]string, len(st.Local))
	for i, a := range st.Local {
		addrs[i] = a.String()
	}
	fmt.Fprintf(w, "local addresses: %s\n", strings.Join(addrs, ", "))
	fmt.Fprintln(w, "counters:")
	for c, v := range st.Counters {
		fmt.Fprintf(w, "  %-22s %d\n", decap.Counter(c), v)
	}
}
