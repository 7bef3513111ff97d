// Package harness is a proxy-wasm ABI v0.2.1 host built on wazero that behaves
// like Envoy in everything a Go (wasip1, c-shared) HTTP filter depends on.
//
// No Envoy binary can run where this project is built and tested, so this
// package is where the real module meets a host. It reproduces, from
// proxy-wasm-cpp-host and Envoy's wasm extension:
//
//   - the exact import surface: the WASI functions Envoy registers (in two
//     generations, see WASIGeneration) and the env.proxy_* functions of ABI
//     v0.2.1; a module importing anything else fails to load, as in Envoy;
//   - the restricted callbacks: during _initialize and proxy_on_memory_allocate
//     only a few host functions may be called, anything else traps;
//   - one VM per worker, each with its own memory, root context, tick timer
//     and lock, plus process-wide shared data (one CAS counter) and metrics;
//   - configuration delivery (VM configuration only in proxy_on_vm_start,
//     plugin configuration only in proxy_on_configure), local replies that
//     take effect when the callback returns, and HTTP callouts that are sent
//     for real with net/http and delivered back to the VM that made them;
//   - VM failure on a trap: later streams get 503 wasm_fail_stream, unless
//     fail-open is configured.
//
// The import surface, the WASI answers and the restricted-phase lists are
// tables (SurfaceOf returns them as data), which the V8 host (package v8host)
// receives too, so the two hosts answer alike. A call into a VM ignores its
// context unless WithDeadlines is set: wazero's close-on-context-done checks
// the context in every guest loop and costs a goroutine per call. A VM's
// linear memory is reserved whole and grows in place, as in V8 (see
// memoryAllocator), not copied on every memory.grow.
//
// A test compiles and starts a module with New, runs requests through it
// with Harness.Do or Harness.NewStream, drives timers with Harness.Tick and
// inspects SharedData, Metrics, Logs and HTTPCalls.
//
// A typical test:
//
//	cfg := harness.NewConfig().
//		WithWorkers(2).
//		WithWASI(harness.WASICurrent).
//		WithPluginConfig(pluginJSON).
//		WithCluster("revocation_source", feed.Listener.Addr().String()).
//		WithTimers(false) // tick by hand with h.Tick(ctx)
//	h, err := harness.New(ctx, wasmBytes, cfg)
//	...
//	defer h.Close(ctx)
//	h.WaitHTTPCalls(ctx) // the first poll dispatched from proxy_on_configure
//	res, err := h.Do(ctx, harness.Request{Path: "/api", VM: 1,
//		Headers: harness.Pairs{{"authorization", "Bearer " + tok}}})
//	// res.Action, res.LocalResponse (status, body, details), res.RequestHeaders
//	// h.Metrics().Counter(name), h.Logs().Contains(level, s), h.HTTPCalls(),
//	// h.SharedData().Get(h.VMID(), key), h.VM(i).MemoryBytes(), h.VM(i).Failed()
//
// Spec: https://github.com/proxy-wasm/spec/tree/main/abi-versions/v0.2.1
package harness
