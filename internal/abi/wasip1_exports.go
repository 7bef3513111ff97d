//go:build wasip1 && !tinygo

package abi

import (
	"fmt"
	"unsafe"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// streamContext is a stream's context and its root's id: one map lookup per callback.
type streamContext struct {
	ctx  types.HttpContext
	root uint32
}

// calloutKey names an HTTP call: Envoy numbers calls per root context.
type calloutKey struct{ root, id uint32 }

// state is everything the callbacks below dispatch through. A VM runs one callback at a time
// (Envoy gives each worker its own VM), so no lock is needed.
var state = struct {
	vm       types.VMContext
	roots    map[uint32]types.PluginContext
	streams  map[uint32]streamContext
	callouts map[calloutKey]HTTPCallCallback
	// activeRoot is the root context of the callback now running, for DispatchHTTPCall.
	activeRoot uint32
	// configSize is the plugin configuration's size, told to proxy_on_configure.
	configSize int
}{
	roots:    map[uint32]types.PluginContext{},
	streams:  map[uint32]streamContext{},
	callouts: map[calloutKey]HTTPCallCallback{},
}

// depth counts the module's callbacks now running: a host could call one from inside a host
// call (Envoy does not, but nothing forbids it), and views must survive until the outermost
// returns. Every callback but proxy_on_memory_allocate calls enter first and defers
// recovered, which leaves.
var depth int

func enter() {
	if depth == 0 {
		rewindArena()
	}
	depth++
}

// recovered turns a panic in a callback into a critical log line, so a plugin bug never traps
// the VM (a trap fails every later request on this worker). onPanic sets the callback's safe
// result.
func recovered(callback string, onPanic func()) {
	depth--
	if r := recover(); r != nil {
		Log(LogLevelCritical, fmt.Sprintf("jtiguard: panic in %s: %v", callback, r))
		clearAllocations()
		if onPanic != nil {
			onPanic()
		}
	}
}

var jsonContentType = encodeHeaderMap([][2]string{{"content-type", "application/json"}})

// failStream answers a stream whose callback panicked. An authentication filter must not let
// a request through because it crashed, so the safe result is a local 500.
func failStream(action *uint32) func() {
	return func() {
		_ = SendHTTPResponse(500, "jtiguard_panic", jsonContentType,
			[]byte(`{"msg":"Internal error in the token revocation filter"}`))
		*action = uint32(types.ActionPause)
	}
}

//go:wasmexport proxy_abi_version_0_2_1
func proxyABIVersion() {}

//go:wasmexport proxy_on_memory_allocate
func proxyOnMemoryAllocate(size uint32) unsafe.Pointer { return allocate(size) }

//go:wasmexport proxy_on_context_create
func proxyOnContextCreate(contextID, parentID uint32) {
	enter()
	defer recovered("proxy_on_context_create", nil)
	if parentID == 0 {
		if state.vm == nil {
			panic("no VM context registered: call abi.SetVMContext in init")
		}
		state.roots[contextID] = state.vm.NewPluginContext(contextID)
		return
	}
	root, ok := state.roots[parentID]
	if !ok {
		return
	}
	state.activeRoot = parentID
	if ctx := root.NewHttpContext(contextID); ctx != nil {
		state.streams[contextID] = streamContext{ctx, parentID}
	}
}

//go:wasmexport proxy_on_vm_start
func proxyOnVMStart(rootID, vmConfigSize uint32) (ok bool) {
	enter()
	defer recovered("proxy_on_vm_start", func() { ok = false })
	state.activeRoot = rootID
	return bool(state.vm.OnVMStart(int(vmConfigSize)))
}

//go:wasmexport proxy_on_configure
func proxyOnConfigure(rootID, configSize uint32) (ok bool) {
	enter()
	defer recovered("proxy_on_configure", func() { ok = false })
	root, found := state.roots[rootID]
	if !found {
		return false
	}
	state.activeRoot = rootID
	state.configSize = int(configSize)
	return bool(root.OnPluginStart(int(configSize)))
}

//go:wasmexport proxy_on_tick
func proxyOnTick(rootID uint32) {
	enter()
	defer recovered("proxy_on_tick", nil)
	if root, ok := state.roots[rootID]; ok {
		state.activeRoot = rootID
		root.OnTick()
	}
}

//go:wasmexport proxy_on_queue_ready
func proxyOnQueueReady(rootID, queueID uint32) {
	enter()
	defer recovered("proxy_on_queue_ready", nil)
	if root, ok := state.roots[rootID]; ok {
		state.activeRoot = rootID
		root.OnQueueReady(queueID)
	}
}

//go:wasmexport proxy_on_http_call_response
func proxyOnHTTPCallResponse(rootID, callID, numHeaders, bodySize, numTrailers uint32) {
	enter()
	defer recovered("proxy_on_http_call_response", nil)
	key := calloutKey{rootID, callID}
	cb, ok := state.callouts[key]
	if !ok {
		return
	}
	delete(state.callouts, key)
	state.activeRoot = rootID
	cb(int(numHeaders), int(bodySize), int(numTrailers))
}

// stream finds a stream context and makes its root the active one.
func stream(contextID uint32) types.HttpContext {
	st, ok := state.streams[contextID]
	if ok {
		state.activeRoot = st.root
	}
	return st.ctx
}

//go:wasmexport proxy_on_request_headers
func proxyOnRequestHeaders(contextID, numHeaders, endOfStream uint32) (action uint32) {
	enter()
	defer recovered("proxy_on_request_headers", failStream(&action))
	if ctx := stream(contextID); ctx != nil {
		return uint32(ctx.OnHttpRequestHeaders(int(numHeaders), endOfStream != 0))
	}
	return uint32(types.ActionContinue)
}

//go:wasmexport proxy_on_request_body
func proxyOnRequestBody(contextID, bodySize, endOfStream uint32) (action uint32) {
	enter()
	defer recovered("proxy_on_request_body", failStream(&action))
	if ctx := stream(contextID); ctx != nil {
		return uint32(ctx.OnHttpRequestBody(int(bodySize), endOfStream != 0))
	}
	return uint32(types.ActionContinue)
}

//go:wasmexport proxy_on_request_trailers
func proxyOnRequestTrailers(contextID, numTrailers uint32) (action uint32) {
	enter()
	defer recovered("proxy_on_request_trailers", failStream(&action))
	if ctx := stream(contextID); ctx != nil {
		return uint32(ctx.OnHttpRequestTrailers(int(numTrailers)))
	}
	return uint32(types.ActionContinue)
}

// Response callbacks continue after a panic: the request was already admitted, and a local
// reply can no longer replace headers that may have gone downstream.
func continueStream(action *uint32) func() { return func() { *action = uint32(types.ActionContinue) } }

//go:wasmexport proxy_on_response_headers
func proxyOnResponseHeaders(contextID, numHeaders, endOfStream uint32) (action uint32) {
	enter()
	defer recovered("proxy_on_response_headers", continueStream(&action))
	if ctx := stream(contextID); ctx != nil {
		return uint32(ctx.OnHttpResponseHeaders(int(numHeaders), endOfStream != 0))
	}
	return uint32(types.ActionContinue)
}

//go:wasmexport proxy_on_response_body
func proxyOnResponseBody(contextID, bodySize, endOfStream uint32) (action uint32) {
	enter()
	defer recovered("proxy_on_response_body", continueStream(&action))
	if ctx := stream(contextID); ctx != nil {
		return uint32(ctx.OnHttpResponseBody(int(bodySize), endOfStream != 0))
	}
	return uint32(types.ActionContinue)
}

//go:wasmexport proxy_on_response_trailers
func proxyOnResponseTrailers(contextID, numTrailers uint32) (action uint32) {
	enter()
	defer recovered("proxy_on_response_trailers", continueStream(&action))
	if ctx := stream(contextID); ctx != nil {
		return uint32(ctx.OnHttpResponseTrailers(int(numTrailers)))
	}
	return uint32(types.ActionContinue)
}

//go:wasmexport proxy_on_log
func proxyOnLog(contextID uint32) {
	enter()
	defer recovered("proxy_on_log", nil)
	if ctx := stream(contextID); ctx != nil {
		ctx.OnHttpStreamDone()
	}
}

//go:wasmexport proxy_on_done
func proxyOnDone(contextID uint32) (done bool) {
	enter()
	defer recovered("proxy_on_done", func() { done = true })
	if root, ok := state.roots[contextID]; ok {
		state.activeRoot = contextID
		return root.OnPluginDone()
	}
	return true
}

//go:wasmexport proxy_on_delete
func proxyOnDelete(contextID uint32) {
	enter()
	defer recovered("proxy_on_delete", nil)
	if ctx, ok := state.streams[contextID].ctx.(Releaser); ok {
		ctx.Release()
	}
	delete(state.streams, contextID)
	if _, ok := state.roots[contextID]; ok {
		delete(state.roots, contextID)
		for key := range state.callouts {
			if key.root == contextID {
				delete(state.callouts, key)
			}
		}
	}
}
