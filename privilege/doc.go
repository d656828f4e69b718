// Package privilege drops the capabilities `xlb run` no longer needs once
// its datapath is up.
//
// Setup needs a lot: loading and attaching XDP programs (CAP_BPF,
// CAP_NET_ADMIN), creating AF_XDP sockets (CAP_NET_RAW), pinning UMEM
// (CAP_IPC_LOCK, unless RLIMIT_MEMLOCK is unlimited). Running needs little,
// because the kernel checks most of those capabilities when an object is
// created, not when its file descriptor is used later: a worker polls and
// kicks its socket, a reload writes BPF maps through their descriptors, the
// bpf_link goes away when its descriptor is closed, and health checks are
// ordinary TCP and HTTP clients. CAP_BPF goes too: every map, the native
// capture's ring buffer and the splice table included, is created at load
// and used later only through its descriptor or memory mapping. Drop
// therefore keeps only Kept:
//
//   - CAP_NET_ADMIN: the next-hop resolver asks the kernel to resolve a
//     backend's neighbour entry (RTM_NEWNEIGH with NTF_USE), and rtnetlink
//     checks CAP_NET_ADMIN on every such request. A backend added by a
//     reload, or one whose neighbour entry expired, needs it at any time.
//     It is also what attaching an XDP program takes, which a capture
//     program would, and what TCP_REPAIR takes, which the splice proxy
//     sets on both sockets of every pair it hands to the datapath. Without
//     it a backend added by a reload never gets a next hop
//     (TestLeastPrivilege in cmd/xlb). (The raw sockets that reset a
//     spliced pair's peers are opened at start, so CAP_NET_RAW goes.)
//   - CAP_NET_BIND_SERVICE: the splice proxy listens on each splice VIP's
//     port, and a reload may add one below 1024 (443 above all), which the
//     kernel allows only with it (net.ipv4.ip_unprivileged_port_start).
//     Without it such a reload fails with "permission denied"
//     (TestLeastPrivilege adds one on 443 after the drop).
//
// Everything else goes from the permitted and effective sets, the
// inheritable and ambient sets are cleared, the bounding set is cut down to
// Kept (when the process holds CAP_SETPCAP to do so; under systemd the unit's
// CapabilityBoundingSet already bounds it) and no_new_privs is set, so not
// even an execve of a set-user-ID or file-capability program can raise them
// again.
//
// Capabilities are per thread in Linux, and Go runs goroutines on many OS
// threads, among them the workers' locked ones. A capset on one thread would
// leave the others privileged, so every change goes through libcap's psx
// mechanism, which runs the system call on every thread of the process: with
// cgo, libpsx signals each thread; without cgo, syscall.AllThreadsSyscall
// does it (which refuses to run in a cgo binary, so the build decides and
// psx picks the matching one; xlb needs no special build flags either way).
// Threads created later are cloned from an already changed one.
package privilege
