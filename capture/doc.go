// Package capture is what `xlb capture` is made of: the filter a capture
// request names, the bounded per-worker buffer the AF_XDP workers copy
// matching frames into, the records that carry those frames over the
// control socket, and the pcapng file they end up in.
//
// # Model
//
// A capture is one request on the control socket. The engine gives each
// worker whose queue the filter admits a Ring of fixed-size slots and the
// worker, which loads its ring pointer once per batch (the whole cost of
// capture while none runs), copies each frame the filter matches into the
// next free slot: the frame as received, before the worker rewrites it in
// place, and the frame as sent, after encapsulation. The engine drains the
// rings and streams each slot as a Record, with the backend the frame went
// to or the reason it was dropped, to the client, which writes pcapng.
//
// In native mode no worker sees the frames: the lb XDP program copies them
// into a BPF ring buffer (bpf's LBCapture) and the engine turns its records
// into the same Meta and Records, so the stream, the client and the pcapng
// file are the same in both modes.
//
// # Contracts
//
//   - A Ring is single-producer single-consumer: the worker that owns it
//     writes, one engine goroutine reads. Neither ever waits or takes a
//     lock; the producer copies into a slot it reserved and publishes it
//     with one atomic store.
//   - Forwarding never waits for a capture. When the reader is slow and the
//     ring is full, the frame is forwarded as usual and left out of the
//     capture, and the ring counts it (Lost); the client reports the count
//     at the end and in the file's interface statistics.
//   - Neither Reserve nor Commit nor the filter allocates: they run on the
//     per-packet path while a capture is active.
//   - Everything read from the socket (the request, the records) is
//     checked and bounded: a malformed request is an error, a malformed or
//     oversized record ends the stream with an error, never a panic.
//
// # Wire format
//
// The capture command answers with one JSON line (Header), then a stream of
// records, each a 4-byte big-endian length and that many bytes: a frame
// (type 1) or, last, the end of the capture (type 2, JSON Summary). The
// client asks the server to stop by closing its writing half of the
// connection; the server then drains what the rings hold, sends the
// summary and closes.
package capture
