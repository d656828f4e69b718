// Package sni reads the server name a TLS client asks for, and maps it to
// a route.
//
// # ClientHello
//
// Parse reads the TLS ClientHello at the start of the bytes a client sent:
// TLS records (RFC 8446 section 5.1) of type handshake carrying one
// handshake message of type client_hello, whose server_name extension
// (RFC 6066 section 3) holds a host_name. It is what a TLS passthrough
// proxy needs to route a connection without terminating TLS.
//
// Parse works on the proxy's read buffer as it fills. It returns
// ErrIncomplete and the number of bytes it needs before it can say more
// (always the end of a whole record), so a caller that reads until it has
// them parses each connection at most once per record, however slowly the
// client sends. Everything is bounded: a record is at most MaxRecord bytes
// of payload, as RFC 8446 allows, and the whole ClientHello, records and
// headers included, at most the limit the caller passes.
//
// A ClientHello split over several records is reassembled, up to that
// limit: TLS allows it, some clients (and tools that evade SNI filters)
// do it, and refusing them would be a failure a user cannot see the reason
// for. The records must be consecutive handshake records; the message is
// read through them in place, so Parse allocates nothing: the server name,
// which may straddle two records, is copied into a fixed array in Hello.
//
// Every malformed input is an error naming what is wrong, of one of three
// kinds (Reason): NotTLS (the first record is not a TLS handshake record:
// plain HTTP, SSH, a TLS alert), Malformed (a handshake record whose
// content is not a well-formed ClientHello) and TooLarge (a ClientHello
// beyond the caller's limit). A ClientHello without a server_name
// extension is not an error: Hello.ServerName is then empty, and the
// router decides.
//
// Server names are returned in lower case and without a trailing dot:
// DNS names are case-insensitive and "example.com." names the same host
// as "example.com".
//
// # Routes
//
// A Table maps server names to route indexes. Patterns are exact names
// ("api.example.com") or one-level wildcards ("*.example.com", which
// matches "a.example.com" but neither "a.b.example.com" nor
// "example.com", as a certificate's wildcard does, RFC 6125 section 6.4.3).
// The most specific pattern wins: an exact name before a wildcard. Since a
// wildcard stands for exactly one label, at most one wildcard can match a
// name, so there is no order to configure. A name no pattern matches takes
// the table's default route, if any.
package sni
