package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/xlbproject/xlb/control"
	"github.com/xlbproject/xlb/engine"
	"github.com/xlbproject/xlb/lab"
)

// demoPrefix names the demo's namespaces (xlbdemo-client, xlbdemo-lb, ...).
const demoPrefix = "xlbdemo"

var demoWeights = []int{1, 1, 2}

func cmdDemo(e *env, args []string) int {
	fs := newFlags(e, "demo", "[--requests N] [--parallel N] [--balancers N] [-v]")
	requests := fs.Int("requests", 400, "HTTP requests to send, each on a new TCP connection")
	parallel := fs.Int("parallel", 8, "requests in flight at once")
	verbose := fs.Bool("v", false, "show xlb's own log")
	balancers := fs.Int("balancers", 0, "scale-out demo: this many balancers (2 to 8) behind a BGP router with ECMP (BIRD 2), one of them killed halfway")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *balancers != 0 && (*balancers < 2 || *balancers > 8) {
		fmt.Fprintln(e.stderr, "xlb demo: --balancers must be from 2 to 8")
		return exitUsage
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(e.stderr, "xlb demo needs root: it creates network namespaces and attaches XDP programs")
		return exitFail
	}
	if *requests < 1 || *parallel < 1 {
		fmt.Fprintln(e.stderr, "xlb demo: --requests and --parallel must be positive")
		return exitUsage
	}
	bin, err := os.Executable()
	if err != nil {
		fmt.Fprintf(e.stderr, "xlb demo: %v\n", err)
		return exitFail
	}
	dir, err := os.MkdirTemp("", "xlbdemo")
	if err != nil {
		fmt.Fprintf(e.stderr, "xlb demo: %v\n", err)
		return exitFail
	}
	defer os.RemoveAll(dir)

	// Ctrl-C or SIGTERM cancels the run; the deferred teardown still runs.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	if *balancers > 0 {
		return demoScaleOut(ctx, e, bin, dir, *balancers, *requests, *parallel, *verbose)
	}
	out := e.stdout
	fmt.Fprintf(out, "building the lab: namespaces %s-{client,lb,be1,be2,be3} on one bridge\n", demoPrefix)
	l, err := newLBLab(demoPrefix, bin, dir)
	if err != nil {
		fmt.Fprintf(e.stderr, "xlb demo: %v\n", err)
		return exitFail
	}
	defer func() {
		if err := l.Close(); err != nil {
			fmt.Fprintf(e.stderr, "xlb demo: teardown: %v\n", err)
		}
		fmt.Fprintln(out, "lab torn down")
	}()
	fmt.Fprintf(out, "  client %s (mtu %d) -> VIP %s:80 via lb %s\n", labClient.Addr(), clientMTU, labVIP, labLB.Addr())
	for i, h := range l.backends {
		fmt.Fprintf(out, "  backend %s %s weight %d: HTTP on the VIP, xlb decap attached\n", h.Name, labBackends[i].Addr(), demoWeights[i])
	}
	cfg := configText(l.socketPath(), 80, demoWeights)
	fmt.Fprintf(out, "\nstarting `xlb run` in %s with:\n%s\n", l.lb.NS, indent(cfg))
	var logw io.Writer = io.Discard
	if *verbose {
		logw = e.stderr
	}
	if err := l.startXLB(cfg, logw); err != nil {
		fmt.Fprintf(e.stderr, "xlb demo: %v (rerun with -v for xlb's log)\n", err)
		return exitFail
	}

	fmt.Fprintf(out, "sending %d HTTP requests from the client, each on its own TCP connection...\n", *requests)
	served, failed := sendRequests(ctx, l, *requests, *parallel)
	if ctx.Err() != nil {
		fmt.Fprintln(e.stderr, "interrupted")
		return exitFail
	}
	var total int
	for _, n := range served {
		total += n
	}
	fmt.Fprintf(out, "\n%-8s %-14s %6s %9s %8s %7s\n", "backend", "address", "weight", "expected", "served", "share")
	weightSum := 0
	for _, w := range demoWeights {
		weightSum += w
	}
	for i, h := range l.backends {
		share := 0.0
		if total > 0 {
			share = 100 * float64(served[h.Name]) / float64(total)
		}
		fmt.Fprintf(out, "%-8s %-14s %6d %8.1f%% %8d %6.1f%%\n", h.Name, labBackends[i].Addr(), demoWeights[i],
			100*float64(demoWeights[i])/float64(weightSum), served[h.Name], share)
	}
	fmt.Fprintf(out, "%d requests answered, %d failed\n\n", total, failed)

	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var st engine.Stats
	if err := control.Call(sctx, l.socketPath(), "stats", nil, &st); err != nil {
		fmt.Fprintf(e.stderr, "xlb demo: %v\n", err)
		return exitFail
	}
	fmt.Fprintln(out, "xlb stats:")
	printStats(out, st)
	fmt.Fprintln(out)
	if err := l.stopXLB(); err != nil {
		fmt.Fprintf(e.stderr, "xlb demo: %v\n", err)
		return exitFail
	}
	fmt.Fprintln(out, "xlb stopped on SIGTERM and detached")
	if failed > 0 {
		return exitFail
	}
	return exitOK
}

// sendRequests makes n GET requests from the lab's client to its VIP with
// at most parallel in flight and counts the answers by backend name.
func sendRequests(ctx context.Context, l *lbLab, n, parallel int) (served map[string]int, failed int) {
	return requestsFrom(ctx, l.client, labVIP, n, parallel)
}

// requestsFrom makes n GET requests from h to vip with at most parallel in
// flight and counts the answers by backend name.
func requestsFrom(ctx context.Context, h *lab.Host, vip netip.Addr, n, parallel int) (served map[string]int, failed int) {
	client := lab.HTTPClient(h)
	url := fmt.Sprintf("http://%s/", vip)
	var mu sync.Mutex
	served = map[string]int{}
	jobs := make(chan struct{})
	var wg sync.WaitGroup
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				name, err := lab.Get(ctx, client, url)
				mu.Lock()
				if err != nil {
					failed++
				} else {
					served[name]++
				}
				mu.Unlock()
			}
		}()
	}
	for range n {
		select {
		case jobs <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(jobs)
	wg.Wait()
	return served, failed
}

// indent prefixes every line of s with four spaces.
func indent(s string) string {
	body, nl := strings.CutSuffix(s, "\n")
	out := "    " + strings.ReplaceAll(body, "\n", "\n    ")
	if nl {
		out += "\n"
	}
	return out
}
