//go:build wasip1 && jtiguard_testexports

package main

import "runtime/metrics"

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
