package sni

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// capture returns the first bytes a Go crypto/tls client sends for cfg.
func capture(t testing.TB, cfg *tls.Config) []byte {
	t.Helper()
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		c := tls.Client(client, cfg)
		c.Handshake() // fails when server closes; only the hello matters
		c.Close()
	}()
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1<<16)
	n, err := server.Read(buf)
	if err != nil {
		t.Fatalf("read client hello: %v", err)
	}
	// net.Pipe delivers one Write per Read: the hello is one record, one
	// write.
	return buf[:n]
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// realHellos are ClientHellos from real clients and the name each asks for.
func realHellos(t testing.TB) map[string]struct {
	data []byte
	name string
} {
	return map[string]struct {
		data []byte
		name string
	}{
		// openssl s_client -servername api.example.com (OpenSSL 3.0)
		"openssl": {readFile(t, "openssl-api.example.com.bin"), "api.example.com"},
		// curl --resolve www.Example.COM:... https://www.Example.COM:.../
		"curl": {readFile(t, "curl-www.example.com.bin"), "www.example.com"},
		// openssl s_client -noservername
		"openssl-nosni": {readFile(t, "openssl-nosni.bin"), ""},
		"go":            {capture(t, &tls.Config{ServerName: "Mixed.Example.ORG"}), "mixed.example.org"},
		"go-tls12":      {capture(t, &tls.Config{ServerName: "tls12.example.net", MaxVersion: tls.VersionTLS12}), "tls12.example.net"},
		// Go sends no server_name for an IP address.
		"go-ip": {capture(t, &tls.Config{ServerName: "198.18.0.1", InsecureSkipVerify: true}), ""},
	}
}

const testLimit = RecordHeader + MaxRecord

func TestParseRealHellos(t *testing.T) {
	for name, tc := range realHellos(t) {
		t.Run(name, func(t *testing.T) {
			h, need, err := Parse(tc.data, testLimit)
			if err != nil || need != 0 {
				t.Fatalf("Parse = need %d, %v", need, err)
			}
			if got := string(h.ServerName()); got != tc.name {
				t.Errorf("server name %q, want %q", got, tc.name)
			}
			// Bytes after the hello (early data, a pipelined record) do
			// not matter.
			if h2, _, err := Parse(append(bytes.Clone(tc.data), 23, 3, 3, 0, 1, 0), testLimit); err != nil || h2 != h {
				t.Errorf("with trailing bytes: %q, %v", h2.ServerName(), err)
			}
			// Every prefix asks for more, and for no more than the whole.
			for n := range len(tc.data) {
				_, need, err := Parse(tc.data[:n], testLimit)
				if !errors.Is(err, ErrIncomplete) || need <= n || need > len(tc.data) {
					t.Fatalf("prefix of %d bytes: need %d, %v", n, need, err)
				}
			}
		})
	}
}

// rerecord splits the handshake message of a one-record hello into records
// of at most size payload bytes each.
func rerecord(hello []byte, size int) []byte {
	msg := hello[RecordHeader:]
	var out []byte
	for len(msg) > 0 {
		n := min(size, len(msg))
		out = append(out, recordHandshake, 3, 1, byte(n>>8), byte(n))
		out = append(out, msg[:n]...)
		msg = msg[n:]
	}
	return out
}

func TestParseSplitRecords(t *testing.T) {
	for name, tc := range realHellos(t) {
		for _, size := range []int{1, 2, 3, 5, 7, 64, 100} {
			data := rerecord(tc.data, size)
			h, _, err := Parse(data, len(data))
			if err != nil {
				t.Fatalf("%s in records of %d: %v", name, size, err)
			}
			if got := string(h.ServerName()); got != tc.name {
				t.Errorf("%s in records of %d: server name %q, want %q", name, size, got, tc.name)
			}
			// Incremental reads never ask past the end, and never for a
			// record's part: need is a record's end.
			for n := 0; n < len(data); {
				_, need, err := Parse(data[:n], len(data))
				if !errors.Is(err, ErrIncomplete) || need <= n || need > len(data) {
					t.Fatalf("%s in records of %d, prefix %d: need %d, %v", name, size, n, need, err)
				}
				n = need
			}
			if _, _, err := Parse(data, len(data)-1); !isReason(err, TooLarge) {
				t.Errorf("%s in records of %d with a limit one short: %v, want too_large", name, size, err)
			}
		}
	}
}

func isReason(err error, r Reason) bool {
	var e *Error
	return errors.As(err, &e) && e.Reason == r
}

// Builders for hand-made hellos.

func record(typ byte, payload []byte) []byte {
	return append([]byte{typ, 3, 1, byte(len(payload) >> 8), byte(len(payload))}, payload...)
}

func handshake(typ byte, body []byte) []byte {
	n := len(body)
	return append([]byte{typ, byte(n >> 16), byte(n >> 8), byte(n)}, body...)
}

func u16(n int) []byte { return binary.BigEndian.AppendUint16(nil, uint16(n)) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func ext(typ int, data []byte) []byte { return cat(u16(typ), u16(len(data)), data) }

func sniExt(names ...string) []byte {
	var list []byte
	for _, n := range names {
		list = cat(list, []byte{nameTypeHostName}, u16(len(n)), []byte(n))
	}
	return ext(extServerName, cat(u16(len(list)), list))
}

// body is a ClientHello body with a session id, one suite, one compression
// method and the given extensions (nil: no extensions block at all).
func body(exts ...[]byte) []byte {
	b := cat([]byte{3, 3}, make([]byte, helloRandom), []byte{4, 1, 2, 3, 4}, u16(2), []byte{0x13, 0x01}, []byte{1, 0})
	if exts == nil {
		return b
	}
	e := cat(exts...)
	return cat(b, u16(len(e)), e)
}

func hello(exts ...[]byte) []byte {
	return record(recordHandshake, handshake(handshakeHello, body(exts...)))
}

func TestParseHandMade(t *testing.T) {
	grease := ext(0x0a0a, nil)
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"sni", hello(sniExt("a.example.com")), "a.example.com"},
		{"sni among others", hello(grease, ext(10, []byte{0, 2, 0, 29}), sniExt("B.Example.com."), ext(16, []byte{0, 3, 2, 'h', '2'})), "b.example.com"},
		{"no extensions block", hello(), ""},
		{"empty extensions block", hello([]byte{}), ""},
		{"other name type skipped", hello(ext(extServerName, cat(u16(8), []byte{1}, u16(1), []byte{'x'}, []byte{0}, u16(1), []byte{'y'}))), "y"},
		{"underscore", hello(sniExt("_acme.example.com")), "_acme.example.com"},
		{"longest name", hello(sniExt(string(bytes.Repeat([]byte{'a'}, 255)))), string(bytes.Repeat([]byte{'a'}, 255))},
	} {
		h, _, err := Parse(tc.data, testLimit)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := string(h.ServerName()); got != tc.want {
			t.Errorf("%s: server name %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestParseErrors(t *testing.T) {
	good := hello(sniExt("a.example.com"))
	withBody := func(b []byte) []byte { return record(recordHandshake, handshake(handshakeHello, b)) }
	fixed := cat([]byte{3, 3}, make([]byte, helloRandom))
	for _, tc := range []struct {
		name  string
		data  []byte
		limit int
		want  error
	}{
		{"http", []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), 0, errNotHandshake},
		{"ssh", []byte("SSH-2.0-OpenSSH_9.2\r\n"), 0, errNotHandshake},
		{"one byte of http", []byte("G"), 0, errNotHandshake},
		{"tls alert", record(21, []byte{2, 40}), 0, errNotHandshake},
		{"application data", record(23, []byte{1, 2, 3}), 0, errNotHandshake},
		{"sslv2 hello", []byte{0x80, 0x2e, 0x01, 0x03, 0x01}, 0, errNotHandshake},
		{"record version 2", []byte{22, 2, 0, 0, 4}, 0, errRecordVersion},
		{"empty record", record(recordHandshake, nil), 0, errEmptyRecord},
		{"record too long", []byte{22, 3, 1, 0x40, 0x01}, 0, errRecordTooLong},
		{"server hello", record(recordHandshake, handshake(2, body())), 0, errNotHello},
		{"not a hello, record incomplete", record(recordHandshake, handshake(2, body()))[:12], 0, errNotHello},
		{"second record not handshake", cat(rerecord(good, 10)[:15], record(23, []byte{1})), 0, errNextRecord},
		{"short body", withBody(fixed), 0, errHelloTooShort},
		{"hello version", withBody(cat([]byte{2, 0}, make([]byte, helloRandom), []byte{0}, u16(2), []byte{0, 1}, []byte{1, 0})), 0, errHelloVersion},
		{"session id 33", withBody(cat(fixed, []byte{33}, make([]byte, 33), u16(2), []byte{0, 1}, []byte{1, 0})), 0, errSessionID},
		{"session id past end", withBody(cat(fixed, []byte{20}, make([]byte, 5))), 0, errSessionIDEnd},
		{"odd suites", withBody(cat(fixed, []byte{0}, u16(3), []byte{0, 1, 2}, []byte{1, 0})), 0, errSuites},
		{"no suites", withBody(cat(fixed, []byte{0}, u16(0), []byte{1, 0, 0})), 0, errSuites},
		{"suites past end", withBody(cat(fixed, []byte{0}, u16(200), []byte{0, 1, 1})), 0, errSuitesEnd},
		{"no compression", withBody(cat(fixed, []byte{0}, u16(2), []byte{0, 1}, []byte{0})), 0, errCompression},
		{"compression past end", withBody(cat(fixed, []byte{0}, u16(2), []byte{0, 1}, []byte{9, 0})), 0, errCompressionEnd},
		{"extensions length one byte", withBody(cat(body(), []byte{0})), 0, errExtensionsLen},
		{"extensions length short", withBody(cat(body(), u16(10), sniExt("a.b"))), 0, errExtensionsLen},
		{"extension past end", withBody(cat(body(), u16(6), u16(0), u16(20), []byte{0, 0})), 0, errExtensionEnd},
		{"extension header cut", withBody(cat(body(), u16(2), []byte{0, 0})), 0, errExtensionEnd},
		{"sni twice", hello(sniExt("a.b"), sniExt("a.b")), 0, errSNITwice},
		{"sni list length", hello(ext(extServerName, cat(u16(9), []byte{0}, u16(3), []byte("a.b")))), 0, errSNIListLen},
		{"sni list cut", hello(ext(extServerName, []byte{0})), 0, errSNIListLen},
		{"sni entry past list", hello(ext(extServerName, cat(u16(4), []byte{0}, u16(9), []byte("a")))), 0, errSNIEntryEnd},
		{"sni entry header cut", hello(ext(extServerName, cat(u16(2), []byte{0, 0}))), 0, errSNIEntryEnd},
		{"two host names", hello(sniExt("a.b", "c.d")), 0, errSNIHostTwice},
		{"empty host name", hello(sniExt("")), 0, errSNIEmpty},
		{"host name too long", hello(sniExt(string(bytes.Repeat([]byte{'a'}, 256)))), 0, errSNITooLong},
		{"host name nul", hello(sniExt("a\x00.example.com")), 0, errSNIByte},
		{"host name space", hello(sniExt("a .example.com")), 0, errSNIByte},
		{"host name empty label", hello(sniExt("a..example.com")), 0, errSNILabel},
		{"host name leading dot", hello(sniExt(".example.com")), 0, errSNILabel},
		{"host name only a dot", hello(sniExt(".")), 0, errSNILabel},
		{"record past limit", good, len(good) - 1, errTooLarge},
		{"header past limit", cat(rerecord(good, 30)[:35], []byte{22}), 36, errTooLarge},
		{"message past limit", rerecord(good, 4)[:9], 20, errTooLarge},
	} {
		limit := tc.limit
		if limit == 0 {
			limit = testLimit
		}
		_, _, err := Parse(tc.data, limit)
		if err != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
}

func TestParseAllocs(t *testing.T) {
	data := rerecord(realHellos(t)["curl"].data, 50)
	bad := hello(sniExt("a b"))
	if n := testing.AllocsPerRun(100, func() {
		Parse(data, len(data))
		Parse(data[:len(data)/2], len(data))
		Parse(bad, testLimit)
	}); n != 0 {
		t.Errorf("Parse allocates %v times", n)
	}
}

func FuzzParse(f *testing.F) {
	for _, tc := range realHellos(f) {
		f.Add(tc.data)
		f.Add(tc.data[:len(tc.data)/2])
		f.Add(tc.data[:RecordHeader+3])
		f.Add(rerecord(tc.data, 7))
	}
	f.Add([]byte("GET / HTTP/1.1\r\n\r\n"))
	f.Add(hello(sniExt("a.example.com"), sniExt("b")))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, limit := range []int{RecordHeader, len(data), testLimit} {
			h, need, err := Parse(data, limit)
			switch {
			case errors.Is(err, ErrIncomplete):
				if need <= len(data) || need > limit {
					t.Fatalf("limit %d: incomplete with need %d for %d bytes", limit, need, len(data))
				}
			case err != nil:
				var e *Error
				if !errors.As(err, &e) || e.Reason == 0 || e.What == "" {
					t.Fatalf("limit %d: error %v is no *Error with a reason", limit, err)
				}
			default:
				if name := h.ServerName(); len(name) > 0 {
					if _, err := checkName(bytes.Clone(name)); err != nil || bytes.HasSuffix(name, []byte(".")) {
						t.Fatalf("limit %d: parsed a bad name %q", limit, name)
					}
				}
				if len(data) > limit {
					// Only the bytes within the limit were used: the
					// same input cut there parses the same.
					if h2, _, err := Parse(data[:limit], limit); err != nil || h2 != h {
						t.Fatalf("limit %d: the hello is not within the limit", limit)
					}
				}
			}
		}
	})
}

// BenchmarkParse measures a whole ClientHello (curl's, 517 bytes), the
// same split into 64-byte records, and the match of its name.
func BenchmarkParse(b *testing.B) {
	curl := realHellos(b)["curl"].data
	split := rerecord(curl, 64)
	tbl, err := NewTable([]Pattern{{Name: "example.com", Wildcard: true}}, -1)
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name string
		data []byte
	}{{"one-record", curl}, {"64-byte-records", split}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.data)))
			b.ReportAllocs()
			for b.Loop() {
				h, _, err := Parse(bc.data, testLimit)
				if err != nil {
					b.Fatal(err)
				}
				if r, _ := tbl.Match(h.ServerName()); r != 0 {
					b.Fatal("no match")
				}
			}
		})
	}
}
