package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/xlbproject/xlb/engine"
)

// The firewall's drops (engine.FirewallStats). A rule's series ends when
// the rule is deleted; one added again starts from 0 (a counter reset).
var (
	fwReadable       = newDesc("xlb_firewall_counters_readable", "Whether the firewall's counters could be read at this scrape; its xlb_firewall_*_total series are left out while they cannot.")
	fwEntries        = newDesc("xlb_firewall_entries", "(VIP, source prefix) entries the firewall's LPM trie holds.")
	fwRuleInfo       = newDesc("xlb_firewall_rule_info", "A firewall rule: scope (a VIP or global), source prefix, action and origin (file, runtime, or allow-list for a VIP's implicit deny); always 1.", "scope", "prefix", "action", "origin")
	fwRulePackets    = newDesc("xlb_firewall_rule_dropped_packets_total", "Frames a deny rule dropped (a global rule over every VIP).", "scope", "prefix")
	fwRuleBytes      = newDesc("xlb_firewall_rule_dropped_bytes_total", "Bytes of the frames a deny rule dropped.", "scope", "prefix")
	fwDeniedPackets  = newDesc("xlb_firewall_denied_packets_total", "Frames to the VIP the firewall dropped.", "vip")
	fwDeniedBytes    = newDesc("xlb_firewall_denied_bytes_total", "Bytes of the frames to the VIP the firewall dropped.", "vip")
	fwLimitedPackets = newDesc("xlb_firewall_syn_limited_packets_total", "TCP SYNs to the VIP dropped by its syn_rate_limit.", "vip")
	fwLimitedBytes   = newDesc("xlb_firewall_syn_limited_bytes_total", "Bytes of the SYNs to the VIP dropped by its syn_rate_limit.", "vip")
)

func collectFirewall(ch chan<- prometheus.Metric, fw *engine.FirewallStats) {
	readable := fw.Error == ""
	gauge(ch, fwReadable, boolValue(readable))
	gauge(ch, fwEntries, float64(fw.Entries))
	for _, r := range fw.Rules {
		gauge(ch, fwRuleInfo, 1, r.VIP, r.Prefix, r.Action, r.Origin)
		if readable && r.Action == "deny" {
			counter(ch, fwRulePackets, r.Packets, r.VIP, r.Prefix)
			counter(ch, fwRuleBytes, r.Bytes, r.VIP, r.Prefix)
		}
	}
	if !readable {
		return
	}
	for _, v := range fw.VIPs {
		counter(ch, fwDeniedPackets, v.DeniedPackets, v.VIP)
		counter(ch, fwDeniedBytes, v.DeniedBytes, v.VIP)
		counter(ch, fwLimitedPackets, v.SYNLimitedPackets, v.VIP)
		counter(ch, fwLimitedBytes, v.SYNLimitedBytes, v.VIP)
	}
}
