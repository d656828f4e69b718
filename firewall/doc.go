// Package firewall is the rule model of xlb's per-VIP firewall: rules,
// their parsing, and their compilation into the (VIP, source prefix)
// entries the XDP programs look up (bpf.Firewall, bpf/firewall.h).
//
// Semantics. A rule is (scope, source prefix, action). The scope is one VIP
// (ADDR:PORT/PROTO) or global; global rules are deny rules and apply to
// every VIP of their family. For a frame to a VIP from a source, the most
// specific prefix among the VIP's rules and the global rules decides:
//   - allow inside a denied range, deny inside an allowed one;
//   - at equal prefix a VIP's rule beats a global one;
//   - a VIP with at least one allow rule has an implicit deny of every
//     other source of its family (its allow list); a VIP without one
//     allows what no deny rule covers.
//
// Example, with [firewall] deny = ["198.18.66.0/24"] and a VIP with
// allow = ["198.18.0.0/16"], deny = ["198.18.1.0/24"] and an allow rule
// 198.18.1.128/25 added at run time: 198.18.2.1 is allowed (/16),
// 198.18.1.1 denied (/24), 198.18.1.200 allowed (/25), 198.18.66.7 denied
// (the global /24 is more specific than the VIP's /16) and 198.19.0.1
// denied (not in the allow list).
//
// A rule's prefix must be of its VIP's family, have no host bits set, and
// appear once per scope (a second one is an error, never a silent
// override).
//
// Compilation (Compile) turns the rules into one entry per (VIP, prefix):
// the VIP's rules, every global rule of its family, and a prefix of length
// 0 (deny for an allow list, allow for a VIP that only has a SYN limit) so
// that one longest-prefix lookup gives the answer. Every entry of a VIP
// carries its SYN limit and its counter slot; deny entries carry their
// rule's counter index. Index keeps those indexes stable for a rule or VIP
// across compilations, so counters survive changes; an index freed and
// handed out again is reported so that its counters are cleared first.
//
// Origins and persistence (Rules). Rules come from the config file or from
// the control socket at run time. Runtime rules survive reloads (an
// operator's emergency block must not vanish because someone fixed a
// backend weight) but not a restart (they are not written anywhere: the
// file stays the one source of truth an operator can review); a reload
// reports how many runtime rules it kept and drops, with the reason, those
// whose VIP is gone or that the file now has itself. A runtime rule may
// carry an expiry (`--ttl`); Expire removes the rules past it.
package firewall
