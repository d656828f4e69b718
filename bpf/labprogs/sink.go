package labprogs

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// Indexes of the sink's counts map, as enum sink_counter in sink.c.
const (
	sinkFromLB = 0
	sinkOther  = 1
)

// Count is a number of frames and their bytes (Ethernet header included).
type Count struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// SinkCounts is what the sink has dropped so far, over every CPU.
type SinkCounts struct {
	FromLB Count `json:"from_lb"` // frames whose source MAC is the balancer's
	Other  Count `json:"other"`   // anything else (ARP, which is passed, is not counted)
}

// Sink is the loaded counting-and-dropping program.
type Sink struct {
	objs sinkObjects
}

// LoadSink loads the sink; frames whose source MAC is lbMAC count as
// FromLB.
func LoadSink(lbMAC [6]byte) (*Sink, error) {
	s := &Sink{}
	spec, err := loadSink()
	if err := load("sink", spec, err, map[string]any{"lb_mac": lbMAC}, &s.objs); err != nil {
		return nil, err
	}
	return s, nil
}

// Program is the XDP program to attach to the receiving interface.
func (s *Sink) Program() *ebpf.Program { return s.objs.XlbSink }

// Counts reads the counters.
func (s *Sink) Counts() (SinkCounts, error) {
	add := func(t *Count, v sinkSinkCount) { t.Packets += v.Packets; t.Bytes += v.Bytes }
	var c SinkCounts
	var err error
	if c.FromLB, err = sumPerCPU(s.objs.Counts, sinkFromLB, add); err != nil {
		return c, fmt.Errorf("labprogs: sink: %w", err)
	}
	if c.Other, err = sumPerCPU(s.objs.Counts, sinkOther, add); err != nil {
		return c, fmt.Errorf("labprogs: sink: %w", err)
	}
	return c, nil
}

// Close unloads the program and its map.
func (s *Sink) Close() error { return s.objs.Close() }
