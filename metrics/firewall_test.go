package metrics

import (
	"testing"

	"github.com/xlbproject/xlb/engine"
)

func TestCollectFirewall(t *testing.T) {
	src := afxdpSnapshot()
	src.stats.Firewall = engine.FirewallStats{
		Entries: 4,
		Rules: []engine.FirewallRuleStats{
			{VIP: "global", Prefix: "198.18.66.0/24", Action: "deny", Origin: "file", Packets: 10, Bytes: 600},
			{VIP: "198.18.100.1:80/tcp", Prefix: "198.18.0.0/16", Action: "allow", Origin: "file"},
			{VIP: "198.18.100.1:80/tcp", Prefix: "0.0.0.0/0", Action: "deny", Origin: "allow-list", Packets: 3, Bytes: 180},
		},
		VIPs: []engine.FirewallVIPStats{{VIP: "198.18.100.1:80/tcp", SYNRateLimit: 5, DeniedPackets: 13, DeniedBytes: 780, SYNLimitedPackets: 2, SYNLimitedBytes: 120}},
	}
	compare(t, src, `
# HELP xlb_firewall_rule_dropped_packets_total Frames a deny rule dropped (a global rule over every VIP).
# TYPE xlb_firewall_rule_dropped_packets_total counter
xlb_firewall_rule_dropped_packets_total{prefix="0.0.0.0/0",scope="198.18.100.1:80/tcp"} 3
xlb_firewall_rule_dropped_packets_total{prefix="198.18.66.0/24",scope="global"} 10
# HELP xlb_firewall_denied_packets_total Frames to the VIP the firewall dropped.
# TYPE xlb_firewall_denied_packets_total counter
xlb_firewall_denied_packets_total{vip="198.18.100.1:80/tcp"} 13
# HELP xlb_firewall_syn_limited_packets_total TCP SYNs to the VIP dropped by its syn_rate_limit.
# TYPE xlb_firewall_syn_limited_packets_total counter
xlb_firewall_syn_limited_packets_total{vip="198.18.100.1:80/tcp"} 2
# HELP xlb_firewall_entries (VIP, source prefix) entries the firewall's LPM trie holds.
# TYPE xlb_firewall_entries gauge
xlb_firewall_entries 4
`, "xlb_firewall_rule_dropped_packets_total", "xlb_firewall_denied_packets_total", "xlb_firewall_syn_limited_packets_total", "xlb_firewall_entries")
	src.stats.Firewall.Error = "unreadable"
	compare(t, src, `
# HELP xlb_firewall_counters_readable Whether the firewall's counters could be read at this scrape; its xlb_firewall_*_total series are left out while they cannot.
# TYPE xlb_firewall_counters_readable gauge
xlb_firewall_counters_readable 0
`, "xlb_firewall_counters_readable", "xlb_firewall_denied_packets_total")
}
