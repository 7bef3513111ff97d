// Command bodyguest is a tiny proxy-wasm guest for the request-body tests of localproxy. It
// is not an SDK and not jtiguard: it pauses on request headers when a body follows, reads
// the whole buffered body on each proxy_on_request_body call, and
//   - answers 403 "denied" as soon as the buffered body contains DENY;
//   - otherwise pauses until end_of_stream, then adds the request header
//     x-guest-saw: "calls=<n> size=<buffered size at the last call>" and continues.
//
// The request header x-body-mode changes that: "continue" continues on headers and on every
// body chunk (streaming), "forever" pauses on everything, even at end of stream.
package main

import (
	"bytes"
	"strconv"
	"unsafe"
)

func main() {}

//go:wasmimport env proxy_get_buffer_bytes
func getBufferBytes(bufferType, start, maxSize uint32, retData, retSize unsafe.Pointer) uint32

//go:wasmimport env proxy_get_header_map_value
func getHeaderMapValue(mapType uint32, key unsafe.Pointer, keySize uint32, retData, retSize unsafe.Pointer) uint32

//go:wasmimport env proxy_add_header_map_value
func addHeaderMapValue(mapType uint32, key unsafe.Pointer, keySize uint32, value unsafe.Pointer, valueSize uint32) uint32

//go:wasmimport env proxy_send_local_response
func sendLocalResponse(status uint32, details unsafe.Pointer, detailsSize uint32, body unsafe.Pointer, bodySize uint32,
	headers unsafe.Pointer, headersSize uint32, grpcStatus int32) uint32

var keep = map[uintptr][]byte{} // allocations handed to the host stay reachable

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(n uint32) unsafe.Pointer {
	b := make([]byte, max(n, 1))
	p := unsafe.Pointer(&b[0])
	keep[uintptr(p)] = b
	return p
}

type stream struct {
	mode  string
	calls int
}

var streams = map[uint32]*stream{}

//go:wasmexport proxy_on_context_create
func onContextCreate(id, parent uint32) {
	if parent != 0 {
		streams[id] = &stream{}
	}
}

//go:wasmexport proxy_on_delete
func onDelete(id uint32) { delete(streams, id) }

func ptr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

func take(p, n uint32) []byte {
	if p == 0 {
		return nil
	}
	b := keep[uintptr(p)]
	delete(keep, uintptr(p))
	return b[:n]
}

func header(name string) string {
	var p, n uint32
	k := []byte(name)
	if getHeaderMapValue(0, ptr(k), uint32(len(k)), unsafe.Pointer(&p), unsafe.Pointer(&n)) != 0 {
		return ""
	}
	return string(take(p, n))
}

//go:wasmexport proxy_on_request_headers
func onRequestHeaders(id, n, eos uint32) uint32 {
	s := streams[id]
	s.mode = header("x-body-mode")
	if s.mode == "continue" || (eos != 0 && s.mode != "forever") {
		return 0
	}
	return 1
}

//go:wasmexport proxy_on_request_body
func onRequestBody(id, size, eos uint32) uint32 {
	s := streams[id]
	s.calls++
	var p, n uint32
	var body []byte
	if getBufferBytes(0, 0, size, unsafe.Pointer(&p), unsafe.Pointer(&n)) == 0 {
		body = take(p, n)
	}
	if bytes.Contains(body, []byte("DENY")) {
		msg := []byte("denied")
		details := []byte("bodyguest_denied")
		sendLocalResponse(403, ptr(details), uint32(len(details)), ptr(msg), uint32(len(msg)), nil, 0, -1)
		return 1
	}
	switch {
	case s.mode == "forever":
		return 1
	case s.mode == "continue":
		return 0
	case eos == 0:
		return 1
	}
	k := []byte("x-guest-saw")
	v := []byte("calls=" + strconv.Itoa(s.calls) + " size=" + strconv.Itoa(len(body)))
	addHeaderMapValue(0, ptr(k), uint32(len(k)), ptr(v), uint32(len(v)))
	return 0
}
