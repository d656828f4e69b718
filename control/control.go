package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
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

// Handler answers one command. The returned value is encoded as JSON. ctx
// ends when the server closes; a handler is never cut off by a timeout of
// the server's own, since its caller waits for its answer.
type Handler func(ctx context.Context, args json.RawMessage) (any, error)

// Streamer is a handler result that goes on after its answer: the server
// sends the Streamer itself, JSON-encoded, as the answer's result, then
// calls Stream with the connection, and closes the connection when Stream
// returns. ctx ends when the client closes its writing half (Stream.Stop),
// goes away, or the server closes: Stream should then finish what it
// sends and return. Each write to w must complete within 30 s, so a client
// that stops reading ends the stream instead of holding it; a failed write
// may have been partial, so Stream must write nothing after one.
type Streamer interface {
	Stream(ctx context.Context, w io.Writer) error
}

var (
	// ErrInUse is returned by Listen when another instance answers on the
	// socket.
	ErrInUse = errors.New("control socket in use by a running instance")
	// ErrNotSocket is returned by Listen when something other than a Unix
	// socket sits at the socket path: xlb removes only stale sockets.
	ErrNotSocket = errors.New("exists and is not a Unix socket; xlb removes only a stale socket there: move it away or set another control.socket")
	// ErrUnsafeDir is returned by Listen when the socket's directory could
	// be changed by another user than the server's.
	ErrUnsafeDir = errors.New("unsafe control socket directory")
	// ErrNotRunning is returned by Call when nothing listens at the path.
	ErrNotRunning = errors.New("no running xlb instance")
	// ErrNoAnswer is returned by Call when its context ended before the
	// server answered: the request may still be under way.
	ErrNoAnswer = errors.New("no answer")
)

// RemoteError is the error a server answered with: the request reached it
// and was refused or failed there.
type RemoteError struct {
	Command string
	Message string
}

func (e *RemoteError) Error() string { return fmt.Sprintf("control: %s: %s", e.Command, e.Message) }

// maxRequest bounds what a client may send: requests are a few bytes.
const maxRequest = 1 << 20

// maxResponse bounds what a client reads: stats of thousands of backends
// are a few MB.
const maxResponse = 64 << 20

// ioTimeout bounds reading a request and writing its answer, so that a
// client that stalls cannot hold a goroutine and a descriptor. The handler
// in between has no such bound.
const ioTimeout = 5 * time.Second

// Accept retries: the first wait after a failed accept and the cap of the
// doubling waits, as net/http's Server uses.
const (
	acceptRetryMin = 5 * time.Millisecond
	acceptRetryMax = time.Second
)

// Server serves the control socket.
type Server struct {
	path     string
	ln       *net.UnixListener
	handlers map[string]Handler
	log      *slog.Logger
	ctx      context.Context // handlers' context, cancelled by Close
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	once     sync.Once
}

// Listen creates the socket at path and serves handlers on it until Close.
// Accept failures are logged to log (nil: slog.Default()) and retried.
//
// The directory is created (mode 0700) if it is missing; an existing one
// must belong to the server's user and be writable by nobody else. A stale
// socket at path (nothing answers on it) is replaced; anything else there
// is an ErrNotSocket error and is left as it is.
func Listen(path string, handlers map[string]Handler, log *slog.Logger) (*Server, error) {
	if !filepath.IsAbs(path) {
		return nil, fmt.Errorf("control: socket path %q is not absolute", path)
	}
	if log == nil {
		log = slog.Default()
	}
	if err := prepareDir(filepath.Dir(path)); err != nil {
		return nil, err
	}
	if err := removeStale(path); err != nil {
		return nil, err
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
	s := &Server{path: path, ln: ln, handlers: handlers, log: log}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// CheckPath reports what Listen would refuse about path without creating,
// removing or connecting to anything: a directory others may write to
// (ErrUnsafeDir) or a file other than a socket at path (ErrNotSocket). A
// missing directory or socket is fine, and so is a live one.
func CheckPath(path string) error {
	if !filepath.IsAbs(path) {
		return fmt.Errorf("control: socket path %q is not absolute", path)
	}
	// The owner is not checked: `xlb check` may run as another user than
	// `xlb run` will.
	// What this user may not look at, `xlb run` will.
	err := checkDir(filepath.Dir(path), -1)
	if err != nil && !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, fs.ErrPermission) {
		return err
	}
	fi, err := os.Lstat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist), errors.Is(err, fs.ErrPermission):
		return nil
	case err != nil:
		return fmt.Errorf("control: %w", err)
	case fi.Mode().Type() != fs.ModeSocket:
		return fmt.Errorf("control: %s (%s) %w", path, fileType(fi.Mode()), ErrNotSocket)
	}
	return nil
}

// prepareDir creates dir 0700 if it is missing, else checks that nobody but
// the server's user (root) can add, remove or rename files in it: whoever
// can could replace the socket with one of their own. An existing directory
// is never chmod-ed: xlb cannot tell whether it made it, and loosening or
// tightening a directory others use (/run, /tmp) is not its call.
func prepareDir(dir string) error {
	err := checkDir(dir, os.Geteuid())
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return fmt.Errorf("control: create socket directory: %w", err)
		}
		return nil
	}
	return err
}

// checkDir checks an existing directory for prepareDir: that owner (unless
// -1) owns it and that nobody else may write to it.
func checkDir(dir string, owner int) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("control: socket directory: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("control: %s: %w: not a directory", dir, ErrUnsafeDir)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("control: %s: no owner information", dir)
	}
	if owner >= 0 && int(st.Uid) != owner {
		return fmt.Errorf("control: %s: %w: owned by uid %d, not %d (chown it or use another directory)", dir, ErrUnsafeDir, st.Uid, owner)
	}
	if perm := fi.Mode().Perm(); perm&0o022 != 0 {
		return fmt.Errorf("control: %s: %w: mode %04o lets other users replace the socket (chmod go-w it; 0700 is what xlb creates)", dir, ErrUnsafeDir, perm)
	}
	return nil
}

// removeStale removes a Unix socket at path that nothing answers on. A live
// socket is ErrInUse; a file of any other type is ErrNotSocket.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("control: %w", err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("control: %s (%s) %w", path, fileType(fi.Mode()), ErrNotSocket)
	}
	conn, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		conn.Close()
		return fmt.Errorf("control: %s: %w", path, ErrInUse)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("control: remove stale socket: %w", err)
	}
	return nil
}

func fileType(m fs.FileMode) string {
	switch m.Type() {
	case 0:
		return "a regular file"
	case fs.ModeDir:
		return "a directory"
	case fs.ModeSymlink:
		return "a symbolic link"
	case fs.ModeNamedPipe:
		return "a named pipe"
	case fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
		return "a device"
	}
	return "a special file"
}

// Path is the socket's file name.
func (s *Server) Path() string { return s.path }

// Close stops accepting, cancels the handlers' context, waits for exchanges
// in flight and removes the file.
func (s *Server) Close() error {
	var err error
	s.once.Do(func() {
		s.cancel()
		err = s.ln.Close()
		s.wg.Wait()
	})
	return err
}

// serve accepts until Close. A failed accept never ends it: running out of
// descriptors (EMFILE, ENFILE), memory (ENOBUFS, ENOMEM) or an aborted
// connection are passing states, and a control socket that stopped
// answering for good would leave a running instance that nobody can reload
// or read. It waits and retries instead, doubling the wait up to a cap, so
// a persistent failure costs a log line a second, not a busy loop.
func (s *Server) serve() {
	defer s.wg.Done()
	var delay time.Duration
	for {
		conn, err := s.ln.AcceptUnix()
		if err != nil {
			if s.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			delay = min(max(2*delay, acceptRetryMin), acceptRetryMax)
			s.log.Error("control socket: accept failed; retrying", "socket", s.path, "err", err, "retry_in", delay)
			select {
			case <-time.After(delay):
			case <-s.ctx.Done():
				return
			}
			continue
		}
		delay = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			defer conn.Close()
			s.handle(conn)
		}()
	}
}

func (s *Server) handle(conn *net.UnixConn) {
	// The deadline covers reading the request only: the handler may take
	// as long as it needs (a reload building large tables), and the client
	// waits for it.
	_ = conn.SetReadDeadline(time.Now().Add(ioTimeout))
	reply := func(r Response) {
		_ = conn.SetWriteDeadline(time.Now().Add(ioTimeout))
		_ = json.NewEncoder(conn).Encode(r)
	}
	if err := checkPeer(conn); err != nil {
		reply(Response{Error: err.Error()})
		return
	}
	req, err := decodeRequest(conn)
	if err != nil {
		reply(Response{Error: err.Error()})
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	h, ok := s.handlers[req.Command]
	if !ok {
		reply(Response{Error: fmt.Sprintf("unknown command %q", req.Command)})
		return
	}
	v, err := h(s.ctx, req.Args)
	if err != nil {
		reply(Response{Error: err.Error()})
		return
	}
	raw, err := json.Marshal(v)
	if err != nil {
		reply(Response{Error: fmt.Sprintf("encode result: %v", err)})
		return
	}
	reply(Response{Result: raw})
	if st, ok := v.(Streamer); ok {
		s.stream(conn, req.Command, st)
	}
}

// stream runs st on conn until it returns. Reading the connection is how
// the server learns that the client wants the stream to end: a client
// sends nothing after its request, so whatever the read returns (EOF after
// a half-close, an error after a reset) ends st's context.
func (s *Server) stream(conn *net.UnixConn, command string, st Streamer) {
	ctx, cancel := context.WithCancel(s.ctx)
	defer cancel()
	go func() {
		defer cancel()
		var b [1]byte
		_, _ = conn.Read(b[:])
	}()
	if err := st.Stream(ctx, deadlineWriter{conn}); err != nil {
		s.log.Warn("control socket: stream ended", "command", command, "err", err)
	}
}

// streamTimeout bounds each write of a stream: longer than ioTimeout, since
// a reader of a stream (tshark on a busy machine) may pause, but a client
// that stopped reading for good must not hold a stream forever.
const streamTimeout = 30 * time.Second

// deadlineWriter bounds every write of a stream by streamTimeout.
type deadlineWriter struct{ conn *net.UnixConn }

func (w deadlineWriter) Write(p []byte) (int, error) {
	_ = w.conn.SetWriteDeadline(time.Now().Add(streamTimeout))
	return w.conn.Write(p)
}

// decodeRequest reads one request of at most maxRequest bytes.
func decodeRequest(r io.Reader) (Request, error) {
	var req Request
	if err := json.NewDecoder(io.LimitReader(r, maxRequest)).Decode(&req); err != nil {
		return Request{}, fmt.Errorf("bad request: %w", err)
	}
	if req.Command == "" {
		return Request{}, errors.New("bad request: no command")
	}
	return req, nil
}

// checkPeer refuses every peer that is not root. The socket's mode already
// keeps others out; this holds even if the mode or the directory's was
// loosened by hand. The server's own user is not let in when it is not root:
// xlb runs as root, and one rule is easier to reason about than two.
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
	if cred.Uid != 0 {
		return fmt.Errorf("permission denied for uid %d: only root may use the control socket", cred.Uid)
	}
	return nil
}

// Call sends one command to the server at path and decodes its result into
// out (which may be nil). It waits for the answer as long as ctx allows, no
// longer and no shorter. Its errors tell what happened to the request:
// ErrNotRunning (it never left), a *RemoteError (the server answered with
// an error), ErrNoAnswer (ctx ended first: the server may still be at it).
func Call(ctx context.Context, path, command string, args, out any) error {
	conn, err := send(ctx, path, command, args)
	if err != nil {
		return err
	}
	defer conn.Close()
	var resp Response
	if err := json.NewDecoder(io.LimitReader(conn, maxResponse)).Decode(&resp); err != nil {
		return conn.ioErr("read "+command+" reply", err)
	}
	return resp.decode(command, out)
}

// Stream is the rest of a connection after a Streamer's answer.
type Stream struct {
	conn *net.UnixConn
	r    *bufio.Reader
}

// Read reads the stream; it returns io.EOF when the server has ended it.
func (s *Stream) Read(p []byte) (int, error) { return s.r.Read(p) }

// Stop asks the server to end the stream; read on until io.EOF for what it
// sends before it does.
func (s *Stream) Stop() error { return s.conn.CloseWrite() }

// Close drops the connection.
func (s *Stream) Close() error { return s.conn.Close() }

// maxStreamAnswer bounds the answer in front of a stream: a header.
const maxStreamAnswer = 64 << 10

// Open sends a command whose handler answers with a Streamer: it decodes the
// answer into out, as Call does, and returns the stream that follows. ctx
// bounds the wait for the answer only; the stream then runs until the
// server ends it, or Stop or Close.
func Open(ctx context.Context, path, command string, args, out any) (*Stream, error) {
	conn, err := send(ctx, path, command, args)
	if err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(conn.UnixConn, maxStreamAnswer)
	line, err := r.ReadSlice('\n')
	if err == nil {
		var resp Response
		if err = json.Unmarshal(line, &resp); err != nil {
			err = fmt.Errorf("control: decode %s reply: %w", command, err)
		} else {
			err = resp.decode(command, out)
		}
	} else {
		err = conn.ioErr("read "+command+" reply", err)
	}
	conn.stop()
	if err != nil {
		conn.Close()
		return nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return &Stream{conn: conn.UnixConn, r: r}, nil
}

// clientConn is a client's connection with its request sent.
type clientConn struct {
	*net.UnixConn
	ctx     context.Context
	stop    func() bool // detaches ctx from the connection
	sendErr error
}

// send dials path and sends the request. ctx's end shows as a deadline on
// the connection until stop.
func send(ctx context.Context, path, command string, args any) (*clientConn, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		switch {
		case errors.Is(err, fs.ErrNotExist), errors.Is(err, syscall.ECONNREFUSED):
			return nil, fmt.Errorf("%w at %s", ErrNotRunning, path)
		case errors.Is(err, fs.ErrPermission):
			return nil, fmt.Errorf("control: connect %s: only root may use the control socket: %w", path, err)
		case ctx.Err() != nil:
			return nil, fmt.Errorf("control: connect %s: %w: %w", path, ErrNoAnswer, ctx.Err())
		}
		return nil, fmt.Errorf("control: connect %s: %w", path, err)
	}
	c := &clientConn{UnixConn: nc.(*net.UnixConn), ctx: ctx}
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	c.stop = context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
	req := Request{Command: command}
	if args != nil {
		if req.Args, err = json.Marshal(args); err != nil {
			c.stop()
			c.Close()
			return nil, fmt.Errorf("control: encode %s args: %w", command, err)
		}
	}
	// A server that refuses the peer answers before reading the request
	// and closes, so the send may fail: its answer is still to be read.
	c.sendErr = json.NewEncoder(c).Encode(req)
	return c, nil
}

// Close detaches ctx and closes the connection.
func (c *clientConn) Close() error {
	c.stop()
	return c.UnixConn.Close()
}

// ioErr names what failed reading the answer: ctx's end shows as a
// deadline error on the connection, and a failed send explains a missing
// answer better than the read does.
func (c *clientConn) ioErr(what string, err error) error {
	if c.sendErr != nil {
		what, err = "send "+strings.TrimPrefix(strings.TrimSuffix(what, " reply"), "read "), c.sendErr
	}
	if c.ctx.Err() != nil || errors.Is(err, os.ErrDeadlineExceeded) {
		return fmt.Errorf("control: %s: %w", what, ErrNoAnswer)
	}
	return fmt.Errorf("control: %s: %w", what, err)
}

func (r *Response) decode(command string, out any) error {
	if r.Error != "" {
		return &RemoteError{Command: command, Message: r.Error}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(r.Result, out); err != nil {
		return fmt.Errorf("control: decode %s reply: %w", command, err)
	}
	return nil
}
