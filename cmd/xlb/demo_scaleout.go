package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/lab/ecmp"
)

// demoSOPrefix names the scale-out demo's namespaces (xlbso-router, ...).
const demoSOPrefix = "xlbso"

// demoScaleOut is `xlb demo --balancers n`: n balancers behind a BIRD
// router with ECMP, each running `xlb run` with the same VIP and announcing
// it over BGP; requests spread over the balancers and land on the backends
// by weight; then one balancer is killed (kill -9) while requests keep
// coming, and the demo shows the router's route converge and every request
// still answered.
func demoScaleOut(ctx context.Context, e *env, bin, dir string, n, requests, parallel int, verbose bool) int {
	out := e.stdout
	fail := func(err error) int {
		fmt.Fprintf(e.stderr, "xlb demo: %v (rerun with -v for xlb's log)\n", err)
		return exitFail
	}
	fmt.Fprintf(out, "building the lab: namespaces %s-{router,lb1..lb%d,b1..b3,c1}; BIRD 2 on the router\n", demoSOPrefix, n)
	l, err := newSOLab(demoSOPrefix, bin, dir, n, 3)
	if err != nil {
		return fail(err)
	}
	defer func() {
		if err := l.Close(); err != nil {
			fmt.Fprintf(e.stderr, "xlb demo: teardown: %v\n", err)
		}
		fmt.Fprintln(out, "lab torn down")
	}()
	client := l.ClientHosts[0]
	fmt.Fprintf(out, "  client %s -> router %s (ECMP over L4 hashes, merge paths) -> balancers", client.Name, l.RouterAddr)
	lbs := make([]netip.Addr, n)
	for i, b := range l.Balancers {
		lbs[i] = b.Addr
		fmt.Fprintf(out, " %s", b.Addr)
	}
	fmt.Fprintln(out)
	for i, h := range l.Backends {
		fmt.Fprintf(out, "  backend %s %s weight %d: HTTP on VIP %s, xlb decap attached\n", h.Name, h.Addr, demoWeights[i], ecmp.VIP)
	}
	vips := []soVIP{{ecmp.VIP, 80, demoWeights}}
	var logw io.Writer = io.Discard
	if verbose {
		logw = e.stderr
	}
	for i := range l.Balancers {
		cfg := l.config(i, vips, 2*time.Second, "")
		if i == 0 {
			fmt.Fprintf(out, "\nstarting `xlb run` on every balancer; lb1's config (the others list the backends in another order):\n%s\n", indent(cfg))
		}
		if err := l.start(i, cfg, logw); err != nil {
			return fail(err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	err = l.WaitNexthops(wctx, netip.PrefixFrom(ecmp.VIP, 32), lbs...)
	cancel()
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(out, "every balancer announces the VIP; the router's route:\n%s\n", indent(l.routerRoute(ecmp.VIP)))

	fmt.Fprintf(out, "sending %d HTTP requests from the client, each on its own TCP connection...\n", requests)
	before, err := l.rxPackets()
	if err != nil {
		return fail(err)
	}
	served, failed := requestsFrom(ctx, client, ecmp.VIP, requests, parallel)
	if ctx.Err() != nil {
		fmt.Fprintln(e.stderr, "interrupted")
		return exitFail
	}
	after, err := l.rxPackets()
	if err != nil {
		return fail(err)
	}
	printShares(out, l, served, failed)
	fmt.Fprintf(out, "packets each balancer received:")
	for i := range l.Balancers {
		fmt.Fprintf(out, "  lb%d %d", i+1, after[i]-before[i])
	}
	fmt.Fprintln(out)

	// Kill the last balancer while requests keep coming.
	victim := n - 1
	fmt.Fprintf(out, "\nrequests keep coming (%d in flight at a time); kill -9 of lb%d's xlb...\n", parallel, victim+1)
	var total, bad atomic.Int64
	var mu sync.Mutex
	during := map[string]int{}
	lctx, stopLoad := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for lctx.Err() == nil {
			s, f := requestsFrom(lctx, client, ecmp.VIP, parallel, parallel)
			mu.Lock()
			for k, v := range s {
				during[k] += v
				total.Add(int64(v))
			}
			mu.Unlock()
			if lctx.Err() == nil {
				bad.Add(int64(f))
				total.Add(int64(f))
			}
		}
	}()
	time.Sleep(time.Second)
	t0 := time.Now()
	if err := l.stop(victim, syscall.SIGKILL, 10*time.Second); err != nil {
		stopLoad()
		wg.Wait()
		return fail(err)
	}
	wctx, cancel = context.WithTimeout(ctx, 30*time.Second)
	err = l.WaitNexthops(wctx, netip.PrefixFrom(ecmp.VIP, 32), lbs[:victim]...)
	cancel()
	converged := time.Since(t0)
	time.Sleep(2 * time.Second) // and on, through the remaining balancers
	stopLoad()
	wg.Wait()
	if err != nil {
		return fail(err)
	}
	fmt.Fprintf(out, "the router withdrew lb%d's route %s after the kill (its BGP session closed with the process):\n%s\n",
		victim+1, converged.Round(10*time.Millisecond), indent(l.routerRoute(ecmp.VIP)))
	fmt.Fprintf(out, "requests sent across the kill: %d answered, %d failed; by backend:", total.Load()-bad.Load(), bad.Load())
	for _, h := range l.Backends {
		fmt.Fprintf(out, " %s %d", h.Name, during[h.Name])
	}
	fmt.Fprintln(out)

	fmt.Fprintln(out, "\nafter the kill, the same again through the remaining balancers:")
	served2, failed2 := requestsFrom(ctx, client, ecmp.VIP, requests, parallel)
	printShares(out, l, served2, failed2)
	if st, err := l.bgpStatus(0); err == nil {
		fmt.Fprintln(out, "\nxlb bgp (lb1):")
		printBGP(out, &st)
	}
	fmt.Fprintln(out)
	if failed+failed2 > 0 || bad.Load() > 0 {
		return exitFail
	}
	return exitOK
}

// printShares prints how many requests each backend served against its
// configured share.
func printShares(out io.Writer, l *soLab, served map[string]int, failed int) {
	total, weights := 0, 0
	for _, v := range served {
		total += v
	}
	for _, w := range demoWeights {
		weights += w
	}
	fmt.Fprintf(out, "\n%-8s %-14s %6s %9s %8s %7s\n", "backend", "address", "weight", "expected", "served", "share")
	for i, h := range l.Backends {
		share := 0.0
		if total > 0 {
			share = 100 * float64(served[h.Name]) / float64(total)
		}
		fmt.Fprintf(out, "%-8s %-14s %6d %8.1f%% %8d %6.1f%%\n", h.Name, h.Addr, demoWeights[i],
			100*float64(demoWeights[i])/float64(weights), served[h.Name], share)
	}
	fmt.Fprintf(out, "%d requests answered, %d failed\n", total, failed)
}
