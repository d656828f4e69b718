// SPDX-License-Identifier: (GPL-2.0-only OR MIT)

// lbcapture.h: `xlb capture` in native mode. While a capture runs, the lb
// program hands every frame to xlb_lb_capture (a tail call), which runs the
// same lb_process and copies each frame the filter matches into a BPF ring
// buffer, as received and as sent, with what the program did with it.
//
// Cost while no capture runs: one load of capture_on (a global in .bss,
// read through the map's memory) and a branch per frame; nothing else of
// this file is on that path. The capture path lives in its own program so
// that its stack (the copy's bookkeeping) does not add to the datapath's.
//
// Why a ring buffer (BPF_MAP_TYPE_RINGBUF) fed by bpf_ringbuf_output from a
// per-CPU scratch buffer: one ring for all CPUs keeps records in order and
// needs one reader (a perf buffer is one ring per CPU, each polled); and
// bpf_ringbuf_output takes a length known only at run time, so a record
// is as long as the bytes it keeps (a ringbuf reservation must have a
// constant size: every record would take the largest frame's room). The
// frame as received must be copied before lb_process rewrites it, and its
// verdict is known only after, hence the scratch buffer in between.
//
// A full ring loses the copy (bpf_ringbuf_output fails): the frame is
// forwarded as usual and cap_lost counts it per queue. Frames the program
// passes to the kernel (not for a VIP, fragments the VIP passes, co-located
// flows) are not captured: the kernel's stack sees them, and tcpdump with
// it; frames the firewall drops are counted by the firewall, not captured,
// as in AF_XDP mode where they never reach a worker.

#ifndef LBCAPTURE_H
#define LBCAPTURE_H

// CAP_MAX bounds the bytes a record keeps: a frame is at most a page (the
// program is not multi-buffer aware).
#define CAP_MAX 4096
// CAP_RING is the ring buffer's size: about 2000 frames of 1500 bytes
// between two reads (the reader wakes as records arrive).
#define CAP_RING (4 << 20)
// CAP_QUEUES: cap_lost's entries, one per RX queue (higher queues share the
// last).
#define CAP_QUEUES 256
#define CAP_NO_BACKEND 0xffffffff

// Directions (capture.RX, capture.TX) and verdicts (capture.VerdictKind).
#define CAP_RX 1
#define CAP_TX 2
#define CAP_FORWARDED 0
#define CAP_DROPPED 1
#define CAP_ANSWERED 2

// capture_conf is the filter, written by Go before capture_on is set.
// Mirrored by lbCaptureConf in Go.
struct capture_conf {
	__u32 dir;     // CAP_RX | CAP_TX
	__u32 snaplen; // 1..CAP_MAX
	__s32 queue;   // -1: every queue
	__u32 pad;
	struct vip_key vip; // family 0: every VIP; port 0: every port
};

// capture_on: 1 while a capture runs (and xlb_lb_capture is in
// capture_prog). Globals: Go reads and writes them through the .bss map's
// memory.
__u32 capture_on;
struct capture_conf capture_conf;

// cap_hdr leads every record in the ring. Mirrored by lbCapHdr in Go.
struct cap_hdr {
	__u64 ns;       // bpf_ktime_get_ns
	__u32 orig_len; // the frame's length
	__u32 backend;  // CAP_FORWARDED: the backend's ID
	__u16 queue;
	__u16 cpu;
	__u16 cap_len; // bytes that follow
	__u8 dir;      // CAP_RX or CAP_TX
	__u8 verdict;  // CAP_FORWARDED, CAP_DROPPED, CAP_ANSWERED
	__u8 drop;     // CAP_DROPPED: the lb_counter of the reason
	__u8 pad[7];
};

// cap_scratch: a CPU's record under construction, and the drop counters
// before lb_process ran (the one that moved is the frame's drop reason).
struct cap_scratch {
	__u64 before[LB_COUNTER_MAX];
	struct cap_hdr hdr;
	__u8 data[CAP_MAX];
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, struct cap_scratch);
	__uint(max_entries, 1);
} cap_scratch SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, CAP_RING);
} capture_ring SEC(".maps");

// cap_lost: matching frames the full ring had no room for, per queue.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, __u64);
	__uint(max_entries, CAP_QUEUES);
} cap_lost SEC(".maps");

// capture_prog holds xlb_lb_capture at index 0 while a capture runs.
struct {
	__uint(type, BPF_MAP_TYPE_PROG_ARRAY);
	__type(key, __u32);
	__type(value, __u32);
	__uint(max_entries, 1);
} capture_prog SEC(".maps");

// capture_check is the whole cost of capture on the datapath: while a
// capture runs the frame goes to xlb_lb_capture, which does everything the
// datapath does and copies the frame. If the tail call fails (no program in
// capture_prog) the frame takes the usual path.
static __always_inline void capture_check(struct xdp_md *ctx)
{
	if (capture_on)
		bpf_tail_call(ctx, &capture_prog, 0);
}

// cap_len is how much of a frame of len bytes a record keeps: at most the
// snaplen and CAP_MAX, 0 if nothing (the caller then keeps nothing).
static __always_inline __u64 cap_len(__u32 len)
{
	__u64 snap = capture_conf.snaplen;

	return len < snap ? len : snap;
}

// CAP_BOUND returns from the caller unless n is in [1, CAP_MAX], in two
// compares the compiler may not merge (the asm hides n between them), so
// that the verifier sees both bounds on n's register; n is 64-bit so that
// no zero-extended copy stands in for it.
#define CAP_BOUND(n)                              \
	if ((n) > CAP_MAX)                        \
		return;                           \
	asm volatile("" : "+r"(n));               \
	if ((n) == 0)                             \
		return;

// cap_load copies the frame's first n bytes into s's data.
static __always_inline void cap_load(struct xdp_md *ctx, struct cap_scratch *s, __u64 n)
{
	s->hdr.cap_len = 0;
	CAP_BOUND(n)
	if (!bpf_xdp_load_bytes(ctx, 0, s->data, n))
		s->hdr.cap_len = n;
}

// cap_vip_match is capture.Filter.MatchRX: the frame parses and is to the
// filter's VIP (its address, protocol and, unless 0, port).
static __noinline int cap_vip_match(struct xdp_md *ctx)
{
	struct vip_key key = {};
	struct pkt p = {};
	struct vip_key *want = &capture_conf.vip;

	if (lb_parse(ctx, &p, &key) != 0 || p.proto != want->proto || key.family != want->family)
		return 0;
	if (want->port && p.dport != want->port)
		return 0;
	if (p.family == 4)
		return p.dst == word(want->addr, 0);
	return !((word(p.dst6, 0) ^ word(want->addr, 0)) | (word(p.dst6, 1) ^ word(want->addr, 1)) |
		 (word(p.dst6, 2) ^ word(want->addr, 2)) | (word(p.dst6, 3) ^ word(want->addr, 3)));
}

// cap_rx starts a frame's record: it returns the CPU's scratch buffer with
// the frame as received and the drop counters, or NULL if the filter does
// not want the frame.
static __noinline struct cap_scratch *cap_rx(struct xdp_md *ctx)
{
	__u32 zero = 0;
	struct cap_scratch *s = bpf_map_lookup_elem(&cap_scratch, &zero);
	struct lb_counters *cnt = bpf_map_lookup_elem(&counters, &zero);

	if (!s || !cnt)
		return NULL;
	if (capture_conf.queue >= 0 && ctx->rx_queue_index != (__u32)capture_conf.queue)
		return NULL;
	if (capture_conf.vip.family && !cap_vip_match(ctx))
		return NULL;
	for (int i = LB_DROP_BAD_IP_VERSION; i < LB_COUNTER_MAX; i++)
		s->before[i] = cnt->c[i];
	__u32 len = bpf_xdp_get_buff_len(ctx);
	s->hdr.orig_len = len;
	cap_load(ctx, s, cap_len(len));
	return s;
}

// cap_out sends the record in s to the ring, or counts it lost.
static __always_inline void cap_out(struct cap_scratch *s)
{
	__u64 n = sizeof(s->hdr) + s->hdr.cap_len;

	asm volatile("" : "+r"(n)); // the bound must be checked on n itself
	if (n > sizeof(s->hdr) + CAP_MAX)
		return;
	if (bpf_ringbuf_output(&capture_ring, &s->hdr, n, 0)) {
		__u32 q = s->hdr.queue < CAP_QUEUES ? s->hdr.queue : CAP_QUEUES - 1;
		__u64 *lost = bpf_map_lookup_elem(&cap_lost, &q);
		if (lost)
			*lost += 1;
	}
}

// cap_done finishes the frame's records once lb_process returned act,
// having picked backend (CAP_NO_BACKEND: none).
static __noinline void cap_done(struct xdp_md *ctx, struct cap_scratch *s, int act, __u32 backend)
{
	__u32 zero = 0;
	struct lb_counters *cnt = bpf_map_lookup_elem(&counters, &zero);

	if (!s || !cnt)
		return;
	struct cap_hdr *h = &s->hdr;
	h->ns = bpf_ktime_get_ns();
	h->queue = ctx->rx_queue_index;
	h->cpu = bpf_get_smp_processor_id();
	h->backend = backend;
	h->drop = 0;
	if (act == XDP_TX) {
		h->verdict = backend == CAP_NO_BACKEND ? CAP_ANSWERED : CAP_FORWARDED;
	} else if (act == XDP_DROP) {
		h->verdict = CAP_DROPPED;
		for (int i = LB_DROP_BAD_IP_VERSION; i < LB_COUNTER_MAX; i++)
			if (cnt->c[i] != s->before[i])
				h->drop = i;
		if (!h->drop)
			return; // the firewall's
	} else {
		return; // passed to the kernel
	}
	if (capture_conf.dir & CAP_RX) {
		h->dir = CAP_RX;
		cap_out(s);
	}
	if (act != XDP_TX || !(capture_conf.dir & CAP_TX))
		return;
	__u32 len = bpf_xdp_get_buff_len(ctx);
	h->dir = CAP_TX;
	h->orig_len = len;
	cap_load(ctx, s, cap_len(len));
	cap_out(s);
}

#endif
