package config

import "github.com/xlbproject/xlb/hash"

// BuildTable builds the Maglev table of backends (a VIP's or a splice
// route's) with size slots. Each backend weighs its EffectiveWeight, or
// nothing while down reports that a health check holds it down, so the
// datapath and the splice proxy give a backend the same share.
func BuildTable(backends []Backend, size uint32, down func(Backend) bool) (*hash.Table, error) {
	bs := make([]hash.Backend, len(backends))
	for i, b := range backends {
		w := b.EffectiveWeight()
		if down(b) {
			w = 0
		}
		bs[i] = hash.Backend{Addr: b.Address, Weight: w}
	}
	return hash.Build(bs, size)
}
