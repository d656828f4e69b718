package metrics

import (
	"sync"
	"time"

	"github.com/xlbproject/xlb/engine"
)

// Source is what the endpoint reads from a running xlb. Its methods are
// called on HTTP handler goroutines, possibly at the same time, and never
// on the datapath.
type Source interface {
	// Stats reads every counter once: one call per scrape.
	Stats() engine.Stats
	// Reloads is the outcome of the config loads so far.
	Reloads() ReloadStatus
	// Ready returns nil when the datapath is attached and every worker
	// runs, else the reason it is not ready.
	Ready() error
	// Build says which binary runs.
	Build() Build
}

// Build identifies the running binary (`xlb version` reads the same build
// info). Empty fields are exposed as "unknown".
type Build struct {
	Version   string // module version, "(devel)" for a build from a checkout
	Revision  string // VCS revision
	GoVersion string
}

// ReloadStatus is the outcome of the config loads so far.
type ReloadStatus struct {
	// Successful reports whether the last load (at start or a reload)
	// succeeded.
	Successful bool
	// LastSuccess is when a config last loaded successfully (zero: never).
	LastSuccess time.Time
}

// Reloads records config load outcomes for a Source. The zero value has
// seen none; it is safe for concurrent use.
type Reloads struct {
	mu sync.Mutex
	st ReloadStatus
}

// Record notes one load at now: err nil is a success.
func (r *Reloads) Record(err error, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.st.Successful = err == nil
	if err == nil {
		r.st.LastSuccess = now
	}
}

// Status returns what Record noted last.
func (r *Reloads) Status() ReloadStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.st
}
