// Package perf is xlb's performance lab: it measures the balancer and its
// reference points side by side, on the same lab, the same traffic and the
// same CPUs, and reports rates, losses and where the CPU time went.
//
// # Lab
//
// Compare builds a lab (package lab) of three namespaces on one bridge:
// gen, lb and sink, all in 198.18.0.0/15, with static bridge forwarding
// entries so that nothing is flooded. The generator (bpf/labprogs Gen) runs
// BPF_PROG_TEST_RUN in live-frame mode: one pinned thread per generator
// CPU transmits template frames to lb's MAC and the VIP, spread over many
// flows, in chunks of test-run repetitions until its window ends. Whatever
// lb forwards goes to the sink's MAC (the backends' static next hop in
// xlb's config), where an XDP program counts per CPU and drops; only
// frames from lb's MAC count as delivered.
//
// In the bridge topology the generator sends from gen's eth0 and every
// forwarded frame crosses the bridge twice, as an skb. The direct topology
// adds a veth pair between lb and sink and measures on it: the generator
// sends from the sink's end, so the path is the datapath and one veth
// hop each way. veth runs a receiver's XDP and softirq work on the sending
// CPU: the generator's CPU carries lb's receive side (and, for XDP_TX, all
// of lb), the balancer's CPU carries the sink's receive side of what it
// transmits from user space.
//
// # Datapaths
//
// Each entry of the datapath list is started in lb, with its worker (or
// forwarding thread) pinned to the balancer CPU, then measured with every
// traffic kind and frame size: a warm-up, then Repeat windows of Duration
// back to back, each with the sink read every second and /proc/stat read
// at both ends (per-core user, system and softirq time). The list:
// xlb-afxdp (the real `xlb run` binary), xlb-native (`xlb run` with mode
// = "native", its flow tables of NativeFlowTableSize entries unless
// Options.FlowTableSize sets both xlb datapaths' size), xdp-tx (native-XDP
// ceiling), ring-fwd (AF_XDP transport ceiling on xlb's own ring package)
// and asavie (the asavie/xdp library as shipped doing xlb's per-packet
// work). Adding one is adding an entry.
//
// # Firewall
//
// Options.Rules measures the xlb datapaths once per firewall size, in
// entries per VIP: an allow list holding the generator's sources, its
// implicit deny, and denied prefixes elsewhere (the rule set
// docs/firewall.md's Cost section measures inside the programs), so the
// table gives the forwarding rate against the same datapath without a
// firewall.
//
// The drop scenario (Options.Scenario) sends the same traffic from a
// denied range, 198.18.1.0/24, and measures what each datapath drops: xlb
// in both modes with its firewall denying the range, nftables dropping it
// in the netdev ingress hook of the balancer's link (nft-ingress) or in
// inet prerouting at priority raw (nft-prerouting), one rule with a named
// counter loaded with `nft -f -` in lb's namespace, and the XDP drop
// ceiling (xdp-drop, two instructions). The rate is each one's own counter
// (xlb's per-VIP denied count, the nft counter); the ceiling counts
// nothing, so its rate is the balancer link's receive counter, which on a
// veth counts every frame handed over, dropped by XDP or not. The report
// has both for every datapath. A veth runs its receiver's XDP and softirq
// on the sending CPU, so in this lab the drop shares the generator's core:
// a costlier drop shows as fewer frames sent, and the table gives the time
// a frame costs over the ceiling. In the direct topology the nft datapaths
// put the pass-all program on lb's end, as a veth drops XDP frames sent to
// a peer without XDP; the kernel then builds an skb, as a NIC driver does.
//
// # Sweeps
//
// Sweep tunes xlb's AF_XDP datapath one per-queue knob at a time, the
// others at xlb's defaults: batch size, ring sizes, tx budget, busy poll,
// spin, need_wakeup and, in the direct topology, the queue count. Each
// point is a Compare run of xlb-afxdp with its own lab. The report has a
// table and a chart per knob and a recommended [datapath] snippet: a knob
// leaves its default only for a setting whose slowest repeat beat the
// default's fastest, since the machines this runs on are noisy.
//
// # Queues
//
// The bridge lab's veths have one queue. The direct pair can have several
// (Options.Queues), one xlb worker each. A veth puts what its peer's XDP
// transmits (the generator's live frames) on the receive queue numbered
// after the sending CPU, modulo the queue count: the queue index the
// generator passes to its test run does not steer, its CPUs do, so a
// multi-queue run needs as many generator CPUs as queues.
//
// # Charts
//
// Report.WriteCharts and SweepReport.WriteCharts draw PNGs with gonum/plot:
// delivered Mpps per datapath (median, min-max error bars, coloured by
// kind), CPU per core stacked user/system/softirq, and Mpps per setting of
// each swept knob.
//
// Every loop is bounded in time: generator threads stop by themselves a
// little after their planned run, xlb gets bounded waits to start and stop.
//
// # Lifecycle
//
// Compare owns everything it makes: the lab, the programs it attaches and
// the xlb process. It removes all of it before returning, on success and
// on failure; the xlb binary it builds when Options.XLBBinary is empty is
// the process's one build (lab/xlbbin), which the caller removes at its
// end with xlbbin.Remove; a crashed
// run leaves namespaces named PREFIX-*, which the next run with the same
// prefix removes first (lab.Cleanup). The numbers are only comparable
// within one report: the machine, its load and the lab set them.
package perf
