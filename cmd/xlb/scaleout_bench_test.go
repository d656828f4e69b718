package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/xlbproject/xlb/internal/testenv"
	"github.com/xlbproject/xlb/lab"
	"github.com/xlbproject/xlb/lab/ecmp"
	"github.com/xlbproject/xlb/lab/xlbbin"
)

// BenchmarkScaleOut measures issue 11 item 4 in the ECMP lab: HTTP
// requests per second (each a new connection, 16 in flight) through 1, 2
// and 3 balancers, with the CPU each balancer's xlb used; the throughput
// of streamConns long TCP streams (client to backends, counted at the
// receivers over streamTime) through 1, 2 and 3 balancers, with the same
// CPU figures; then, once per
// way of losing a balancer (kill -9, frozen until the 3 s hold time
// expires, SIGTERM with a 1 s drain), the time to the router's withdrawal
// and the slowest new connection started after the loss (those hashed to
// the lost balancer wait for the withdrawal). On 2 vCPUs the client, the
// router, the balancers and the backends share the CPUs, so the gain from
// more balancers is bounded: the figures are printed, never asserted.
//
//	go test -run '^$' -bench ScaleOut -benchtime 2000x ./cmd/xlb
func BenchmarkScaleOut(b *testing.B) {
	testenv.Root(b, "creates network namespaces, runs BIRD and xlb")
	testenv.Tool(b, "bird")
	bin, err := xlbbin.Path()
	if err != nil {
		b.Fatal(err)
	}
	l, err := newSOLab("xsb", bin, b.TempDir(), 3, 3)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := l.Close(); err != nil {
			b.Error(err)
		}
	})
	received := startSinks(b, l.Backends)
	vips := []soVIP{{ecmp.VIP, 80, []int{1, 1, 1}}, {ecmp.VIP, streamPort, []int{1, 1, 1}}}
	cfg := func(i int) string { return l.config(i, vips, time.Second, "") }
	vip := netip.PrefixFrom(ecmp.VIP, 32)
	// running makes exactly the first k balancers run and announce.
	running := func(b *testing.B, k int) {
		b.Helper()
		var want []netip.Addr
		for i, x := range l.xlbs {
			switch {
			case i < k && x.cmd == nil:
				if err := l.start(i, cfg(i), io.Discard); err != nil {
					b.Fatal(err)
				}
			case i >= k && x.cmd != nil:
				if err := l.stop(i, syscall.SIGTERM, 20*time.Second); err != nil {
					b.Fatal(err)
				}
			}
			if i < k {
				want = append(want, l.Balancers[i].Addr)
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := l.WaitNexthops(ctx, vip, want...); err != nil {
			b.Fatal(err)
		}
	}
	client := l.ClientHosts[0]
	for k := 1; k <= 3; k++ {
		b.Run(fmt.Sprintf("balancers=%d", k), func(b *testing.B) {
			running(b, k)
			cpu0 := l.cpuTimes(b)
			b.ResetTimer()
			t0 := time.Now()
			_, failed := requestsFrom(context.Background(), client, ecmp.VIP, b.N, 16)
			elapsed := time.Since(t0)
			b.StopTimer()
			cpu1 := l.cpuTimes(b)
			if failed > 0 {
				b.Errorf("%d of %d requests failed", failed, b.N)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "req/s")
			if elapsed < 100*time.Millisecond {
				return // the probing run: too short for CPU ticks (10ms)
			}
			var per []string
			for i := range k {
				pct := 100 * (cpu1[i] - cpu0[i]).Seconds() / elapsed.Seconds()
				b.ReportMetric(pct, fmt.Sprintf("cpu%%_lb%d", i+1))
				per = append(per, fmt.Sprintf("lb%d %.1f%%", i+1, pct))
			}
			b.Logf("%d balancers: %d requests in %v (%.0f req/s); CPU of each xlb: %s", k, b.N, elapsed.Round(time.Millisecond), float64(b.N)/elapsed.Seconds(), strings.Join(per, ", "))
		})
	}
	for k := 1; k <= 3; k++ {
		b.Run(fmt.Sprintf("stream/balancers=%d", k), func(b *testing.B) {
			running(b, k)
			b.ResetTimer()
			// One window whatever b.N: it is a rate over a fixed time.
			bytes, elapsed, cpu, rx := l.streamThroughput(b, client, received)
			b.StopTimer()
			gbps := float64(bytes) * 8 / elapsed.Seconds() / 1e9
			b.ReportMetric(gbps, "Gbit/s")
			var per []string
			for i := range k {
				pct := 100 * cpu[i].Seconds() / elapsed.Seconds()
				b.ReportMetric(pct, fmt.Sprintf("cpu%%_lb%d", i+1))
				per = append(per, fmt.Sprintf("lb%d %.1f%% (%d packets)", i+1, pct, rx[i]))
			}
			b.Logf("%d balancers: %d streams moved %d bytes in %v (%.2f Gbit/s); CPU of each xlb (packets received): %s",
				k, streamConns, bytes, elapsed.Round(time.Millisecond), gbps, strings.Join(per, ", "))
		})
	}
	for _, tt := range []struct {
		name string
		sig  syscall.Signal
	}{{"kill-9", syscall.SIGKILL}, {"hold-time", syscall.SIGSTOP}, {"sigterm", syscall.SIGTERM}} {
		b.Run("failover="+tt.name, func(b *testing.B) {
			running(b, 3)
			b.ResetTimer()
			// New connections, 8 at a time, until a second after the
			// withdrawal; the slowest started after the loss is the
			// blackout of the flows hashed to the lost balancer.
			var mu sync.Mutex
			var slowest time.Duration
			failed := 0
			var lost time.Time
			stop := make(chan struct{})
			var wg sync.WaitGroup
			for range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						t0 := time.Now()
						_, _, err := vipGet(client, ecmp.VIP, 80)
						d := time.Since(t0)
						mu.Lock()
						if !lost.IsZero() && t0.After(lost) {
							if err != nil {
								failed++
							} else {
								slowest = max(slowest, d)
							}
						}
						mu.Unlock()
					}
				}()
			}
			time.Sleep(500 * time.Millisecond)
			x := l.xlbs[2]
			mu.Lock()
			lost = time.Now()
			mu.Unlock()
			stopped := make(chan error, 1)
			if tt.sig == syscall.SIGSTOP {
				if err := x.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
					b.Fatal(err)
				}
			} else {
				go func() { stopped <- l.stop(2, tt.sig, 30*time.Second) }()
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			err := l.WaitNexthops(ctx, vip, l.Balancers[0].Addr, l.Balancers[1].Addr)
			cancel()
			withdrawn := time.Since(lost)
			time.Sleep(time.Second)
			close(stop)
			wg.Wait()
			if err != nil {
				b.Fatal(err)
			}
			if tt.sig == syscall.SIGSTOP {
				stopped <- l.stop(2, syscall.SIGKILL, 10*time.Second)
			}
			if err := <-stopped; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(withdrawn.Seconds(), "s_to_withdrawal")
			b.ReportMetric(slowest.Seconds(), "s_slowest_new_conn")
			b.Logf("%s: router withdrew the route after %v; slowest new connection started after the loss took %v; %d failed",
				tt.name, withdrawn.Round(time.Millisecond), slowest.Round(time.Millisecond), failed)
		})
	}
}

// streamConns streams of streamTime each: enough streams that the
// router's L4 hash gives each of three balancers several, short enough to
// keep the benchmark bounded.
const (
	streamConns = 24
	streamTime  = 3 * time.Second
)

// startSinks runs, in every backend, a server on streamPort that reads and
// discards, counting what it received in the returned counter.
func startSinks(b *testing.B, backends []*lab.Host) *atomic.Int64 {
	b.Helper()
	var received atomic.Int64
	for _, h := range backends {
		ln, err := h.Listen("tcp", netip.AddrPortFrom(netip.IPv4Unspecified(), streamPort).String())
		if err != nil {
			b.Fatal(err)
		}
		wait := lab.Serve(ln, func(c net.Conn) {
			buf := make([]byte, 256<<10)
			for {
				n, err := c.Read(buf)
				received.Add(int64(n))
				if err != nil {
					return
				}
			}
		})
		b.Cleanup(func() {
			ln.Close()
			wait()
		})
	}
	return &received
}

// streamThroughput opens streamConns connections from client to the VIP's
// streamPort, sends on all of them for streamTime and returns the bytes
// the backends received in that window, its length, and the CPU used and
// packets received by each balancer's xlb meanwhile.
func (l *soLab) streamThroughput(b *testing.B, client *lab.Host, received *atomic.Int64) (int64, time.Duration, []time.Duration, []uint64) {
	b.Helper()
	conns := make([]net.Conn, 0, streamConns)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range streamConns {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c, err := client.Dial(ctx, "tcp", netip.AddrPortFrom(ecmp.VIP, streamPort).String())
		cancel()
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	// The writers stop at the deadline; the window is measured between
	// two snapshots of the receivers' counter taken while they all run.
	end := time.Now().Add(streamTime + time.Second)
	var wg sync.WaitGroup
	for _, c := range conns {
		if err := c.SetWriteDeadline(end); err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			buf := make([]byte, 64<<10)
			for {
				if _, err := c.Write(buf); err != nil {
					return
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond) // past slow start
	rx0, err := l.rxPackets()
	if err != nil {
		b.Fatal(err)
	}
	cpu0 := l.cpuTimes(b)
	bytes0, t0 := received.Load(), time.Now()
	time.Sleep(streamTime)
	bytes1, elapsed := received.Load(), time.Since(t0)
	cpu1 := l.cpuTimes(b)
	rx1, err := l.rxPackets()
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range conns {
		c.Close()
	}
	wg.Wait()
	cpu := make([]time.Duration, len(cpu0))
	rx := make([]uint64, len(rx0))
	for i := range cpu {
		cpu[i], rx[i] = cpu1[i]-cpu0[i], rx1[i]-rx0[i]
	}
	return bytes1 - bytes0, elapsed, cpu, rx
}

// cpuTimes is the CPU time (user + system) each running balancer's xlb
// has used so far, from /proc/PID/stat (ip netns exec execs xlb in place).
func (l *soLab) cpuTimes(b *testing.B) []time.Duration {
	b.Helper()
	const ticks = 100 // USER_HZ
	out := make([]time.Duration, len(l.xlbs))
	for i, x := range l.xlbs {
		if x.cmd == nil {
			continue
		}
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", x.cmd.Process.Pid))
		if err != nil {
			b.Fatal(err)
		}
		// Fields after the command name (which may hold spaces): utime and
		// stime are the 14th and 15th of the line, the 12th and 13th here.
		rest := string(data[strings.LastIndexByte(string(data), ')')+2:])
		f := strings.Fields(rest)
		u, _ := strconv.ParseInt(f[11], 10, 64)
		s, _ := strconv.ParseInt(f[12], 10, 64)
		out[i] = time.Duration(u+s) * time.Second / ticks
	}
	return out
}
