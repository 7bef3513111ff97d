// VM start of a proxy-wasm module in V8, by phase, as proxy-wasm-cpp-host starts one: compile,
// instantiate, _initialize, proxy_on_context_create + proxy_on_vm_start, proxy_on_configure.
// Run by BenchmarkV8Start (cmd/wasm-size/start_test.go) as
//
//	node --no-liftoff v8start.js MODULE.wasm PLUGIN_CONFIG.json ITERATIONS
//
// --no-liftoff is what cpp-host sets (TurboFan only). The first VM is cold: V8 compiles each
// function lazily, the first time it runs; the later ones reuse the module's compiled code, as
// Envoy's worker VMs (clones of the first) do. Only the host functions the start sequence needs
// do anything: the plugin configuration is served, every other import answers OK or NotFound.
// Prints one JSON line per VM: {"compile":ms,"instantiate":ms,...} of wall time, and the same
// phases' CPU time (all of node's threads: TurboFan compiles in the background) as
// "compile_cpu", ..., which a loaded machine disturbs less.
'use strict';
const fs = require('fs');
const { WASI } = require('wasi');

const [wasmPath, configPath, iterArg] = process.argv.slice(2);
const wasm = fs.readFileSync(wasmPath);
const pluginConfig = fs.readFileSync(configPath);
const iterations = Number(iterArg || 5);
const OK = 0, NOT_FOUND = 1;
const BUFFER_PLUGIN_CONFIG = 7;

function ms(t0) { return Number(process.hrtime.bigint() - t0) / 1e6; }

// phase runs f and records its wall and CPU time under name.
function phase(phases, name, f) {
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const r = f();
  phases[name] = ms(t0);
  const c = process.cpuUsage(c0);
  phases[name + '_cpu'] = (c.user + c.system) / 1000;
  return r;
}

function startVM() {
  const phases = {};
  const module = phase(phases, 'compile', () => new WebAssembly.Module(wasm));

  let instance;
  let configReadable = false;
  const mem = () => new DataView(instance.exports.memory.buffer);
  const env = {};
  for (const imp of WebAssembly.Module.imports(module)) {
    if (imp.module === 'env' && imp.kind === 'function') env[imp.name] = () => OK;
  }
  env.proxy_get_property = () => NOT_FOUND;
  env.proxy_get_shared_data = () => NOT_FOUND;
  env.proxy_get_log_level = (ptr) => { mem().setUint32(ptr, 2, true); return OK; };
  env.proxy_get_buffer_bytes = (type, start, max, ptrPtr, sizePtr) => {
    if (type !== BUFFER_PLUGIN_CONFIG || !configReadable) return NOT_FOUND;
    const data = pluginConfig.subarray(start, start + max);
    const p = instance.exports.proxy_on_memory_allocate(data.length) >>> 0;
    new Uint8Array(instance.exports.memory.buffer, p, data.length).set(data);
    mem().setUint32(ptrPtr, p, true);
    mem().setUint32(sizePtr, data.length, true);
    return OK;
  };
  const wasi = new WASI({ version: 'preview1', returnOnExit: true });

  instance = phase(phases, 'instantiate',
    () => new WebAssembly.Instance(module, { env, wasi_snapshot_preview1: wasi.wasiImport }));
  phase(phases, 'initialize', () => wasi.initialize(instance)); // calls _initialize
  phase(phases, 'vmstart', () => {
    instance.exports.proxy_on_context_create(1, 0);
    if (instance.exports.proxy_on_vm_start) instance.exports.proxy_on_vm_start(1, 0);
  });
  configReadable = true;
  const ok = phase(phases, 'configure', () => instance.exports.proxy_on_configure(1, pluginConfig.length));
  configReadable = false;
  if (!ok) throw new Error('proxy_on_configure returned false');
  for (const suffix of ['', '_cpu']) {
    phases['total' + suffix] = ['compile', 'instantiate', 'initialize', 'vmstart', 'configure']
      .reduce((sum, p) => sum + phases[p + suffix], 0);
  }
  return phases;
}

for (let i = 0; i < iterations; i++) console.log(JSON.stringify(startVM()));
