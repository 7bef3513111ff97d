//go:build wasip1

package filter

import (
	"os"
	"runtime"
	"runtime/debug"
)

// A worker VM runs one callback at a time, so a garbage collection that starts inside a
// request callback stalls that request for the whole mark phase: the long tail of the V8 and
// wazero benchmarks. The request path allocates nothing in steady state, and what must allocate
// (a new snapshot, a sync, a cold verification) is paid for here instead: proportional
// collection is off, the tick collects when enough was allocated since the last collection, and
// a memory limit with ample headroom stays as the safety net for a burst between two ticks.
//
// What a collection on the tick costs does not grow with the list: a snapshot is a few
// pointer-free buffers (the record as shared data holds it and its bucket directory), which
// the mark phase takes as one object each and never scans; the cost is the fixed mark of the
// runtime's and the filter's own objects (about 330 KB to scan) and the sweep of the spans
// the small garbage since the last collection left, so it follows the budget below. What did grow
// with the list was the garbage: every new generation was read into a new buffer, 13 MB for a
// million entries, several times between two ticks, past the memory limit inside requests.
// The list's reader now reads each generation into the buffer of the one before the list it
// holds (blocklistsync.sharedDataInto), so a new generation allocates nothing once the list's
// size settles; when a buffer must be allocated anew (the first two generations, or a list
// that outgrew its room), grew raises the limit by as much, so that memory the list needs is
// not taken for garbage, and the next tick collects and sets the limit again.
//
// GOGC or GOMEMLIMIT in the VM's environment (Envoy vm_config.environment_variables, Istio
// vmConfig.env) leave the runtime's own pacing in place.

// gcBudget is how much may be allocated between two collections on the tick.
const gcBudget = 4 << 20

// gcHeadroom is what the memory limit leaves above twice the live heap.
const gcHeadroom = 32 << 20

type gcPacer struct {
	enabled   bool
	lastAlloc uint64 // TotalAlloc at the last collection
	limit     int64  // the memory limit set
}

// vmPacer is the VM's one pacer: every plugin context of the VM shares the heap.
var vmPacer *gcPacer

func newGCPacer() *gcPacer {
	if vmPacer != nil {
		return vmPacer
	}
	vmPacer = &gcPacer{}
	if os.Getenv("GOGC") == "" && os.Getenv("GOMEMLIMIT") == "" {
		vmPacer.enabled = true
		debug.SetGCPercent(-1)
		vmPacer.collect()
	}
	return vmPacer
}

// tick collects if the budget was spent since the last collection.
func (g *gcPacer) tick() {
	if !g.enabled {
		return
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	if ms.TotalAlloc-g.lastAlloc >= gcBudget || ms.NumGC == 0 {
		g.collect()
	}
}

func (g *gcPacer) collect() {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	g.lastAlloc = ms.TotalAlloc
	g.limit = int64(2*ms.HeapAlloc) + gcHeadroom
	debug.SetMemoryLimit(g.limit)
}

// grew is told that n bytes were allocated for the list (a snapshot buffer, see above): the
// limit moves up by as much, which never starts a collection, and comes back down to twice
// the live heap plus the headroom at the next tick's collection (n is far above its budget).
func (g *gcPacer) grew(n int) {
	if !g.enabled || n <= 0 {
		return
	}
	g.limit += int64(n)
	debug.SetMemoryLimit(g.limit)
}
