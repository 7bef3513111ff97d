//go:build wasip1 && !tinygo && jtiguard_testexports

package abi

import "runtime"

// Test-only exports, in a module built with -tags jtiguard_testexports: the allocation and
// collection counters that prove the request path allocates nothing inside the VM. A real
// build has none of them.

//go:wasmexport jtiguard_test_mallocs
func testMallocs() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.Mallocs
}

//go:wasmexport jtiguard_test_numgc
func testNumGC() uint32 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.NumGC
}
