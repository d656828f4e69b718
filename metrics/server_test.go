package metrics

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/xlbproject/xlb/internal/testenv"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// serve runs a real Server for src on a loopback port until the test ends.
func serve(t *testing.T, src Source) string {
	t.Helper()
	s, err := Listen(Options{Listen: "127.0.0.1:0"}, src, quiet())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	return "http://" + s.Addr().String()
}

func get(t *testing.T, url, accept string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(body)
}

// TestServerNegotiates: a Prometheus scraper's Accept header gets
// OpenMetrics; a plain client gets the classic text format.
func TestServerNegotiates(t *testing.T) {
	base := serve(t, afxdpSnapshot())
	const prometheusAccept = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
	resp, body := get(t, base+"/metrics", prometheusAccept)
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "application/openmetrics-text") {
		t.Fatalf("OpenMetrics scrape: %s, Content-Type %q", resp.Status, ct)
	}
	for _, want := range []string{
		"# TYPE xlb_rx_packets counter\n",               // OpenMetrics names the family without _total
		`xlb_rx_packets_total{queue="0"} 1000.0` + "\n", // and every value a float
		`xlb_backend_state{backend="198.18.0.12",state="down",vip="198.18.100.1:80/tcp"} 1.0` + "\n",
		"# TYPE xlb_build_info gauge\n",
		"process_start_time_seconds ",
		"go_goroutines ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("OpenMetrics body lacks %q", want)
		}
	}
	if !strings.HasSuffix(body, "# EOF\n") {
		t.Errorf("OpenMetrics body does not end with # EOF")
	}

	resp, body = get(t, base+"/metrics", "")
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Fatalf("plain scrape: %s, Content-Type %q", resp.Status, ct)
	}
	if !strings.Contains(body, "# TYPE xlb_rx_packets_total counter\n") || strings.Contains(body, "# EOF") {
		t.Errorf("text format body is not the classic format:\n%s", body)
	}
}

func TestServerHealthAndReadiness(t *testing.T) {
	src := afxdpSnapshot()
	src.ready = errors.New("queue 1 worker stopped: poll: bad file descriptor")
	base := serve(t, src)
	for _, tc := range []struct {
		path string
		code int
		body string
	}{
		{"/healthz", http.StatusOK, "ok\n"},
		{"/readyz", http.StatusServiceUnavailable, "not ready: queue 1 worker stopped: poll: bad file descriptor\n"},
		{"/nothing", http.StatusNotFound, ""},
	} {
		resp, body := get(t, base+tc.path, "")
		if resp.StatusCode != tc.code || (tc.body != "" && body != tc.body) {
			t.Errorf("GET %s: %s %q, want %d %q", tc.path, resp.Status, body, tc.code, tc.body)
		}
	}
	src.ready = nil
	if resp, body := get(t, base+"/readyz", ""); resp.StatusCode != http.StatusOK || body != "ready\n" {
		t.Errorf("GET /readyz when ready: %s %q", resp.Status, body)
	}
	resp, err := http.Post(base+"/metrics", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /metrics: %s, want 405", resp.Status)
	}
}

// TestServerShutdown: Shutdown returns once the server is down, and the
// port is free again.
func TestServerShutdown(t *testing.T) {
	s, err := Listen(Options{Listen: "127.0.0.1:0"}, afxdpSnapshot(), quiet())
	if err != nil {
		t.Fatal(err)
	}
	addr := s.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Error("server still answers after Shutdown")
	}
	again, err := Listen(Options{Listen: addr}, afxdpSnapshot(), quiet())
	if err != nil {
		t.Fatalf("port not free after Shutdown: %v", err)
	}
	if err := again.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestServerLogsListenerErrors: a listener that fails under the running
// server is logged, not swallowed.
func TestServerLogsListenerErrors(t *testing.T) {
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	s, err := Listen(Options{Listen: "127.0.0.1:0"}, afxdpSnapshot(), log)
	if err != nil {
		t.Fatal(err)
	}
	s.ln.Close() // the listener dies under the server
	<-s.done     // the serving goroutine logged and returned: logged is ours
	if out := logged.String(); !strings.Contains(out, "metrics endpoint stopped serving") || !strings.Contains(out, "use of closed network connection") {
		t.Errorf("log after the listener failed: %q", out)
	}
	if err := s.Shutdown(t.Context()); err != nil {
		t.Errorf("Shutdown after the listener failed: %v", err)
	}
}

// TestPromtoolCheck lints the whole exposition, xlb's metrics and the Go
// and process collectors', with Prometheus's own `promtool check metrics`
// (Debian package prometheus).
func TestPromtoolCheck(t *testing.T) {
	promtool := testenv.Tool(t, "promtool")
	for name, src := range map[string]Source{"afxdp": afxdpSnapshot(), "native": nativeSnapshot()} {
		_, body := get(t, serve(t, src)+"/metrics", "")
		cmd := exec.CommandContext(t.Context(), promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		out, err := cmd.CombinedOutput()
		if err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("%s: promtool check metrics: %v\n%s", name, err, out)
		}
	}
}
