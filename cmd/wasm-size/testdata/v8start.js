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
// Prints one JSON line per VM: {"compile":ms,"instantiate":ms,...}.
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

function startVM() {
  const phases = {};
  let t = process.hrtime.bigint();
  const module = new WebAssembly.Module(wasm);
  phases.compile = ms(t);

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

  t = process.hrtime.bigint();
  instance = new WebAssembly.Instance(module, { env, wasi_snapshot_preview1: wasi.wasiImport });
  phases.instantiate = ms(t);

  t = process.hrtime.bigint();
  wasi.initialize(instance); // calls _initialize
  phases.initialize = ms(t);

  t = process.hrtime.bigint();
  instance.exports.proxy_on_context_create(1, 0);
  if (instance.exports.proxy_on_vm_start) instance.exports.proxy_on_vm_start(1, 0);
  phases.vmstart = ms(t);

  t = process.hrtime.bigint();
  configReadable = true;
  const ok = instance.exports.proxy_on_configure(1, pluginConfig.length);
  configReadable = false;
  phases.configure = ms(t);
  if (!ok) throw new Error('proxy_on_configure returned false');
  phases.total = phases.compile + phases.instantiate + phases.initialize + phases.vmstart + phases.configure;
  return phases;
}

for (let i = 0; i < iterations; i++) console.log(JSON.stringify(startVM()));
