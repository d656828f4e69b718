package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/xlbproject/xlb/config"
	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/engine"
	"github.com/xlbproject/xlb/firewall"
)

// firewallArgs is what `xlb firewall add|del` sends over the control
// socket: the words as typed, parsed by the instance (firewall.ParseRule),
// so that one parser decides and its errors reach the operator.
type firewallArgs struct {
	VIP    string `json:"vip,omitempty"`
	Prefix string `json:"prefix"`
	Action string `json:"action,omitempty"`
	TTL    string `json:"ttl,omitempty"`
}

// firewallHandlers are the control socket's firewall commands.
func firewallHandlers(eng *engine.Engine) map[string]control.Handler {
	decode := func(raw json.RawMessage) (firewallArgs, error) {
		var a firewallArgs
		if err := json.Unmarshal(raw, &a); err != nil {
			return a, fmt.Errorf("bad arguments: %w", err)
		}
		return a, nil
	}
	return map[string]control.Handler{
		"firewall.list": func(context.Context, json.RawMessage) (any, error) {
			return eng.FirewallStats(), nil
		},
		"firewall.add": func(_ context.Context, raw json.RawMessage) (any, error) {
			a, err := decode(raw)
			if err != nil {
				return nil, err
			}
			r, err := firewall.ParseRule(a.VIP, a.Prefix, a.Action, a.TTL, time.Now())
			if err != nil {
				return nil, err
			}
			if err := eng.FirewallAdd(r); err != nil {
				return nil, err
			}
			return r.String(), nil
		},
		"firewall.del": func(_ context.Context, raw json.RawMessage) (any, error) {
			a, err := decode(raw)
			if err != nil {
				return nil, err
			}
			v, err := firewall.ParseVIP(a.VIP)
			if err != nil {
				return nil, err
			}
			p, err := firewall.ParsePrefix(a.Prefix)
			if err != nil {
				return nil, err
			}
			var want firewall.Action // zero: whichever the rule has
			if a.Action != "" {
				if want, err = firewall.ParseAction(a.Action); err != nil {
					return nil, err
				}
			}
			k := firewall.Key{VIP: v, Prefix: p}
			if err := eng.FirewallDel(k, want); err != nil {
				return nil, err
			}
			return fmt.Sprintf("%s %s", v, p), nil
		},
	}
}

const firewallSynopsis = "list | add | del [-c FILE | --socket PATH] [--vip ADDR:PORT/PROTO] [--ttl D] [--json] [--timeout D] PREFIX allow|deny"

func cmdFirewall(e *env, args []string) int {
	fs := newFlags(e, "firewall", firewallSynopsis)
	file := fs.String("c", "", "config file of the running instance (to find its control socket)")
	socket := fs.String("socket", config.DefaultSocket, "control socket of the running instance")
	vip := fs.String("vip", "", "the rule's VIP, ADDR:PORT/PROTO (default: a global rule, deny only)")
	ttl := fs.Duration("ttl", 0, "add: the rule ends by itself after this long (0: it stays until deleted or restart)")
	asJSON := fs.Bool("json", false, "list: print JSON")
	timeout := fs.Duration("timeout", 10*time.Second, "how long to wait for the instance's answer")
	// Flags may follow the words (xlb firewall add 198.18.0.0/16 deny --ttl 10m).
	var words []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return exitOK
			}
			return exitUsage
		}
		if fs.NArg() == 0 {
			break
		}
		words = append(words, fs.Arg(0))
		args = fs.Args()[1:]
	}
	usage := func(msg string) int {
		fmt.Fprintf(e.stderr, "xlb firewall: %s\n", msg)
		fs.Usage()
		return exitUsage
	}
	if len(words) == 0 {
		return usage("want list, add or del")
	}
	var command string
	var a firewallArgs
	switch words[0] {
	case "list":
		if len(words) != 1 {
			return usage("list takes no words")
		}
		command = "firewall.list"
	case "add":
		if len(words) != 3 {
			return usage("add wants PREFIX allow|deny")
		}
		command = "firewall.add"
		a = firewallArgs{VIP: *vip, Prefix: words[1], Action: words[2]}
		if *ttl != 0 {
			a.TTL = ttl.String()
		}
	case "del":
		if len(words) != 2 && len(words) != 3 {
			return usage("del wants PREFIX [allow|deny]")
		}
		command = "firewall.del"
		a = firewallArgs{VIP: *vip, Prefix: words[1]}
		if len(words) == 3 {
			a.Action = words[2]
		}
	default:
		return usage(fmt.Sprintf("unknown subcommand %q: want list, add or del", words[0]))
	}
	// Refuse what the instance would refuse before connecting: the error
	// comes out the same, without a round trip.
	if command == "firewall.add" {
		if _, err := firewall.ParseRule(a.VIP, a.Prefix, a.Action, a.TTL, time.Now()); err != nil {
			fmt.Fprintf(e.stderr, "xlb firewall: %v\n", err)
			return exitUsage
		}
	}
	path, code := socketPath(e, *file, *socket)
	if path == "" {
		return code
	}
	ctx, cancel := withTimeout(*timeout)
	defer cancel()
	if command == "firewall.list" {
		var st engine.FirewallStats
		if err := control.Call(ctx, path, command, nil, &st); err != nil {
			fmt.Fprintf(e.stderr, "xlb: %v\n", clientError(err, "list"))
			return exitFail
		}
		if *asJSON {
			enc := json.NewEncoder(e.stdout)
			enc.SetIndent("", "  ")
			if err := enc.Encode(st); err != nil {
				fmt.Fprintf(e.stderr, "xlb: %v\n", err)
				return exitFail
			}
			return exitOK
		}
		printFirewall(e.stdout, st)
		return exitOK
	}
	var done string
	err := control.Call(ctx, path, command, a, &done)
	var refused *control.RemoteError
	switch {
	case err == nil:
		fmt.Fprintf(e.stdout, "%s: %s\n", strings.TrimPrefix(command, "firewall."), done)
		return exitOK
	case errors.As(err, &refused):
		fmt.Fprintf(e.stderr, "xlb firewall: refused, the rules are unchanged: %s\n", refused.Message)
	default:
		fmt.Fprintf(e.stderr, "xlb: %v\n", clientError(err, words[0]))
	}
	return exitFail
}

// printFirewall prints the rules (with their drops) and the VIPs' firewall
// counters, as `xlb firewall list` and `xlb stats` show them.
func printFirewall(w io.Writer, st engine.FirewallStats) {
	fmt.Fprintf(w, "firewall: %d rules, %d entries\n", len(st.Rules), st.Entries)
	if st.Error != "" {
		fmt.Fprintf(w, "  firewall counters unreadable: %s\n", st.Error)
	}
	for _, r := range st.Rules {
		exp := ""
		if r.Expires != nil {
			exp = fmt.Sprintf("  expires %s (in %s)", r.Expires.Format(time.RFC3339), time.Until(*r.Expires).Round(time.Second))
		}
		drops := "" // an allow rule drops nothing
		if r.Action == firewall.Deny.String() {
			drops = fmt.Sprintf("  dropped %d pkts %d B", r.Packets, r.Bytes)
		}
		fmt.Fprintf(w, "  %-28s %-22s %-5s origin %-10s%s%s\n", r.VIP, r.Prefix, r.Action, r.Origin, drops, exp)
	}
	for _, v := range st.VIPs {
		syn := ""
		if v.SYNRateLimit > 0 {
			syn = fmt.Sprintf("  syn_rate_limit %d/s", v.SYNRateLimit)
		}
		fmt.Fprintf(w, "  vip %s: denied %d pkts %d B  syn_limited %d pkts %d B%s\n", v.VIP, v.DeniedPackets, v.DeniedBytes, v.SYNLimitedPackets, v.SYNLimitedBytes, syn)
	}
}
