// Package abi is the one door between the plugin and its host.
//
// The plugin is written against the tetratelabs proxy-wasm-go-sdk's context interfaces
// (types.VMContext, types.PluginContext, types.HttpContext), but that SDK's ABI glue only
// works under TinyGo. This package gives the plugin the few host calls it needs in two builds:
//
//   - standard Go on wasip1 (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared): our own
//     //go:wasmimport declarations of the proxy-wasm ABI v0.2.1 and //go:wasmexport callbacks
//     that dispatch to the registered contexts (wasip1_*.go);
//   - every other build (native tests, TinyGo): thin forwarding to the SDK's proxywasm package
//     (sdk.go), so native tests run through the SDK's proxytest host emulator and a TinyGo
//     build uses the SDK's own exports.
//
// Both builds report host failures with the SDK's sentinel errors (types.ErrorStatusNotFound,
// types.ErrorStatusCasMismatch, ...), so callers use errors.Is the same way everywhere.
//
// Spec: https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1
package abi

// LogLevel mirrors the ABI's log levels (trace 0 … critical 5).
type LogLevel uint32

// Log levels, in the ABI's order.
const (
	LogLevelTrace LogLevel = iota
	LogLevelDebug
	LogLevelInfo
	LogLevelWarn
	LogLevelError
	LogLevelCritical
)

// Counter is a monotonically increasing metric shared by every VM of the host.
type Counter interface {
	Increment(delta uint64)
}

// Gauge is a metric whose value is set, shared by every VM of the host.
type Gauge interface {
	Set(value int64)
}

// HTTPCallCallback receives the reply of DispatchHTTPCall on the root context that made it.
// GetHTTPCallResponseHeaders and GetHTTPCallResponseBody are valid only while it runs.
type HTTPCallCallback func(numHeaders, bodySize, numTrailers int)

// Releaser is an HTTP context that can be reused: Release is called when the host deletes the
// stream, after its last callback, so the plugin can hand the object to the next stream
// instead of allocating one per request.
type Releaser interface {
	Release()
}
