package bpf

import (
	"fmt"
	"math"

	"github.com/cilium/ebpf"
)

// SteerOptions configures LoadSteer.
type SteerOptions struct {
	// SpliceTableSize is the number of spliced pairs (two splice map
	// entries each) the steer program's splice maps hold; 0 leaves the
	// splice out of the program (Steer.SpliceMaps reports none).
	SpliceTableSize int
}

// maxSplicePairs bounds SpliceTableSize: both directions' entries and
// counters must index a u32 array.
const maxSplicePairs = math.MaxUint32 / 2

func (o SteerOptions) validate() error {
	if o.SpliceTableSize < 0 || o.SpliceTableSize > maxSplicePairs {
		return fmt.Errorf("bpf: splice table size %d out of range 0..%d", o.SpliceTableSize, maxSplicePairs)
	}
	return nil
}

// steerSpec returns the steer collection sized and configured by opts.
func steerSpec(opts SteerOptions) (*ebpf.CollectionSpec, error) {
	spec, err := loadSteer()
	if err != nil {
		return nil, fmt.Errorf("bpf: load steer: %w", err)
	}
	if n := uint32(opts.SpliceTableSize); n > 0 {
		spec.Maps[steerMapSplice].MaxEntries = 2 * n
		spec.Maps[steerMapSplicePairs].MaxEntries = n
		spec.Maps[steerMapSpliceCounts].MaxEntries = 2 * n
		if err := spec.Variables[steerVarSpliceOn].Set(uint32(1)); err != nil {
			return nil, fmt.Errorf("bpf: steer: enable splice: %w", err)
		}
	}
	return spec, nil
}

// SpliceMaps are the steer program's splice maps (bpf/splice.h), which
// package splice manages: Splice (hash: SpliceKey -> SpliceDir, two
// entries per pair), Pairs (array of SplicePair, one per pair slot) and
// Counts (per-CPU array of SpliceCount, index pair*2 + direction).
type SpliceMaps struct {
	Splice, Pairs, Counts *ebpf.Map
}

// SpliceMaps returns the splice maps, and false if the program was loaded
// without splice (SteerOptions.SpliceTableSize 0). They stay owned by the
// Steer: Close closes them.
func (s *Steer) SpliceMaps() (SpliceMaps, bool) {
	if !s.splice {
		return SpliceMaps{}, false
	}
	return SpliceMaps{Splice: s.objs.Splice, Pairs: s.objs.SplicePairs, Counts: s.objs.SpliceCounts}, true
}

// SpliceKey mirrors struct splice_key: a packet's 4-tuple as it arrives.
// An IPv4 address is in the first 4 bytes of its array, the rest zero;
// ports are in network byte order.
type SpliceKey struct {
	Family       uint8
	_            [3]byte
	Saddr, Daddr [16]byte
	Sport, Dport [2]byte
}

// SpliceDir mirrors struct splice_dir: how one direction's packets are
// rewritten and where they go (see bpf/splice.h for each field).
type SpliceDir struct {
	Saddr, Daddr           [16]byte
	Sport, Dport           [2]byte
	Dmac, Smac             [6]byte
	Ifindex                uint32
	SeqDelta, AckDelta     uint32
	WscaleIn, WscaleOut    uint8
	Flags                  uint8
	Dir                    uint8
	TSBase, TSecrBase      uint32
	IPCsumDiff, L4CsumDiff uint32
	Pair                   uint32
}

// SpliceDir.Flags, mirroring SPLICE_* in bpf/splice.h.
const (
	SpliceSACKXlate = 1
	SpliceSACKStrip = 2
	SpliceTSXlate   = 4
)

// SplicePair.State bits, mirroring bpf/splice.h.
const (
	SpliceFINClient  = 1
	SpliceFINBackend = 2
	SpliceRST        = 4
)

// SpliceTSSet is the bit of SplicePair.TSDelta that says its low 32 bits
// hold the direction's TSval offset.
const SpliceTSSet = 1 << 32

// SplicePair mirrors struct splice_pair: the end state and activity of a
// pair, shared by both directions.
type SplicePair struct {
	State   uint32
	_       uint32
	LastNs  uint64
	LastSeq [2]uint32
	LastAck [2]uint32
	TSDelta [2]uint64
}

// SpliceCount mirrors struct splice_count (per CPU).
type SpliceCount struct {
	Packets, Bytes uint64
}
