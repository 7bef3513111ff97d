//go:build wasip1 && jtiguard_testexports

package main

import (
	"runtime"
	"runtime/metrics"
	"time"
)

// Test-only export, in a module built with -tags jtiguard_testexports (as the counters of
// internal/abi): how many garbage-collection stop-the-world pauses the VM has made so far.
// Every collection starts with one (sweep termination) and ends with at least one more (mark
// termination), so a host that reads this before and after a callback knows whether a
// collection started, or finished, inside it; NumGC alone changes only when a cycle ends,
// which may be in a later callback than the one that started it.

// gcPauses is read in place: after the first call, metrics.Read reuses its histogram and
// allocates nothing, so reading the counter cannot itself start a collection.
var gcPauses = []metrics.Sample{{Name: "/sched/pauses/stopping/gc:seconds"}}

//go:wasmexport jtiguard_test_gcpauses
func testGCPauses() uint32 {
	metrics.Read(gcPauses)
	var n uint64
	for _, c := range gcPauses[0].Value.Float64Histogram().Counts {
		n += c
	}
	return uint32(n)
}

// gcStats are what a collection on the tick costs and why, read by e2e's tick benchmark.
var gcStats = []metrics.Sample{
	{Name: "/gc/heap/live:bytes"},
	{Name: "/gc/scan/heap:bytes"},
	{Name: "/gc/scan/globals:bytes"},
	{Name: "/gc/heap/objects:objects"},
}

func gcStat(i int) uint32 {
	metrics.Read(gcStats)
	return uint32(gcStats[i].Value.Uint64())
}

//go:wasmexport jtiguard_test_heaplive
func testHeapLive() uint32 { return gcStat(0) }

//go:wasmexport jtiguard_test_scanheap
func testScanHeap() uint32 { return gcStat(1) }

//go:wasmexport jtiguard_test_scanglobals
func testScanGlobals() uint32 { return gcStat(2) }

//go:wasmexport jtiguard_test_heapobjects
func testHeapObjects() uint32 { return gcStat(3) }

// testGC runs a collection as the pacer's tick does and returns how long it took, in µs:
// what a collecting tick costs, read by e2e's BenchmarkTickCollection.
//
//go:wasmexport jtiguard_test_gc
func testGC() uint32 {
	t0 := time.Now()
	runtime.GC()
	return uint32(time.Since(t0).Microseconds())
}
