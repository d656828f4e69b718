// Package config loads and validates xlb's configuration: one TOML file with
// a [datapath] table, an optional [control] table, an optional [bgp] table
// (the speaker announcing the VIPs; bgp.Config.Validate checks it and its
// errors are mapped onto the file's lines) and one [[vip]] per virtual
// service, each with its [[vip.backend]]s. examples/xlb.toml in the
// repository documents every key, its default and why.
//
// # Model
//
// Parse (or Load, which reads the file first) is pure: it decodes the file
// strictly (an unknown key is an error, as is a value of the wrong type),
// fills defaults and checks everything that does not depend on the host. It
// returns a *Config the caller owns; nothing in it is shared. What depends on
// the host (the interface, its queues, the CPUs, the source address) is
// checked and resolved by CheckHost, which the caller runs in the network
// namespace the datapath will use, once, before starting it: the interface,
// queues and CPUs, the outer source addresses (source for IPv4 backends,
// source6 for IPv6 ones, each required only when a VIP encapsulates to that
// family) and, for forward = "dsr", that the kernel routes every backend
// on-link through the interface.
//
// # Forwarding and families
//
// IPv4 and IPv6 are both accepted. A VIP's backends are all of one family,
// which is the outer family of ipip and gue: an IPv4 VIP to IPv4 (IPIP) or
// IPv6 (4in6) backends, an IPv6 VIP to IPv6 backends (IP6IP6); 6in4 is
// refused. dsr adds no header, so its backends are of the VIP's family.
//
// # Health checks
//
// [vip.health] applies over the defaults (DefaultHealth) and every backend
// inherits the result; [vip.backend.health] applies over its VIP's check,
// key by key. After Parse every VIP.Health and Backend.Health is resolved
// and comparable; HTTP-only fields are zero for the other kinds.
//
// # Reload
//
// A reload parses the new file into a new Config and runs CheckHost on it
// again; running.RestartKeys(next) lists the keys that differ and that only
// a restart can apply (socket and memory sizing: the interface, queues, CPUs,
// UMEM, rings, socket options, flow_table_size, control.socket; the BGP
// speaker's identity: bgp.asn, bgp.router_id, bgp.listen_port). Everything
// else (VIPs, backends, weights, drain states, health checks, Maglev table
// sizes, sources, flow timeouts, ICMP rate limits) is applied live, and
// established flows keep their backend through the flow table. A backend's
// State "drain" takes it out of new flows like weight 0 but keeps its
// weight (EffectiveWeight).
//
// # Limits
//
// A file must fit the kernel maps the datapath fills, and Parse checks that
// it does, so that `xlb check` refuses what `xlb run` would (limits.go):
// the VIP map holds MaxVIPEntries entries, one per VIP and one per distinct
// VIP address; the steering program serves queues below MaxQueues; in
// native mode the backends of all VIPs take at most NativeMaxIDs backend
// indexes, and the Maglev tables (every VIP's at its size, table_size for
// each unused index up to NativeMinVIPTables, the largest once more) at
// most NativeMaglevSlots slots. The error is at the VIP (or key) that first
// does not fit.
//
// # Native mode
//
// mode = "native" runs the lb XDP program, which does per packet what the
// workers do; what it would ignore is refused at its line (validate.go):
// forward = "splice". Its ICMP rate limit (icmp_rate_limit, icmp_rate_burst)
// is per CPU, where the workers' is per worker. Its flow tables follow bpf.LBFlowExpiry, which
// `xlb check` prints. These values copy the sizes bpf/ gives its maps (config does not
// import bpf); a test in cmd/xlb holds them equal. A file is at most
// MaxFileSize (16 MiB): Load reads no more, so a file that never ends
// (/dev/zero) is an error, not an exhausted machine.
//
// # Warnings
//
// Config.Warnings lists what is valid but most likely a mistake, located as
// errors are: a backend at its VIP's own address, a VIP all of whose
// backends have weight 0 or drain. `xlb check` prints them and exits 0.
//
// # Errors
//
// Every error about the file is an *Error that names the file, the line and
// the key, printed as
//
//	/etc/xlb.toml:14: vip[1].backend[0].address: "198.18.0.x" is not an IP address
//
// Keys are dotted paths with the index of each array element, as written
// above. A key the file does not set (a missing required key) is reported at
// the line where its table starts. Parse reports every error it finds, not
// just the first, joined with errors.Join in line order; errors.As finds the
// first. Callers that find a key wrong later (the datapath, when the kernel
// refuses a setting) report it the same way with Config.Errorf.
//
// BurntSushi/toml does not expose where a key is set, so the package keeps
// its own index of key positions, built by a small line scanner over the
// source (position.go).
package config
