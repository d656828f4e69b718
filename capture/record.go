package capture

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
)

// Header is the capture command's JSON answer, before the records: what
// the client needs to describe the capture in its file.
type Header struct {
	Interface string `json:"interface"`
	Queues    []int  `json:"queues"` // the queues captured, one pcapng interface each
	Snaplen   int    `json:"snaplen"`
}

// Summary is the last record: what the capture saw and lost.
type Summary struct {
	Captured uint64 `json:"captured"` // frames sent to the client
	// Lost counts, per queue, the matching frames left out of the capture
	// because the reader was too slow (they were forwarded as usual).
	Lost  map[int]uint64 `json:"lost"`
	Error string         `json:"error,omitempty"` // why the capture ended early
}

// Record types.
const (
	recFrame = 1
	recEnd   = 2
)

// frameHeaderLen is a frame record's fixed part after its type byte.
const frameHeaderLen = 8 + 4 + 2 + 1 + 2

// MaxRecord bounds a record: a frame of MaxSnaplen with a comment, or a
// summary.
const MaxRecord = 1 + frameHeaderLen + MaxComment + MaxSnaplen

// MaxComment bounds a frame's comment.
const MaxComment = 1024

// Record is one record of the stream: a frame, or (End set) the summary.
type Record struct {
	End     bool
	Summary Summary // End
	Time    int64   // Unix nanoseconds
	OrigLen uint32
	Queue   uint16
	Dir     Direction
	Comment string
	Data    []byte
}

// AppendFrame appends m's frame record, with comment, to b.
func AppendFrame(b []byte, m *Meta, comment string, data []byte) []byte {
	comment = comment[:min(len(comment), MaxComment)]
	n := 1 + frameHeaderLen + len(comment) + len(data)
	b = binary.BigEndian.AppendUint32(b, uint32(n))
	b = append(b, recFrame)
	b = binary.BigEndian.AppendUint64(b, uint64(m.Time))
	b = binary.BigEndian.AppendUint32(b, m.OrigLen)
	b = binary.BigEndian.AppendUint16(b, m.Queue)
	b = append(b, byte(m.Dir))
	b = binary.BigEndian.AppendUint16(b, uint16(len(comment)))
	b = append(b, comment...)
	return append(b, data...)
}

// AppendEnd appends the summary record to b.
func AppendEnd(b []byte, s Summary) ([]byte, error) {
	j, err := json.Marshal(s)
	if err != nil {
		return b, err
	}
	b = binary.BigEndian.AppendUint32(b, uint32(1+len(j)))
	b = append(b, recEnd)
	return append(b, j...), nil
}

// ErrTruncated: the stream ended without a summary record.
var ErrTruncated = errors.New("capture stream ended without its summary")

// Reader reads records from a stream.
type Reader struct {
	r   io.Reader
	buf []byte
}

// NewReader reads records from r.
func NewReader(r io.Reader) *Reader { return &Reader{r: r, buf: make([]byte, MaxRecord)} }

// Next reads the next record. Its Data is valid until the next call.
func (r *Reader) Next() (Record, error) {
	var l [4]byte
	if _, err := io.ReadFull(r.r, l[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return Record{}, ErrTruncated
		}
		return Record{}, fmt.Errorf("capture: read record: %w", err)
	}
	n := binary.BigEndian.Uint32(l[:])
	if n == 0 || n > MaxRecord {
		return Record{}, fmt.Errorf("capture: record of %d bytes: want 1 to %d", n, MaxRecord)
	}
	b := r.buf[:n]
	if _, err := io.ReadFull(r.r, b); err != nil {
		return Record{}, fmt.Errorf("capture: read record: %w", err)
	}
	return DecodeRecord(b)
}

// DecodeRecord decodes one record (without its length prefix). A frame's
// Comment is a copy; its Data aliases b.
func DecodeRecord(b []byte) (Record, error) {
	switch {
	case len(b) == 0:
		return Record{}, errors.New("capture: empty record")
	case b[0] == recEnd:
		var rec Record
		rec.End = true
		if err := json.Unmarshal(b[1:], &rec.Summary); err != nil {
			return Record{}, fmt.Errorf("capture: summary record: %w", err)
		}
		return rec, nil
	case b[0] != recFrame:
		return Record{}, fmt.Errorf("capture: record type %d unknown", b[0])
	case len(b) < 1+frameHeaderLen:
		return Record{}, fmt.Errorf("capture: frame record of %d bytes is too short", len(b))
	}
	h := b[1:]
	rec := Record{
		Time:    int64(binary.BigEndian.Uint64(h[0:])),
		OrigLen: binary.BigEndian.Uint32(h[8:]),
		Queue:   binary.BigEndian.Uint16(h[12:]),
		Dir:     Direction(h[14]),
	}
	cl := int(binary.BigEndian.Uint16(h[15:]))
	rest := h[frameHeaderLen:]
	switch {
	case rec.Dir != RX && rec.Dir != TX:
		return Record{}, fmt.Errorf("capture: frame direction %d unknown", rec.Dir)
	case cl > MaxComment || cl > len(rest):
		return Record{}, fmt.Errorf("capture: frame comment of %d bytes does not fit", cl)
	}
	rec.Comment, rec.Data = string(rest[:cl]), rest[cl:]
	if len(rec.Data) > MaxSnaplen || uint64(len(rec.Data)) > uint64(rec.OrigLen) {
		return Record{}, fmt.Errorf("capture: frame of %d bytes captured, %d on the wire", len(rec.Data), rec.OrigLen)
	}
	return rec, nil
}
