package health

import (
	"bufio"
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestWithDefaults(t *testing.T) {
	tests := []struct {
		name string
		in   Spec
		port uint16
		want Spec
	}{
		{
			name: "zero is none",
			in:   Spec{},
			port: 80,
			want: Spec{Kind: KindNone, Port: 80, Interval: DefaultInterval, Timeout: DefaultTimeout, Rise: DefaultRise, Fall: DefaultFall},
		},
		{
			name: "tcp leaves path and expect alone",
			in:   Spec{Kind: KindTCP},
			port: 443,
			want: Spec{Kind: KindTCP, Port: 443, Interval: DefaultInterval, Timeout: DefaultTimeout, Rise: DefaultRise, Fall: DefaultFall},
		},
		{
			name: "http gets path and expect",
			in:   Spec{Kind: KindHTTP},
			port: 80,
			want: Spec{Kind: KindHTTP, Port: 80, Path: "/", Expect: 200, Interval: DefaultInterval, Timeout: DefaultTimeout, Rise: DefaultRise, Fall: DefaultFall},
		},
		{
			name: "given values stay",
			in:   Spec{Kind: KindHTTP, Port: 8080, Path: "/healthz", Host: "svc", Expect: 204, Interval: 5 * time.Second, Timeout: 2 * time.Second, Rise: 1, Fall: 5},
			port: 80,
			want: Spec{Kind: KindHTTP, Port: 8080, Path: "/healthz", Host: "svc", Expect: 204, Interval: 5 * time.Second, Timeout: 2 * time.Second, Rise: 1, Fall: 5},
		},
		{
			name: "short interval caps the default timeout",
			in:   Spec{Kind: KindTCP, Interval: 100 * time.Millisecond},
			port: 80,
			want: Spec{Kind: KindTCP, Port: 80, Interval: 100 * time.Millisecond, Timeout: 100 * time.Millisecond, Rise: DefaultRise, Fall: DefaultFall},
		},
		{
			name: "port-0 VIP leaves port 0",
			in:   Spec{Kind: KindTCP},
			port: 0,
			want: Spec{Kind: KindTCP, Interval: DefaultInterval, Timeout: DefaultTimeout, Rise: DefaultRise, Fall: DefaultFall},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in.WithDefaults(tt.port)
			if got != tt.want {
				t.Errorf("got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	tcp := Spec{Kind: KindTCP}.WithDefaults(80)
	web := Spec{Kind: KindHTTP}.WithDefaults(80)
	with := func(s Spec, f func(*Spec)) Spec { f(&s); return s }
	tests := []struct {
		name string
		spec Spec
		bad  string // part of the error; "" if valid
	}{
		{"tcp defaults", tcp, ""},
		{"http defaults", web, ""},
		{"none ignores the rest", Spec{Kind: KindNone, Rise: -1}, ""},
		{"http with query and host", with(web, func(s *Spec) { s.Path = "/health?full=1"; s.Host = "[2001:db8::1]:80"; s.Expect = 204 }), ""},
		{"timeout equal to interval", with(tcp, func(s *Spec) { s.Timeout = s.Interval }), ""},
		{"empty kind", Spec{}, `kind ""`},
		{"unknown kind", with(tcp, func(s *Spec) { s.Kind = "udp" }), `kind "udp"`},
		{"no port", with(tcp, func(s *Spec) { s.Port = 0 }), "needs a port"},
		{"interval too short", with(tcp, func(s *Spec) { s.Interval = time.Millisecond; s.Timeout = time.Millisecond }), "interval 1ms"},
		{"interval too long", with(tcp, func(s *Spec) { s.Interval = 2 * time.Hour }), "interval 2h0m0s"},
		{"timeout zero", with(tcp, func(s *Spec) { s.Timeout = 0 }), "timeout 0s"},
		{"timeout over interval", with(tcp, func(s *Spec) { s.Timeout = 2 * s.Interval }), "timeout 2s"},
		{"rise zero", with(tcp, func(s *Spec) { s.Rise = 0 }), "rise 0"},
		{"fall zero", with(tcp, func(s *Spec) { s.Fall = 0 }), "fall 0"},
		{"fall too big", with(tcp, func(s *Spec) { s.Fall = MaxThreshold + 1 }), "fall 101"},
		{"relative path", with(web, func(s *Spec) { s.Path = "health" }), `path "health"`},
		{"path with space", with(web, func(s *Spec) { s.Path = "/a b" }), `path "/a b"`},
		{"path with newline", with(web, func(s *Spec) { s.Path = "/a\r\nX: y" }), "path"},
		{"path too long", with(web, func(s *Spec) { s.Path = "/" + strings.Repeat("a", MaxPath) }), "path"},
		{"host with space", with(web, func(s *Spec) { s.Host = "a b" }), `host "a b"`},
		{"expect too small", with(web, func(s *Spec) { s.Expect = 99 }), "expect 99"},
		{"expect too big", with(web, func(s *Spec) { s.Expect = 600 }), "expect 600"},
		{"tcp ignores http fields", with(tcp, func(s *Spec) { s.Path = "bad path"; s.Expect = 1 }), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.spec.Validate()
			if tt.bad == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate accepted %+v", tt.spec)
			}
			if !errors.Is(err, ErrInvalidSpec) {
				t.Errorf("error %v does not wrap ErrInvalidSpec", err)
			}
			if !strings.Contains(err.Error(), tt.bad) {
				t.Errorf("error %q does not mention %q", err, tt.bad)
			}
		})
	}
}

// FuzzSpecRequest checks that every path and host Validate accepts makes a
// request that a server parses back with the same target and Host: nothing
// can split the request line or smuggle a header.
func FuzzSpecRequest(f *testing.F) {
	f.Add("/", "")
	f.Add("/healthz?full=1", "example.com")
	f.Add("/a%20b", "[2001:db8::1]:8080")
	f.Add("/a b", "x\r\nEvil: 1")
	f.Add("//x", "h")
	f.Fuzz(func(t *testing.T, path, host string) {
		s := Spec{Kind: KindHTTP, Path: path, Host: host}.WithDefaults(80)
		if s.Validate() != nil {
			return
		}
		req, err := http.NewRequest(http.MethodGet, "http://198.18.0.11:80"+s.Path, nil)
		if err != nil {
			t.Fatalf("valid path %q: %v", s.Path, err)
		}
		if s.Host != "" {
			req.Host = s.Host
		}
		req.Close = true
		var buf bytes.Buffer
		if err := req.Write(&buf); err != nil {
			t.Fatalf("valid spec %+v: write: %v", s, err)
		}
		back, err := http.ReadRequest(bufio.NewReader(&buf))
		if err != nil {
			t.Fatalf("valid spec %+v: server cannot read %q: %v", s, buf.String(), err)
		}
		wantHost := s.Host
		if wantHost == "" {
			wantHost = "198.18.0.11:80"
		}
		if back.Host != wantHost {
			t.Errorf("host %q came back as %q", wantHost, back.Host)
		}
		if back.URL.RequestURI() != req.URL.RequestURI() {
			t.Errorf("path %q sent as %q came back as %q", s.Path, req.URL.RequestURI(), back.URL.RequestURI())
		}
		if len(back.Header) != 2 { // Connection and User-Agent (Go's default)
			t.Errorf("path %q host %q: headers %v", s.Path, s.Host, back.Header)
		}
	})
}
