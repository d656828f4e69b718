package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Request is what a client sends. Command names the handler ("stats").
type Request struct {
	Command string          `json:"command"`
	Args    json.RawMessage `json:"args,omitempty"`
}

// Response carries either a result or an error message, never both.
type Response struct {
	Error  string          `json:"error,omitempty"`
	Result json.RawMessage `json:"result,omitempty"`
}

// Handler answers one command. The returned value is encoded as JSON.
type Handler func(ctx context.Context, args json.RawMessage) (any, error)

// ErrInUse is returned by Listen when another instance answers on the socket.
var ErrInUse = errors.New("control socket in use by a running instance")

// maxRequest bounds what a client may send: requests are a few bytes.
const maxRequest = 1 << 20

// ioTimeout bounds one exchange so a stuck client cannot hold a goroutine.
const ioTimeout = 5 * time.Second

// Server serves the control socket.
type Server struct {
	path     string
	ln       *net.UnixListener
	handlers map[string]Handler
	wg       sync.WaitGroup
	once     sync.Once
}

// Listen creates the socket at path (and its directory, mode 0700).
func Listen(path string, handlers map[string]Handler) (*Server, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("control: socket path %q is not absolute", path)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("control: create socket directory: %w", err)
	}
	if _, err := os.Stat(path); err == nil {
		conn, err := net.DialTimeout("unix", path, time.Second)
		if err == nil {
			conn.Close()
			return nil, fmt.Errorf("control: %s: %w", path, ErrInUse)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("control: remove stale socket: %w", err)
		}
	}
	// The umask makes the socket 0600 from its creation on: a chmod after
	// bind would leave a window in which anyone could connect.
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control: listen %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)
	s := &Server{path: path, ln: ln, handlers: handlers}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Path is the socket's file name.
func (s *Server) Path() string { return s.path }

// Close stops accepting, waits for exchanges in flight and removes the file.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		err = s.ln.Close()
		s.wg.Wait()
	})
	return err
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			s.handle(conn)
		}()
	}
}

func (s *Server) handle(conn *net.UnixConn) {
	_ = conn.SetDeadline(time.Now().Add(ioTimeout))
	enc := json.NewEncoder(conn)
	if err := checkPeer(conn); err != nil {
		_ = enc.Encode(Response{Error: err.Error()})
		return
	}
	var req Request
	if err := json.NewDecoder(io.LimitReader(conn, maxRequest)).Decode(&req); err != nil {
		_ = enc.Encode(Response{Error: fmt.Sprintf("bad request: %v", err)})
		return
	}
	h, ok := s.handlers[req.Command]
	if !ok {
		_ = enc.Encode(Response{Error: fmt.Sprintf("unknown command %q", req.Command)})
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
	defer cancel()
	v, err := h(ctx, req.Args)
	if err != nil {
		_ = enc.Encode(Response{Error: err.Error()})
		return
	}
	raw, err := json.Marshal(v)
	if err != nil {
		_ = enc.Encode(Response{Error: fmt.Sprintf("encode result: %v", err)})
		return
	}
	_ = enc.Encode(Response{Result: raw})
}

// checkPeer refuses peers that are neither root nor the server's own user.
func checkPeer(conn *net.UnixConn) error {
	raw, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return err
	}
	if credErr != nil {
		return fmt.Errorf("peer credentials: %w", credErr)
	}
	if cred.Uid != 0 && int(cred.Uid) != os.Geteuid() {
		return fmt.Errorf("permission denied for uid %d", cred.Uid)
	}
	return nil
}

// Call sends one command to the server at path and decodes its result into out
// (which may be nil).
func Call(ctx context.Context, path, command string, args, out any) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return fmt.Errorf("control: connect %s (is xlb running?): %w", path, err)
	}
	defer conn.Close()
	deadline := time.Now().Add(ioTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = conn.SetDeadline(deadline)
	req := Request{Command: command}
	if args != nil {
		if req.Args, err = json.Marshal(args); err != nil {
			return fmt.Errorf("control: encode %s args: %w", command, err)
		}
	}
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return fmt.Errorf("control: send %s: %w", command, err)
	}
	var resp Response
	if err := json.NewDecoder(io.LimitReader(conn, 64<<20)).Decode(&resp); err != nil {
		return fmt.Errorf("control: read %s reply: %w", command, err)
	}
	if resp.Error != "" {
		return fmt.Errorf("control: %s: %s", command, resp.Error)
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(resp.Result, out); err != nil {
		return fmt.Errorf("control: decode %s reply: %w", command, err)
	}
	return nil
}
