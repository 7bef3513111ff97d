// Command floormodule is the floor under the request path: a proxy-wasm module in standard Go,
// on the same ABI binding as jtiguard (internal/abi), whose proxy_on_request_headers does only
// what its plugin configuration names. BenchmarkFloor (e2e/floor_test.go) runs it in both
// hosts beside the real module, so the cost of a request splits into what any Go module pays
// (entering the runtime, a host call, the host re-entering the allocator) and jtiguard's own
// work. docs/benchmarks.md, "The floor under a request", has the numbers.
package main

import (
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jtiguard/jtiguard/internal/abi"
)

func main() {}

func init() { abi.SetVMContext(&vmContext{}) }

// The modes, by plugin configuration.
const (
	modeEmpty        = "empty"         // the callback returns at once
	modeClock        = "clock"         // one host call (the clock)
	modeHeaders      = "headers"       // the header map: a host call, the host re-entering the allocator, the decoding
	modeHeadersClock = "headers+clock" // both: the host calls of a request with a cached token
	modeCalls        = "calls100"      // 100 calls of a Go function that does nothing
	modeCopies       = "copies100"     // 100 moves of a 56-byte struct (memory.copy in wasm)
)

type vmContext struct{ types.DefaultVMContext }

func (*vmContext) NewPluginContext(uint32) types.PluginContext { return &pluginContext{} }

type pluginContext struct {
	types.DefaultPluginContext
	mode string
	free []*httpContext
}

func (p *pluginContext) OnPluginStart(int) types.OnPluginStartStatus {
	b, err := abi.GetPluginConfiguration()
	if err != nil {
		return types.OnPluginStartStatusFailed
	}
	p.mode = string(b)
	switch p.mode {
	case modeEmpty, modeClock, modeHeaders, modeHeadersClock, modeCalls, modeCopies:
		return types.OnPluginStartStatusOK
	}
	abi.Log(abi.LogLevelCritical, "floormodule: unknown mode "+p.mode)
	return types.OnPluginStartStatusFailed
}

// NewHttpContext reuses contexts, as jtiguard does: a request allocates nothing.
func (p *pluginContext) NewHttpContext(uint32) types.HttpContext {
	if n := len(p.free); n > 0 {
		h := p.free[n-1]
		p.free = p.free[:n-1]
		return h
	}
	return &httpContext{plugin: p}
}

type httpContext struct {
	types.DefaultHttpContext
	plugin *pluginContext
}

// Release implements abi.Releaser.
func (h *httpContext) Release() { h.plugin.free = append(h.plugin.free, h) }

// sink keeps the work from being optimised away.
var sink int64

func (h *httpContext) OnHttpRequestHeaders(int, bool) types.Action {
	switch h.plugin.mode {
	case modeClock:
		sink += abi.Now().UnixNano()
	case modeHeaders:
		hs, _ := abi.GetHTTPRequestHeaders()
		sink += int64(len(hs))
	case modeHeadersClock:
		hs, _ := abi.GetHTTPRequestHeaders()
		sink += int64(len(hs)) + abi.Now().UnixNano()
	case modeCalls:
		for i := range 100 {
			sink += nothing(int64(i))
		}
	case modeCopies:
		for i := range 100 {
			moved = made(i)
		}
	}
	return types.ActionContinue
}

//go:noinline
func nothing(x int64) int64 { return x + 1 }

// fiftySix is the size of jtiguard's decision and of a discovery location's find.
type fiftySix struct {
	a, b string
	n    uint64
	c    string
}

var (
	moved   fiftySix
	strings = [4]string{"a", "bb", "ccc", "dddd"}
)

//go:noinline
func made(i int) fiftySix { return fiftySix{a: strings[i&3], n: uint64(i)} }
