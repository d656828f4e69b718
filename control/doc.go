// Package control is the local control channel between a running `xlb run`
// and the `xlb` commands that talk to it (`xlb stats`, `xlb reload`).
//
// # The socket and who may use it
//
// The channel is a Unix stream socket whose path comes from the config
// (`[control] socket`). One rule decides who may use it: root. The socket is
// created 0600 (under a umask, so it is never looser, not even for an
// instant), and the server checks every peer's credentials (SO_PEERCRED) and
// refuses any uid but 0, even if the file's mode was loosened by hand. The
// server's own user is not a second rule: xlb runs as root.
//
// Listen does not take over the path blindly. A missing directory is created
// 0700. An existing directory must belong to the server's user and be
// writable by nobody else (no group or other write bit, sticky or not):
// whoever can write to it could put a socket of their own in xlb's place.
// Such a directory is refused with its mode or owner in the message
// (ErrUnsafeDir), never chmod-ed or chown-ed: xlb cannot tell that it made
// the directory, and changing one that others use (/run, /tmp) is not its
// call. At the path itself only a stale Unix socket (a crashed instance's:
// nothing answers on it) is removed; a live one is ErrInUse, and anything
// else (a regular file, a directory, a link, a pipe) is ErrNotSocket, with
// its path and type, and is left as it was. Close removes the socket.
//
// # Protocol
//
// One JSON request and one JSON response per connection: small, debuggable
// with `socat`, and free of any framing state. A request is at most 1 MiB
// and must arrive within 5 s of the connection; the handler then takes as
// long as it takes (a reload that builds large tables may take many
// seconds) and the client waits for it. Only writing the answer is bounded
// again (5 s), so a client that stalls costs a goroutine for seconds, not
// forever. A handler's context ends only when the server closes.
//
// Streams. A handler may answer with a Streamer (`xlb capture` does): the
// answer line is then its header, and the same connection goes on carrying
// whatever Stream writes, in the handler's own framing, until Stream
// returns and the server closes. The client ends a stream by closing its
// writing half (Stream.Stop), which the server sees as EOF on its read
// side and turns into the end of Stream's context, so the handler can send
// a last summary; each write is bounded (30 s: a reader such as tshark may
// pause), so a client that stops reading ends the stream rather than
// holding it. One request, one
// connection still holds: a stream is one long answer, never a second
// request.
//
// Call waits as long as its context allows. Its errors say what happened to
// the request, so that a command never claims more than it knows:
// ErrNotRunning (nothing listens: the request never left), *RemoteError (the
// server answered with an error: the request was refused or failed there),
// ErrNoAnswer (the context ended first: the server may still be working on
// it, a reload may still be applied).
//
// # Availability
//
// The accept loop never ends while the server runs. A failed accept
// (EMFILE or ENFILE when descriptors run out, ENOBUFS, ENOMEM, ECONNABORTED)
// is logged and retried after a wait that doubles from 5 ms to a cap of 1 s,
// as net/http's Server does; a client waiting in the backlog meanwhile is
// served once accept succeeds again.
package control
