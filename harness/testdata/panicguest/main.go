// Command panicguest is a deliberately tiny proxy-wasm guest for the trap
// test of the harness: it exports only what the harness requires and panics
// (a nil map write, unrecovered) in proxy_on_request_headers when it gets
// more than 6 headers. It is not an SDK; it imports nothing from env.
package main

import "unsafe"

func main() {}

var keep [][]byte // allocations handed to the host stay reachable

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(n uint32) unsafe.Pointer {
	b := make([]byte, n)
	keep = append(keep, b)
	return unsafe.Pointer(&b[0])
}

//go:wasmexport proxy_on_context_create
func onContextCreate(id, parent uint32) {}

//go:wasmexport proxy_on_request_headers
func onRequestHeaders(id, n, eos uint32) uint32 {
	if n > 6 {
		var m map[string]int
		m["boom"] = 1
	}
	return 0
}
