// Package v8host runs a proxy-wasm module in V8, the engine Envoy uses by default, through
// Node.js: it starts `node` with host.js (embedded here), a proxy-wasm ABI v0.2.1 host that
// follows proxy-wasm-cpp-host, and drives it over a small protocol. With the wazero harness
// (package harness) it is the second host the module's tests and benchmarks run in; package
// hosttest puts both behind one interface.
//
// What host.js models from proxy-wasm-cpp-host and Envoy: the env and WASI import surface of
// both WASI generations (taken as data from harness.SurfaceOf, so the hosts cannot drift);
// the start sequence (_initialize, root context, proxy_on_vm_start, proxy_on_configure) with
// the calls cpp-host forbids during _initialize and inside proxy_on_memory_allocate (a
// forbidden call traps with "restricted_callback" and fails the VM, as on V8); the V8 flags
// cpp-host sets; one WebAssembly instance per worker VM, each with its own linear memory,
// root context, tick timer and metric ids; process-wide shared data with Envoy's CAS rules;
// callouts sent for real with Node's HTTP client and delivered to the calling VM's
// proxy_on_http_call_response (a failure as a reset: 0 headers, empty body); local replies
// that take effect when the callback returns; request bodies buffered while the module
// answers Pause; properties; metrics; logs; and Envoy's failed-VM path (503
// wasm_fail_stream, or pass-through with fail-open).
//
// What it does not model: each of Envoy's VMs has its own V8 isolate on its own worker
// thread; here every VM is an instance in one isolate on Node's main thread, so the VMs'
// callbacks never overlap and JavaScript garbage collection is shared (the module's own Go
// heap lives in its linear memory and is per VM, as in Envoy). Precompiled modules, VM
// cloning, gRPC, shared queues and foreign functions are absent (UNIMPLEMENTED or NOT_FOUND).
//
// The protocol is one JSON object per line on the child's stdin and stdout (see
// protocol.go): no port to allocate or leak, nothing else on the machine can connect to it,
// and the child ends when the driver closes its stdin or dies.
package v8host
