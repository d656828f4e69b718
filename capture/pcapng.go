package capture

import (
	"fmt"
	"io"
	"runtime"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Writer writes a capture's records as pcapng: one interface per queue
// (named INTERFACE:qN), each frame's direction in its flags and what the
// balancer did with it in its comment.
type Writer struct {
	w      *pcapgo.NgWriter
	ifaces map[uint16]int // queue -> pcapng interface index
	queues []int
	start  time.Time
	count  map[uint16]uint64
}

// NewWriter starts a pcapng file on w for the capture h describes.
func NewWriter(w io.Writer, h Header) (*Writer, error) {
	if len(h.Queues) == 0 {
		return nil, fmt.Errorf("capture: no queue to capture")
	}
	intf := func(q int) pcapgo.NgInterface {
		return pcapgo.NgInterface{
			Name:                fmt.Sprintf("%s:q%d", h.Interface, q),
			Description:         fmt.Sprintf("xlb queue %d of %s: frames as received (inbound) and as sent (outbound)", q, h.Interface),
			OS:                  runtime.GOOS,
			LinkType:            layers.LinkTypeEthernet,
			SnapLength:          uint32(h.Snaplen),
			TimestampResolution: 9, // the records carry nanoseconds
		}
	}
	ng, err := pcapgo.NewNgWriterInterface(w, intf(h.Queues[0]), pcapgo.NgWriterOptions{
		SectionInfo: pcapgo.NgSectionInfo{Hardware: runtime.GOARCH, OS: runtime.GOOS, Application: "xlb capture"},
	})
	if err != nil {
		return nil, fmt.Errorf("capture: pcapng: %w", err)
	}
	cw := &Writer{w: ng, ifaces: map[uint16]int{uint16(h.Queues[0]): 0}, queues: h.Queues, start: time.Now(), count: map[uint16]uint64{}}
	for _, q := range h.Queues[1:] {
		id, err := ng.AddInterface(intf(q))
		if err != nil {
			return nil, fmt.Errorf("capture: pcapng: %w", err)
		}
		cw.ifaces[uint16(q)] = id
	}
	return cw, nil
}

// Write writes one frame record.
func (w *Writer) Write(rec *Record) error {
	id, ok := w.ifaces[rec.Queue]
	if !ok {
		return fmt.Errorf("capture: frame from queue %d, which the header did not announce", rec.Queue)
	}
	dir := pcapgo.NgEpbFlagDirectionInbound
	if rec.Dir == TX {
		dir = pcapgo.NgEpbFlagDirectionOutbound
	}
	ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, rec.Time), CaptureLength: len(rec.Data), Length: int(rec.OrigLen), InterfaceIndex: id}
	opts := pcapgo.NgPacketOptions{Flags: &pcapgo.NgEpbFlags{Direction: dir}}
	if rec.Comment != "" {
		opts.Comments = []string{rec.Comment}
	}
	if err := w.w.WritePacketWithOptions(ci, rec.Data, opts); err != nil {
		return fmt.Errorf("capture: pcapng: %w", err)
	}
	w.count[rec.Queue]++
	return nil
}

// Finish writes each interface's statistics (frames captured, and those
// lost to a slow reader as dropped) and flushes the file.
func (w *Writer) Finish(s Summary) error {
	now := time.Now()
	for _, q := range w.queues {
		st := pcapgo.NgInterfaceStatistics{
			LastUpdate: now, StartTime: w.start, EndTime: now,
			PacketsReceived: w.count[uint16(q)], PacketsDropped: s.Lost[q],
		}
		if err := w.w.WriteInterfaceStats(w.ifaces[uint16(q)], st); err != nil {
			return fmt.Errorf("capture: pcapng: %w", err)
		}
	}
	if err := w.w.Flush(); err != nil {
		return fmt.Errorf("capture: pcapng: %w", err)
	}
	return nil
}

// Flush writes what is buffered, so that a reader on a pipe sees the
// frames so far.
func (w *Writer) Flush() error { return w.w.Flush() }
