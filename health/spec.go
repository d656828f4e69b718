package health

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// Kind is the kind of check: KindNone, KindTCP or KindHTTP.
type Kind string

// Values of Kind.
const (
	// KindNone does not probe: the target is always up.
	KindNone Kind = "none"
	// KindTCP is up when a TCP connection to the port is accepted.
	KindTCP Kind = "tcp"
	// KindHTTP is up when a GET of Path answers with status Expect.
	KindHTTP Kind = "http"
)

// Defaults that WithDefaults fills in, and bounds that Validate enforces.
const (
	// DefaultInterval between probes of one target.
	DefaultInterval = time.Second
	// DefaultTimeout bounds one probe: connect, and for HTTP the request
	// and the response head.
	DefaultTimeout = 500 * time.Millisecond
	// DefaultRise consecutive successes bring a down target up.
	DefaultRise = 2
	// DefaultFall consecutive failures take an up target down: one lost
	// probe is never enough.
	DefaultFall = 3
	// DefaultPath is what an HTTP check gets.
	DefaultPath = "/"
	// DefaultExpect is the HTTP status an HTTP check wants.
	DefaultExpect = 200

	// MinInterval keeps a misconfigured check from flooding its backend.
	MinInterval = 10 * time.Millisecond
	// MaxInterval and MaxThreshold keep a typo from disabling a check in
	// practice (an hour between probes, a million failures to go down).
	MaxInterval  = time.Hour
	MaxThreshold = 100
	// MaxPath bounds the request line.
	MaxPath = 1024
)

// ErrInvalidSpec is wrapped by every error Validate and Checker.Set return
// for a bad Spec or Target.
var ErrInvalidSpec = errors.New("health: invalid check")

// Spec is how one target is checked. Its zero value, after WithDefaults, is
// KindNone. Spec is comparable: Checker.Set restarts a target's probing only
// when its Spec (or address) differs from the one it runs with.
type Spec struct {
	Kind Kind
	// Port probed on the backend's own address. WithDefaults fills in the
	// VIP's port; a port-0 VIP (all ports) has none, so its checks need one.
	Port uint16
	// Path is the HTTP request target: an absolute path, with an optional
	// query ("/healthz?full=1"). HTTP only.
	Path string
	// Host is the HTTP Host header; empty sends "ADDR:PORT" of the
	// backend, as a client dialing it directly would. HTTP only.
	Host string
	// Expect is the HTTP status that counts as a success, 100..599.
	Expect int
	// Interval between the starts of two probes; Timeout bounds one probe
	// and must not exceed Interval, so probes of a target never overlap.
	Interval, Timeout time.Duration
	// Rise consecutive successes bring a down target up; Fall consecutive
	// failures take an up target down. Both 1..MaxThreshold.
	Rise, Fall int
}

// WithDefaults returns s with every zero field set to its default: an empty
// Kind is KindNone, a zero Port is port (the VIP's port), and the other
// fields take the Default constants. Path and Expect are filled for
// KindHTTP only, so a TCP check keeps comparing equal whatever they were.
func (s Spec) WithDefaults(port uint16) Spec {
	if s.Kind == "" {
		s.Kind = KindNone
	}
	if s.Port == 0 {
		s.Port = port
	}
	if s.Interval == 0 {
		s.Interval = DefaultInterval
	}
	if s.Timeout == 0 {
		s.Timeout = min(DefaultTimeout, s.Interval)
	}
	if s.Rise == 0 {
		s.Rise = DefaultRise
	}
	if s.Fall == 0 {
		s.Fall = DefaultFall
	}
	if s.Kind == KindHTTP {
		if s.Path == "" {
			s.Path = DefaultPath
		}
		if s.Expect == 0 {
			s.Expect = DefaultExpect
		}
	}
	return s
}

// Validate checks a Spec that WithDefaults has filled. A KindNone spec is
// always valid: nothing else in it is used. Errors wrap ErrInvalidSpec and
// name the bad value.
func (s Spec) Validate() error {
	switch s.Kind {
	case KindNone:
		return nil
	case KindTCP, KindHTTP:
	default:
		return fmt.Errorf("%w: kind %q: want %q, %q or %q", ErrInvalidSpec, s.Kind, KindNone, KindTCP, KindHTTP)
	}
	if s.Port == 0 {
		return fmt.Errorf("%w: %s check needs a port (the VIP serves all ports)", ErrInvalidSpec, s.Kind)
	}
	if s.Interval < MinInterval || s.Interval > MaxInterval {
		return fmt.Errorf("%w: interval %v: want %v to %v", ErrInvalidSpec, s.Interval, MinInterval, MaxInterval)
	}
	if s.Timeout <= 0 || s.Timeout > s.Interval {
		return fmt.Errorf("%w: timeout %v: want more than 0 and at most the interval %v", ErrInvalidSpec, s.Timeout, s.Interval)
	}
	if s.Rise < 1 || s.Rise > MaxThreshold {
		return fmt.Errorf("%w: rise %d: want 1 to %d", ErrInvalidSpec, s.Rise, MaxThreshold)
	}
	if s.Fall < 1 || s.Fall > MaxThreshold {
		return fmt.Errorf("%w: fall %d: want 1 to %d", ErrInvalidSpec, s.Fall, MaxThreshold)
	}
	if s.Kind != KindHTTP {
		return nil
	}
	if err := CheckPath(s.Path); err != nil {
		return err
	}
	if !ValidHost(s.Host) {
		return fmt.Errorf("%w: host %q: want a host name or address with an optional port", ErrInvalidSpec, s.Host)
	}
	if s.Expect < 100 || s.Expect > 599 {
		return fmt.Errorf("%w: expect %d: want an HTTP status 100 to 599", ErrInvalidSpec, s.Expect)
	}
	return nil
}

// checkPath accepts an origin-form request target: "/" then printable
// ASCII without spaces, which url.ParseRequestURI must also accept.
func CheckPath(p string) error {
	if len(p) == 0 || p[0] != '/' || len(p) > MaxPath || !isToken(p) {
		return fmt.Errorf("%w: path %q: want an absolute path of at most %d printable ASCII characters without spaces", ErrInvalidSpec, p, MaxPath)
	}
	if _, err := url.ParseRequestURI(p); err != nil {
		return fmt.Errorf("%w: path %q: %v", ErrInvalidSpec, p, err)
	}
	return nil
}

// isToken reports whether s is printable ASCII with no space, so it can
// neither split nor end a request line or a header.
func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// ValidHost reports whether s holds only characters of a URI's host and
// port (RFC 3986: unreserved, sub-delims, '%', ':', '[' and ']'), which is
// what net/http accepts in a Host header; it drops other hosts from the
// request. A zone in a bracketed IPv6 literal ("[fe80::1%eth0]") is refused
// too: net/http removes it when it writes the request, so the backend would
// see another Host than the one configured.
func ValidHost(s string) bool {
	if strings.HasPrefix(s, "[") {
		if i := strings.LastIndexByte(s, ']'); i >= 0 && strings.IndexByte(s[:i], '%') >= 0 {
			return false
		}
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			strings.IndexByte("-._~!$&'()*+,;=%:[]", c) >= 0
		if !ok {
			return false
		}
	}
	return true
}
