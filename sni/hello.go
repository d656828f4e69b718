package sni

import (
	"encoding/binary"
	"errors"
)

// Sizes from the TLS specifications.
const (
	// RecordHeader is the size of a TLS record header: content type,
	// legacy version, length.
	RecordHeader = 5
	// MaxRecord is the largest payload of a plaintext TLS record
	// (RFC 8446 section 5.1: 2^14).
	MaxRecord = 1 << 14
	// MaxNameLen bounds a server name: a DNS name has at most 253
	// characters, 255 octets on the wire.
	MaxNameLen = 255

	recordHandshake  = 22
	handshakeHello   = 1
	handshakeHeader  = 4
	extServerName    = 0
	nameTypeHostName = 0
	helloRandom      = 32
	maxSessionID     = 32
	minHelloBody     = 2 + helloRandom + 1 + 2 + 2 + 1 // version, random, empty session id, one suite, one method
	majorVersionTLS  = 3
)

// Reason is the kind of a parse error: what a proxy counts it as.
type Reason uint8

// The kinds of errors.
const (
	// NotTLS: the first record is not a TLS handshake record.
	NotTLS Reason = iota + 1
	// Malformed: a handshake record whose content is not a well-formed
	// ClientHello.
	Malformed
	// TooLarge: the ClientHello does not fit the caller's limit.
	TooLarge
)

// String names the reason as counters do.
func (r Reason) String() string {
	switch r {
	case NotTLS:
		return "not_tls"
	case Malformed:
		return "malformed"
	case TooLarge:
		return "too_large"
	}
	return "unknown"
}

// Error is a parse error. Every one is a package-level value, so a
// refused connection costs no allocation either.
type Error struct {
	Reason Reason
	What   string
}

func (e *Error) Error() string { return "tls client hello: " + e.What }

// ErrIncomplete: the buffer ends before the ClientHello does. Parse's need
// says how many bytes it needs at least.
var ErrIncomplete = errors.New("tls client hello: incomplete")

func notTLS(what string) *Error    { return &Error{NotTLS, what} }
func malformed(what string) *Error { return &Error{Malformed, what} }

var (
	errNotHandshake   = notTLS("first record is not a handshake record (content type 22)")
	errRecordVersion  = notTLS("record version is not TLS (major version 3)")
	errNotHello       = malformed("first handshake message is not a client_hello")
	errEmptyRecord    = malformed("empty handshake record")
	errRecordTooLong  = malformed("record longer than 16384 bytes")
	errNextRecord     = malformed("client_hello continues in a record that is not a handshake record")
	errHelloTooShort  = malformed("client_hello shorter than its fixed fields")
	errHelloVersion   = malformed("client_hello legacy_version is not TLS (major version 3)")
	errSessionID      = malformed("session_id longer than 32 bytes")
	errSessionIDEnd   = malformed("session_id runs past the client_hello")
	errSuites         = malformed("cipher_suites length is zero or odd")
	errSuitesEnd      = malformed("cipher_suites run past the client_hello")
	errCompression    = malformed("compression_methods is empty")
	errCompressionEnd = malformed("compression_methods run past the client_hello")
	errExtensionsLen  = malformed("extensions length does not match the rest of the client_hello")
	errExtensionEnd   = malformed("an extension runs past the extensions")
	errSNITwice       = malformed("server_name extension appears twice")
	errSNIListLen     = malformed("server_name list length does not match the extension")
	errSNIEntryEnd    = malformed("a server_name entry runs past its list")
	errSNIHostTwice   = malformed("server_name list has two host_name entries")
	errSNIEmpty       = malformed("server_name host_name is empty")
	errSNITooLong     = malformed("server_name host_name longer than 255 bytes")
	errSNIByte        = malformed("server_name host_name has a byte that is not a letter, digit, '-', '_' or '.'")
	errSNILabel       = malformed("server_name host_name has an empty label")
	errTooLarge       = &Error{TooLarge, "client_hello larger than the limit"}
)

// Hello is what Parse reads from a ClientHello.
type Hello struct {
	name    [MaxNameLen]byte
	nameLen uint8
}

// ServerName returns the host_name of the server_name extension in lower
// case without a trailing dot, or an empty slice if the client sent none.
// It points into h.
func (h *Hello) ServerName() []byte { return h.name[:h.nameLen] }

// Parse reads the ClientHello at the start of buf, the bytes a client has
// sent so far, reading at most limit bytes (records and their headers; at
// least RecordHeader). It returns:
//
//   - the Hello, once buf holds all of it;
//   - ErrIncomplete and need > len(buf), the length buf must reach before
//     Parse can say more (need <= limit);
//   - an *Error: the input is not a ClientHello, or not one within limit;
//     more bytes would not change that.
//
// Bytes after the ClientHello are ignored. Parse allocates nothing.
func Parse(buf []byte, limit int) (h Hello, need int, err error) {
	// The first record header says whether this is TLS at all: check what
	// is there before asking for more, so that "GET / HTTP/1.1" is refused
	// at once rather than after a timeout.
	if len(buf) >= 1 && buf[0] != recordHandshake {
		return h, 0, errNotHandshake
	}
	if len(buf) >= 2 && buf[1] != majorVersionTLS {
		return h, 0, errRecordVersion
	}
	// Walk the records until they hold the whole handshake message. msgLen
	// is known once the first handshakeHeader payload bytes are.
	var (
		off     int // start of the record being looked at
		payload int // handshake bytes in the records before off
		msgLen  = -1
	)
	for msgLen < 0 || payload < handshakeHeader+msgLen {
		if off+RecordHeader > limit {
			return h, 0, errTooLarge
		}
		if len(buf) < off+RecordHeader {
			return h, off + RecordHeader, ErrIncomplete
		}
		rec := buf[off : off+RecordHeader]
		if rec[0] != recordHandshake {
			if off == 0 {
				return h, 0, errNotHandshake
			}
			return h, 0, errNextRecord
		}
		if rec[1] != majorVersionTLS {
			if off == 0 {
				return h, 0, errRecordVersion
			}
			return h, 0, errNextRecord
		}
		n := int(binary.BigEndian.Uint16(rec[3:]))
		switch {
		case n == 0:
			return h, 0, errEmptyRecord // RFC 8446: zero-length handshake fragments are not allowed
		case n > MaxRecord:
			return h, 0, errRecordTooLong
		}
		end := off + RecordHeader + n
		if end > limit {
			return h, 0, errTooLarge
		}
		if len(buf) < end {
			// Check what the record's start already says before
			// waiting for the rest of it.
			if off == 0 && len(buf) > RecordHeader && buf[RecordHeader] != handshakeHello {
				return h, 0, errNotHello
			}
			return h, end, ErrIncomplete
		}
		payload += n
		if msgLen < 0 && payload >= handshakeHeader {
			r := reader{buf: buf, pos: RecordHeader, end: RecordHeader + int(binary.BigEndian.Uint16(buf[3:]))}
			if r.u8() != handshakeHello {
				return h, 0, errNotHello
			}
			msgLen = r.u24()
			if msgLen+handshakeHeader+RecordHeader > limit {
				return h, 0, errTooLarge
			}
		}
		off = end
	}
	r := reader{buf: buf, pos: RecordHeader, end: RecordHeader + int(binary.BigEndian.Uint16(buf[3:]))}
	r.skip(handshakeHeader)
	err = parseHello(&r, handshakeHeader+msgLen, &h)
	return h, 0, err
}

// parseHello reads the ClientHello body from r up to the message's end,
// msgEnd (an offset in the handshake stream).
func parseHello(r *reader, msgEnd int, h *Hello) error {
	if msgEnd-r.off < minHelloBody {
		return errHelloTooShort
	}
	if r.u16()>>8 != majorVersionTLS {
		return errHelloVersion
	}
	r.skip(helloRandom)
	if err := r.skipVector(1, msgEnd, func(n int) bool { return n <= maxSessionID }, errSessionID, errSessionIDEnd); err != nil {
		return err
	}
	if err := r.skipVector(2, msgEnd, func(n int) bool { return n > 0 && n%2 == 0 }, errSuites, errSuitesEnd); err != nil {
		return err
	}
	if err := r.skipVector(1, msgEnd, func(n int) bool { return n > 0 }, errCompression, errCompressionEnd); err != nil {
		return err
	}
	if r.off == msgEnd {
		return nil // no extensions (SSL 3.0 style): no server name
	}
	if !r.vector(msgEnd) {
		return errExtensionsLen
	}
	seen := false
	for r.off < msgEnd {
		typ, n, ok := r.entry(2, msgEnd)
		if !ok {
			return errExtensionEnd
		}
		if typ != extServerName {
			r.skip(n)
			continue
		}
		if seen {
			return errSNITwice
		}
		seen = true
		if err := parseServerName(r, r.off+n, h); err != nil {
			return err
		}
	}
	return nil
}

// parseServerName reads a server_name extension's ServerNameList, which
// ends at extEnd. Entries of other name types are skipped (RFC 6066 leaves
// room for them; none is defined).
func parseServerName(r *reader, extEnd int, h *Hello) error {
	if !r.vector(extEnd) {
		return errSNIListLen
	}
	for r.off < extEnd {
		typ, n, ok := r.entry(1, extEnd)
		if !ok {
			return errSNIEntryEnd
		}
		if typ != nameTypeHostName {
			r.skip(n)
			continue
		}
		switch {
		case h.nameLen > 0:
			return errSNIHostTwice
		case n == 0:
			return errSNIEmpty
		case n > MaxNameLen:
			return errSNITooLong
		}
		for i := range n {
			h.name[i] = lower(byte(r.u8()))
		}
		name, err := checkName(h.name[:n])
		if err != nil {
			return err
		}
		h.nameLen = uint8(len(name))
	}
	return nil
}

// checkName checks a lower-cased host name's bytes and labels, and returns
// it without a trailing dot.
func checkName(name []byte) ([]byte, error) {
	if name[len(name)-1] == '.' {
		name = name[:len(name)-1]
	}
	if len(name) == 0 {
		return nil, errSNILabel
	}
	prev := byte('.')
	for _, c := range name {
		switch {
		case c == '.' && prev == '.':
			return nil, errSNILabel
		case c == '.' || c == '-' || c == '_' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z':
		default:
			return nil, errSNIByte
		}
		prev = c
	}
	return name, nil
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// reader reads a handshake message through the records that carry it, in
// place. Parse has checked that the records are all in buf and cover the
// message, and parseHello never reads past the message's end, so reader
// needs no bounds checks of its own beyond the slice's.
type reader struct {
	buf      []byte
	pos, end int // the current record's unread payload: buf[pos:end]
	off      int // bytes read from the handshake stream so far
}

// next moves to the next record's payload. Records are never empty, so
// one call always makes a byte available.
func (r *reader) next() {
	n := int(binary.BigEndian.Uint16(r.buf[r.end+3:]))
	r.pos, r.end = r.end+RecordHeader, r.end+RecordHeader+n
}

func (r *reader) u8() int {
	if r.pos == r.end {
		r.next()
	}
	c := r.buf[r.pos]
	r.pos++
	r.off++
	return int(c)
}

func (r *reader) u16() int { return r.u8()<<8 | r.u8() }

// vector reads the 16-bit length of a TLS vector that must fill the rest
// of its container, which ends at end.
func (r *reader) vector(end int) bool {
	if r.off+2 > end {
		return false
	}
	n := r.u16()
	return n == end-r.off
}

// entry reads the header of an entry of a list that ends at end: a type of
// typeLen bytes (1 or 2) and a 16-bit body length. ok is false if the
// header or the body would cross end.
func (r *reader) entry(typeLen, end int) (typ, n int, ok bool) {
	if r.off+typeLen+2 > end {
		return 0, 0, false
	}
	typ = r.num(typeLen)
	n = r.u16()
	return typ, n, r.off+n <= end
}

// skipVector skips a vector with a lenBytes-byte length (1 or 2) inside a
// container that ends at end. It returns errEnd when the length or the
// body would cross end, and bad when valid refuses the length.
func (r *reader) skipVector(lenBytes, end int, valid func(n int) bool, bad, errEnd error) error {
	if r.off+lenBytes > end {
		return errEnd
	}
	n := r.num(lenBytes)
	if !valid(n) {
		return bad
	}
	if r.off+n > end {
		return errEnd
	}
	r.skip(n)
	return nil
}

// num reads a big-endian integer of size bytes (1 or 2).
func (r *reader) num(size int) int {
	if size == 1 {
		return r.u8()
	}
	return r.u16()
}
func (r *reader) u24() int { return r.u8()<<16 | r.u8()<<8 | r.u8() }

func (r *reader) skip(n int) {
	for n > 0 {
		if r.pos == r.end {
			r.next()
		}
		k := min(n, r.end-r.pos)
		r.pos += k
		r.off += k
		n -= k
	}
}
