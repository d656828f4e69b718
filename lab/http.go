package lab

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// UploadPath is the Backend endpoint that reads a request body of any size
// and answers with an UploadReply.
const UploadPath = "/upload"

// UploadReply is what a Backend answers on UploadPath, as JSON.
type UploadReply struct {
	Backend string `json:"backend"`
	Bytes   int64  `json:"bytes"`
	SHA256  string `json:"sha256"` // hex
}

// Backend is an HTTP server inside a host's namespace that names itself:
// every path but UploadPath answers with the name and a newline, and the
// X-Backend header carries it on every answer. It counts what it served so
// tests can tell where a balancer sent each connection.
type Backend struct {
	Name string
	// Addr is the address it listens on.
	Addr net.Addr

	requests, conns atomic.Uint64
	srv             *http.Server
	served          chan error
}

// ServeHTTP starts a Backend called name on addr (such as "198.18.1.1:80",
// a VIP on the host's lo) inside h's namespace. Close stops it.
func ServeHTTP(h *Host, addr, name string) (*Backend, error) {
	ln, err := h.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	b := &Backend{Name: name, Addr: ln.Addr(), served: make(chan error, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc(UploadPath, b.upload)
	mux.HandleFunc("/", b.hello)
	b.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       30 * time.Second,
		ConnState: func(_ net.Conn, s http.ConnState) {
			if s == http.StateNew {
				b.conns.Add(1)
			}
		},
	}
	go func() { b.served <- b.srv.Serve(ln) }()
	return b, nil
}

func (b *Backend) hello(w http.ResponseWriter, _ *http.Request) {
	b.requests.Add(1)
	w.Header().Set("X-Backend", b.Name)
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, b.Name+"\n")
}

func (b *Backend) upload(w http.ResponseWriter, r *http.Request) {
	b.requests.Add(1)
	w.Header().Set("X-Backend", b.Name)
	sum := sha256.New()
	n, err := io.Copy(sum, r.Body)
	if err != nil {
		http.Error(w, fmt.Sprintf("lab: backend %s: read body: %v", b.Name, err), http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(UploadReply{Backend: b.Name, Bytes: n, SHA256: hex.EncodeToString(sum.Sum(nil))})
}

// Requests is how many requests the backend has answered or is answering.
func (b *Backend) Requests() uint64 { return b.requests.Load() }

// Conns is how many TCP connections the backend has accepted.
func (b *Backend) Conns() uint64 { return b.conns.Load() }

// Close stops the server at once, closing its listener and connections,
// and waits for its serving goroutine.
func (b *Backend) Close() error {
	err := b.srv.Close()
	if serr := <-b.served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	b.served <- http.ErrServerClosed // a second Close returns at once
	if err != nil {
		return fmt.Errorf("lab: backend %s: close: %w", b.Name, err)
	}
	return nil
}

// HTTPClient returns a client whose connections are made inside h's
// namespace. Keep-alives are off, so every request is a new TCP
// connection from a new source port: a new flow for a balancer to place.
// Dials give up after 5 s, answers after 10 s, whole requests after 30 s.
// URLs must use literal IPs. No proxy from the environment is used.
func HTTPClient(h *Host) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
				ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
				defer cancel()
				return h.Dial(ctx, network, addr)
			},
			DisableKeepAlives:     true,
			ResponseHeaderTimeout: 10 * time.Second,
		},
	}
}

// Get fetches url with c and returns the name of the Backend that answered.
func Get(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", fmt.Errorf("lab: get %s: %w", url, err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", fmt.Errorf("lab: get %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if err != nil {
		return "", fmt.Errorf("lab: get %s: read: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("lab: get %s: %s", url, resp.Status)
	}
	return strings.TrimSpace(string(body)), nil
}

// Upload posts body to base+UploadPath with c (base like
// "http://198.18.1.1") and returns the backend's reply.
func Upload(ctx context.Context, c *http.Client, base string, body []byte) (UploadReply, error) {
	url := strings.TrimSuffix(base, "/") + UploadPath
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return UploadReply{}, fmt.Errorf("lab: upload to %s: %w", url, err)
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := c.Do(req)
	if err != nil {
		return UploadReply{}, fmt.Errorf("lab: upload to %s: %w", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return UploadReply{}, fmt.Errorf("lab: upload to %s: %s", url, resp.Status)
	}
	var r UploadReply
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4096)).Decode(&r); err != nil {
		return UploadReply{}, fmt.Errorf("lab: upload to %s: decode reply: %w", url, err)
	}
	return r, nil
}
