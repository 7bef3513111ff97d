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
// GOGC or GOMEMLIMIT in the VM's environment (Envoy vm_config.environment_variables, Istio
// vmConfig.env) leave the runtime's own pacing in place.

// gcBudget is how much may be allocated between two collections on the tick.
const gcBudget = 4 << 20

// gcHeadroom is what the memory limit leaves above twice the live heap.
const gcHeadroom = 32 << 20

type gcPacer struct {
	enabled   bool
	lastAlloc uint64 // TotalAlloc at the last collection
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
	debug.SetMemoryLimit(int64(2*ms.HeapAlloc) + gcHeadroom)
}
