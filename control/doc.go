// Package control is the local control channel between a running `xlb run`
// and the `xlb` commands that inspect it (`xlb stats`; later `xlb reload`).
//
// The channel is a Unix stream socket whose path comes from the config
// (`[control] socket`). Its directory is created 0700 and the socket 0600, so
// only root (or the owner) can open it, and the server also checks the peer's
// credentials (SO_PEERCRED): a connection from any other uid is refused even
// if the file mode was loosened by hand.
//
// The protocol is one JSON request and one JSON response per connection:
// small, debuggable with `socat`, and free of any framing state. The server
// owns the socket file: Close removes it, and a stale file left by a crashed
// instance is replaced only when nothing answers on it.
package control
