// host.js: a proxy-wasm ABI v0.2.1 host in Node.js, which embeds V8, the engine Envoy runs
// modules in by default. It follows proxy-wasm-cpp-host (src/wasm.cc, src/context.cc,
// src/exports.cc, src/v8/v8.cc) in everything a Go (wasip1, c-shared) HTTP filter can
// observe. The Go package beside it (v8host) starts `node host.js` and drives it with one
// JSON object per line on stdin; answers (and log events) come back one per line on stdout.
// Nothing else may write to stdout.
//
// The import surface (which WASI functions exist, their signatures, how each answers, which
// env functions are implemented, what the restricted phases allow) is not written here: the
// Go driver sends harness.SurfaceOf(generation), the tables the wazero harness is built
// from, so the two hosts cannot drift. This file implements the behaviour those tables
// name and refuses to start if it meets a name it does not know.
'use strict';

const fs = require('node:fs');
const http = require('node:http');
const crypto = require('node:crypto');
const readline = require('node:readline');

// ---- ABI constants (spec abi-versions/v0.2.1, proxy-wasm-cpp-host) ----
const S = {
  OK: 0, NOT_FOUND: 1, BAD_ARGUMENT: 2, INVALID_MEMORY_ACCESS: 6, CAS_MISMATCH: 8,
  INTERNAL_FAILURE: 10, UNIMPLEMENTED: 12,
};
const ACTION_CONTINUE = 0;
const ACTION_PAUSE = 1;
const LOG = { trace: 0, debug: 1, info: 2, warn: 3, error: 4, critical: 5 };
const ROOT_ID = 1;
const MAP_TYPE_MAX = 7;
const BUFFER_TYPE_MAX = 8;
const STREAM_TYPE_MAX = 3;
const PAIRS_MAX_BYTES = 1 << 20;
const PAIRS_MAX_COUNT = 1024;
const RANDOM_GET_MAX = 64 << 10;
const ERRNO = { SUCCESS: 0, BADF: 8, FAULT: 21, INVAL: 28, NOTSUP: 58 };

const PHASE_NORMAL = 'callback';
const PHASE_INIT = '_initialize';
const PHASE_MALLOC = 'proxy_on_memory_allocate';

// A trap raised by the host: V8 reports cpp-host's host-side traps with this message.
class HostTrap extends Error {}
// Thrown to the driver when a call meets a failed VM.
class VMFailed extends Error {}
const NOT_EXPORTED = Symbol('not exported');

// ---- process-wide state (one Envoy process) ----
let settings = null; // harness.Settings
let surface = null; // harness.Surface
let wasmModule = null;
const vms = [];
let closed = false;
const monoBase = process.hrtime.bigint();
const realBase = BigInt(Date.now()) * 1000000n - monoBase; // wall clock = realBase + hrtime

function nowRealtimeNs() { return realBase + process.hrtime.bigint(); }

// Logs as the harness keeps them: entries at or above the configured level.
const logs = [];
let echoLogs = false;
function addLog(vm, level, message) {
  if (level < settings.log_level) return;
  logs.push({ vm, level, message });
  if (echoLogs) send({ event: 'log', vm, level, message });
}

// Shared data: one store per vm_id, one global CAS counter (never 0); cas 0 sets
// unconditionally, a stale cas is refused, an absent key is created whatever the cas, no
// delete. As in harness/shareddata.go and cpp-host src/shared_data.cc.
const shared = new Map();
let nextCas = 1;
function sharedGet(vmId, key) {
  const e = shared.get(vmId)?.get(key);
  if (!e) return { status: S.NOT_FOUND };
  return { status: S.OK, value: e.value, cas: e.cas };
}
function sharedSet(vmId, key, value, cas) {
  let m = shared.get(vmId);
  if (!m) { m = new Map(); shared.set(vmId, m); }
  const e = m.get(key);
  if (e && cas !== 0 && cas !== e.cas) return S.CAS_MISMATCH;
  m.set(key, { value: Buffer.from(value), cas: nextCas });
  nextCas = (nextCas + 1) >>> 0;
  if (nextCas === 0) nextCas = 1;
  return S.OK;
}

// Metrics: process-wide by (type, name), ids per VM with the type in the low two bits.
const metrics = new Map();
function defineMetric(type, name) {
  const k = type + ':' + name;
  let m = metrics.get(k);
  if (!m) { m = { type, name, value: 0n, records: [] }; metrics.set(k, m); }
  return m;
}

// Callouts, for the driver's HTTPCalls.
const calls = [];
let inflight = 0;
let inflightWaiters = [];
function callDone() {
  inflight--;
  if (inflight === 0) { const w = inflightWaiters; inflightWaiters = []; w.forEach((f) => f()); }
}
const agent = new http.Agent({ keepAlive: true, maxSockets: 16 });

// ---- header maps (pairs), latin1 strings so bytes round-trip ----
// pairsGet returns the first value of key; stored keys are lower case (every way into a map
// lowers them), so only the key asked for is lowered.
function pairsGet(p, key) {
  const k = key.toLowerCase();
  for (let i = 0; i < p.length; i++) if (p[i][0] === k) return p[i][1];
  return undefined;
}
function lowerKeys(p) { return p.map((kv) => [kv[0].toLowerCase(), kv[1]]); }
function pairsEncodedSize(p) {
  let n = 4;
  for (const kv of p) n += 8 + kv[0].length + 1 + kv[1].length + 1;
  return n;
}
// pairBytes returns the keys and values of p as bytes, encoded once per map and kept on it
// (maps are never changed in place: every mutation makes a new array). Envoy's header map
// holds bytes (HeaderString) and exportPairs copies them with memcpy; here a JavaScript
// string must first be encoded, which would cost more than the copy itself (about 0.6 µs of
// JavaScript per request for the benchmark's seven headers) and is no part of the filter's
// cost in Envoy, where the codec made the bytes before the filter runs.
const PAIR_BYTES = Symbol('pair bytes');
function pairBytes(p) {
  let bp = p[PAIR_BYTES];
  if (bp === undefined) {
    bp = p.map((kv) => [Buffer.from(kv[0], 'latin1'), Buffer.from(kv[1], 'latin1')]);
    p[PAIR_BYTES] = bp;
  }
  return bp;
}
// decodePairs parses the wire format; an invalid map is empty, as in Envoy.
function decodePairs(b) {
  if (b.length === 0 || b.length > PAIRS_MAX_BYTES || b.length < 4) return [];
  const n = b.readUInt32LE(0);
  if (n > PAIRS_MAX_COUNT || b.length < 4 + n * 8) return [];
  let off = 4 + n * 8;
  const out = [];
  for (let i = 0; i < n; i++) {
    const kl = b.readUInt32LE(4 + i * 8);
    const vl = b.readUInt32LE(8 + i * 8);
    if (b.length < off + kl + 1 + vl + 1 || b[off + kl] !== 0 || b[off + kl + 1 + vl] !== 0) return [];
    out.push([b.latin1Slice(off, off + kl), b.latin1Slice(off + kl + 1, off + kl + 1 + vl)]);
    off += kl + 1 + vl + 1;
  }
  return out;
}
function fromGo(p) {
  return (p || []).map((kv) => [Buffer.from(kv[0], 'utf8').toString('latin1'), Buffer.from(kv[1], 'utf8').toString('latin1')]);
}
function toGo(p) {
  return (p || []).map((kv) => [Buffer.from(kv[0], 'latin1').toString('utf8'), Buffer.from(kv[1], 'latin1').toString('utf8')]);
}

// ---- one worker VM ----
class VM {
  constructor(index) {
    this.index = index;
    this.failed = null;
    this.phase = PHASE_NORMAL;
    this.cur = 0;
    this.effective = 0;
    this.nextCtxId = ROOT_ID + 1;
    this.streams = new Map();
    this.vmConfigReadable = false;
    this.pluginConfigReadable = false;
    this.callout = null;
    this.nextCallId = 1;
    this.metricIds = new Map();
    this.nextMetric = [0, 1, 2];
    this.tickPeriod = 0;
    this.timer = null;
    this.timings = { instantiate_ns: 0, initialize_ns: 0, configure_ns: 0 };
    this._buf = null;
  }

  instantiate(module) {
    const t0 = process.hrtime.bigint();
    this.instance = new WebAssembly.Instance(module, buildImports(this));
    this.timings.instantiate_ns = Number(process.hrtime.bigint() - t0);
    this.exports = this.instance.exports;
    this.memory = this.exports.memory;
    // cpp-host takes malloc if exported, proxy_on_memory_allocate otherwise.
    this.malloc = this.exports.malloc || this.exports.proxy_on_memory_allocate;
  }

  // Views over linear memory, renewed when it grows (the old buffer is detached).
  mem() {
    if (this.memory.buffer !== this._buf) {
      this._buf = this.memory.buffer;
      this._b = Buffer.from(this._buf);
      this._dv = new DataView(this._buf);
    }
    return this._b;
  }
  dv() { this.mem(); return this._dv; }
  inBounds(ptr, size) { return ptr + size <= this.mem().length; }
  // read returns a copy of size bytes at ptr, or null; a zero size is empty whatever ptr.
  read(ptr, size) {
    if (size === 0) return Buffer.alloc(0);
    if (!this.inBounds(ptr, size)) return null;
    return Buffer.from(this.mem().subarray(ptr, ptr + size));
  }
  readLatin1(ptr, size) {
    if (size === 0) return '';
    if (!this.inBounds(ptr, size)) return null;
    return this.mem().latin1Slice(ptr, ptr + size);
  }
  readUtf8(ptr, size) {
    if (size === 0) return '';
    if (!this.inBounds(ptr, size)) return null;
    return this.mem().utf8Slice(ptr, ptr + size);
  }
  writeU32(ptr, v) {
    if (!this.inBounds(ptr, 4)) return false;
    this.dv().setUint32(ptr, v >>> 0, true);
    return true;
  }
  writeU64(ptr, v) {
    if (!this.inBounds(ptr, 8)) return false;
    this.dv().setBigUint64(ptr, BigInt.asUintN(64, v), true);
    return true;
  }
  write(ptr, bytes) {
    if (!this.inBounds(ptr, bytes.length)) return false;
    this.mem().set(bytes, ptr);
    return true;
  }

  // call invokes an export on context ctxId with cpp-host's bookkeeping; a trap (or a host
  // trap thrown through the guest) fails the VM for good.
  // Fixed arity (at most 5 arguments, proxy_on_http_call_response's): no rest arrays on
  // the request path, whose JavaScript garbage V8 collects in this same isolate.
  call(name, ctxId, a, b, c, d, e) {
    if (this.failed) throw new VMFailed(this.failed);
    const fn = this.exports[name];
    if (typeof fn !== 'function') return NOT_EXPORTED;
    const prevCur = this.cur;
    const prevEff = this.effective;
    this.cur = ctxId;
    this.effective = 0;
    try {
      const r = fn(a, b, c, d, e);
      return r === undefined ? 0 : r >>> 0;
    } catch (e) {
      this.fail(`Function: ${name} failed: ${trapMessage(e)}`);
      throw new VMFailed(this.failed);
    } finally {
      this.cur = prevCur;
      this.effective = prevEff;
    }
  }

  fail(msg) {
    if (!this.failed) {
      this.failed = msg;
      addLog(this.index, LOG.critical, 'wasm vm failed: ' + msg);
    }
    this.stopTimer();
  }

  // alloc is WasmBase::allocMemory: the guest allocator runs restricted; a trap in it
  // propagates and fails the callback that needed the memory.
  alloc(size) {
    const prev = this.phase;
    this.phase = PHASE_MALLOC;
    try {
      return this.malloc(size) >>> 0;
    } finally {
      this.phase = prev;
    }
  }

  // copyOut is WasmBase::copyToPointerSize for bytes (a Buffer).
  copyOut(data, ptrPtr, sizePtr) {
    let addr = 0;
    if (data.length > 0) {
      addr = this.alloc(data.length);
      if (addr === 0 || !this.write(addr, data)) return S.INVALID_MEMORY_ACCESS;
    }
    if (!this.writeU32(ptrPtr, addr) || !this.writeU32(sizePtr, data.length)) return S.INVALID_MEMORY_ACCESS;
    return S.OK;
  }
  copyOutLatin1(str, ptrPtr, sizePtr) {
    let addr = 0;
    if (str.length > 0) {
      addr = this.alloc(str.length);
      if (addr === 0 || !this.inBounds(addr, str.length)) return S.INVALID_MEMORY_ACCESS;
      this.mem().latin1Write(str, addr);
    }
    if (!this.writeU32(ptrPtr, addr) || !this.writeU32(sizePtr, str.length)) return S.INVALID_MEMORY_ACCESS;
    return S.OK;
  }
  // copyOutPairs is cpp-host's exportPairs: the map is marshalled straight into guest memory,
  // each key and value copied as bytes (pairBytes), as Envoy memcpys its header strings.
  copyOutPairs(p, ptrPtr, sizePtr) {
    if (p.length === 0) {
      return this.writeU32(ptrPtr, 0) && this.writeU32(sizePtr, 0) ? S.OK : S.INVALID_MEMORY_ACCESS;
    }
    const bp = pairBytes(p);
    let size = 4;
    for (let i = 0; i < bp.length; i++) size += 10 + bp[i][0].length + bp[i][1].length;
    const addr = this.alloc(size);
    if (addr === 0 || !this.inBounds(addr, size)) return S.INVALID_MEMORY_ACCESS;
    const b = this.mem();
    const dv = this._dv;
    dv.setUint32(addr, bp.length, true);
    let off = addr + 4;
    for (let i = 0; i < bp.length; i++) {
      dv.setUint32(off, bp[i][0].length, true);
      dv.setUint32(off + 4, bp[i][1].length, true);
      off += 8;
    }
    for (let i = 0; i < bp.length; i++) {
      const k = bp[i][0];
      const v = bp[i][1];
      b.set(k, off);
      off += k.length;
      b[off++] = 0;
      b.set(v, off);
      off += v.length;
      b[off++] = 0;
    }
    if (!this.writeU32(ptrPtr, addr) || !this.writeU32(sizePtr, size)) return S.INVALID_MEMORY_ACCESS;
    return S.OK;
  }

  // start is WasmBase::startVm then start and configure.
  start() {
    const t0 = process.hrtime.bigint();
    this.phase = PHASE_INIT;
    try {
      for (const [name, args] of this.initFunctions()) {
        try {
          this.call(name, 0, args[0], args[1]);
        } catch (e) {
          throw startError(this, name, e);
        }
      }
    } finally {
      this.phase = PHASE_NORMAL;
    }
    const t1 = process.hrtime.bigint();
    this.timings.initialize_ns = Number(t1 - t0);
    try {
      try {
        this.call('proxy_on_context_create', ROOT_ID, ROOT_ID, 0);
      } catch (e) {
        throw startError(this, 'proxy_on_context_create', e);
      }
      for (const [name, size, flag] of [
        ['proxy_on_vm_start', settings.vm_config.length, 'vmConfigReadable'],
        ['proxy_on_configure', settings.plugin_config.length, 'pluginConfigReadable'],
      ]) {
        this[flag] = true;
        let ok;
        try {
          ok = this.call(name, ROOT_ID, ROOT_ID, size);
        } catch (e) {
          throw startError(this, name, e);
        } finally {
          this[flag] = false;
        }
        if (ok === 0) {
          throw startError(this, name, new Error(name === 'proxy_on_configure' ? 'returned false (configuration rejected)' : 'returned false'));
        }
      }
    } finally {
      this.timings.configure_ns = Number(process.hrtime.bigint() - t1);
    }
  }

  // initFunctions mirrors WasmBase::getFunctions: _initialize then main or __main_void, or _start.
  initFunctions() {
    const e = this.exports;
    if (typeof e._initialize === 'function') {
      const out = [['_initialize', []]];
      if (typeof e.main === 'function') out.push(['main', [0, 0]]);
      else if (typeof e.__main_void === 'function') out.push(['__main_void', []]);
      return out;
    }
    if (typeof e._start === 'function') return [['_start', []]];
    return [];
  }

  // setTick is proxy_set_tick_period_milliseconds: a real timer per VM (unless the driver
  // ticks by hand), stopped by 0.
  setTick(ms) {
    this.tickPeriod = ms;
    this.stopTimer();
    if (ms <= 0 || !settings.timers || closed) return;
    this.timer = setInterval(() => {
      if (this.failed || closed) return;
      try { this.call('proxy_on_tick', ROOT_ID, ROOT_ID); } catch (e) { /* the VM failed */ }
    }, ms);
  }
  stopTimer() {
    if (this.timer) { clearInterval(this.timer); this.timer = null; }
  }

  contextExists(id) { return id === ROOT_ID || this.streams.has(id); }
  // current is the context host calls act on: the effective one if set and alive.
  current() {
    let id = this.cur;
    if (this.effective !== 0 && this.contextExists(this.effective)) id = this.effective;
    return this.streams.get(id) || null;
  }

  // bufferGet returns the buffer of type t visible to the running callback, or null
  // (NOT_FOUND); bufferSet replaces it. Plain functions, not accessor objects: the request
  // path allocates no JavaScript garbage of its own.
  bufferGet(t) {
    const s = this.current();
    switch (t) {
      case 0: return s && s.hasReqBody ? s.reqBody : null;
      case 1: return s && s.hasRespBody ? s.respBody : null;
      case 4: return this.callout ? this.callout.body : null;
      case 6: return this.vmConfigReadable ? settings.vm_config : null;
      case 7: return this.pluginConfigReadable ? settings.plugin_config : null;
      default: return null;
    }
  }
  bufferSet(t, b) {
    const s = this.current();
    switch (t) {
      case 0: s.reqBody = b; break;
      case 1: s.respBody = b; break;
      case 4: this.callout.body = b; break;
      default: break; // the configurations are read-only
    }
  }

  // mapGet returns the header map of type t visible to the running callback, or null;
  // mapSet replaces it.
  mapGet(t) {
    const s = this.current();
    switch (t) {
      case 0: return s && s.hasReqHeaders ? s.reqHeaders : null;
      case 1: return s && s.hasReqTrailers ? s.reqTrailers : null;
      case 2: return s && s.hasRespHeaders ? s.respHeaders : null;
      case 3: return s && s.hasRespTrailers ? s.respTrailers : null;
      case 6: return this.callout ? this.callout.headers : null;
      case 7: return this.callout ? this.callout.trailers : null;
      default: return null;
    }
  }
  mapSet(t, p) {
    const s = this.current();
    switch (t) {
      case 0: s.reqHeaders = p; break;
      case 1: s.reqTrailers = p; break;
      case 2: s.respHeaders = p; break;
      case 3: s.respTrailers = p; break;
      case 6: this.callout.headers = p; break;
      case 7: this.callout.trailers = p; break;
      default: break;
    }
  }
}

function trapMessage(e) {
  if (e instanceof HostTrap) return e.message;
  if (e instanceof WebAssembly.RuntimeError) return e.message;
  return (e && e.name ? e.name + ': ' : '') + (e && e.message ? e.message : String(e));
}

function startError(vm, what, e) {
  const err = new Error(`vm ${vm.index}: ${what}: ${e instanceof VMFailed ? e.message : trapMessage(e)}`);
  err.kind = 'start_failed';
  return err;
}

// ---- env.* (ABI v0.2.1) ----
// Each is a transcription of the function of the same name in cpp-host src/exports.cc, as
// harness/env.go implements it; see there for the parameter sketches.
function envFunctions(vm) {
  const headerMutation = (op) => (t, kp, ks, vp, vs) => {
    if (t > MAP_TYPE_MAX) return S.BAD_ARGUMENT;
    const key = vm.readLatin1(kp, ks);
    const val = vm.readLatin1(vp, vs);
    if (key === null || val === null) return S.INVALID_MEMORY_ACCESS;
    const m = vm.mapGet(t);
    if (!m) return S.BAD_ARGUMENT;
    vm.mapSet(t, op(m, key, val));
    return S.OK;
  };
  return {
    pthread_equal: (a, b) => (a === b ? 1 : 0),
    emscripten_notify_memory_growth: () => {},

    proxy_log(level, ptr, size) {
      const msg = vm.readUtf8(ptr, size);
      if (msg === null) return S.INVALID_MEMORY_ACCESS;
      if (level > LOG.critical) return S.BAD_ARGUMENT;
      addLog(vm.index, level, msg);
      return S.OK;
    },
    proxy_get_log_level(ptr) {
      return vm.writeU32(ptr, settings.log_level) ? S.OK : S.INVALID_MEMORY_ACCESS;
    },
    proxy_get_current_time_nanoseconds(ptr) {
      return vm.writeU64(ptr, nowRealtimeNs()) ? S.OK : S.INVALID_MEMORY_ACCESS;
    },
    proxy_set_tick_period_milliseconds(ms) {
      vm.setTick(ms >>> 0);
      return S.OK;
    },
    proxy_get_buffer_bytes(t, start, length, ptrPtr, sizePtr) {
      start >>>= 0; length >>>= 0;
      if (t > BUFFER_TYPE_MAX) return S.BAD_ARGUMENT;
      const data = vm.bufferGet(t);
      if (!data) return S.NOT_FOUND;
      if (start + length > 0xffffffff) return S.BAD_ARGUMENT;
      const size = data.length;
      if (start > size) length = 0;
      else if (start + length > size) length = size - start;
      return vm.copyOut(length > 0 ? data.subarray(start, start + length) : Buffer.alloc(0), ptrPtr, sizePtr);
    },
    proxy_get_buffer_status(t, lenPtr, flagsPtr) {
      if (t > BUFFER_TYPE_MAX) return S.BAD_ARGUMENT;
      const b = vm.bufferGet(t);
      if (!b) return S.NOT_FOUND;
      return vm.writeU32(lenPtr, b.length) && vm.writeU32(flagsPtr, 0) ? S.OK : S.INVALID_MEMORY_ACCESS;
    },
    proxy_set_buffer_bytes(t, start, length, ptr, size) {
      start >>>= 0; length >>>= 0;
      if (t > BUFFER_TYPE_MAX) return S.BAD_ARGUMENT;
      const cur = vm.bufferGet(t);
      if (!cur) return S.NOT_FOUND;
      const data = vm.read(ptr, size);
      if (data === null) return S.INVALID_MEMORY_ACCESS;
      if (start === 0 && length === 0) vm.bufferSet(t, Buffer.concat([data, cur]));
      else if (start === 0 && length >= cur.length) vm.bufferSet(t, data);
      else if (start >= cur.length) vm.bufferSet(t, Buffer.concat([cur, data]));
      else return S.BAD_ARGUMENT;
      return S.OK;
    },
    proxy_get_header_map_pairs(t, ptrPtr, sizePtr) {
      if (t > MAP_TYPE_MAX) return S.BAD_ARGUMENT;
      const m = vm.mapGet(t);
      if (!m) return S.NOT_FOUND;
      return vm.copyOutPairs(m, ptrPtr, sizePtr);
    },
    proxy_set_header_map_pairs(t, ptr, size) {
      if (t > MAP_TYPE_MAX) return S.BAD_ARGUMENT;
      const m = vm.mapGet(t);
      if (!m) return S.BAD_ARGUMENT;
      const data = vm.read(ptr, size);
      if (data === null) return S.INVALID_MEMORY_ACCESS;
      vm.mapSet(t, lowerKeys(decodePairs(data)));
      return S.OK;
    },
    proxy_get_header_map_size(t, ptr) {
      if (t > MAP_TYPE_MAX) return S.BAD_ARGUMENT;
      const m = vm.mapGet(t);
      if (!m) return S.NOT_FOUND;
      let n = 0;
      for (const kv of m) n += kv[0].length + kv[1].length;
      return vm.writeU32(ptr, n) ? S.OK : S.INVALID_MEMORY_ACCESS;
    },
    proxy_get_header_map_value(t, kp, ks, ptrPtr, sizePtr) {
      if (t > MAP_TYPE_MAX) return S.BAD_ARGUMENT;
      const key = vm.readLatin1(kp, ks);
      if (key === null) return S.INVALID_MEMORY_ACCESS;
      const m = vm.mapGet(t);
      if (!m) return S.NOT_FOUND;
      const val = pairsGet(m, key);
      if (val === undefined) return S.NOT_FOUND;
      return vm.copyOutLatin1(val, ptrPtr, sizePtr);
    },
    proxy_add_header_map_value: headerMutation((p, k, v) => [...p, [k.toLowerCase(), v]]),
    proxy_replace_header_map_value: headerMutation((p, k, v) => {
      const key = k.toLowerCase();
      const out = [];
      let found = false;
      for (const kv of p) {
        if (kv[0].toLowerCase() === key) {
          if (found) continue;
          found = true;
          out.push([kv[0], v]);
        } else out.push(kv);
      }
      if (!found) out.push([key, v]);
      return out;
    }),
    proxy_remove_header_map_value(t, kp, ks) {
      if (t > MAP_TYPE_MAX) return S.BAD_ARGUMENT;
      const key = vm.readLatin1(kp, ks);
      if (key === null) return S.INVALID_MEMORY_ACCESS;
      const m = vm.mapGet(t);
      if (!m) return S.BAD_ARGUMENT;
      const k = key.toLowerCase();
      vm.mapSet(t, m.filter((kv) => kv[0].toLowerCase() !== k));
      return S.OK;
    },
    // The reply takes effect when the running callback returns; on a root context it is
    // ignored (Envoy has no stream there).
    proxy_send_local_response(status, dp, ds, bp, bs, hp, hs, grpc) {
      const details = vm.readLatin1(dp, ds);
      const body = vm.read(bp, bs);
      const hdrs = vm.read(hp, hs);
      if (details === null || body === null || hdrs === null) return S.INVALID_MEMORY_ACCESS;
      const s = vm.current();
      if (!s) {
        addLog(vm.index, LOG.debug, 'proxy_send_local_response on a root context ignored');
        return S.OK;
      }
      if (!s.pendingLocal && !s.local) {
        s.pendingLocal = { status: status >>> 0, details, body, headers: lowerKeys(decodePairs(hdrs)), grpc_status: grpc | 0 };
      }
      return S.OK;
    },
    proxy_http_call(up, us, hp, hs, bp, bs, tp, tsz, timeoutMs, tokenPtr) {
      const cluster = vm.readLatin1(up, us);
      const hdrs = vm.read(hp, hs);
      const body = vm.read(bp, bs);
      const trailers = vm.read(tp, tsz);
      if (cluster === null || hdrs === null || body === null || trailers === null || !vm.writeU32(tokenPtr, 0)) {
        return S.INVALID_MEMORY_ACCESS;
      }
      const headers = decodePairs(hdrs);
      const addr = settings.clusters ? settings.clusters[cluster] : undefined;
      if (addr === undefined) {
        addLog(vm.index, LOG.debug, `proxy_http_call: unknown cluster "${cluster}"`);
        return S.BAD_ARGUMENT;
      }
      const method = pairsGet(headers, ':method');
      const path = pairsGet(headers, ':path');
      const authority = pairsGet(headers, ':authority');
      if (!method || !path || !authority) return S.BAD_ARGUMENT;
      if (closed) return S.INTERNAL_FAILURE;
      const token = vm.nextCallId;
      vm.nextCallId = (vm.nextCallId + 1) >>> 0 || 1;
      vm.writeU32(tokenPtr, token);
      const rec = {
        vm: vm.index, token, cluster, address: addr, headers: toGo(headers), body: body.toString('base64'),
        timeout_ms: timeoutMs >>> 0, response_status: 0, error: '', delivered: false,
      };
      calls.push(rec);
      inflight++;
      sendCallout(vm, rec, addr, method, path, authority, headers, body, timeoutMs >>> 0);
      return S.OK;
    },
    proxy_get_shared_data(kp, ks, ptrPtr, sizePtr, casPtr) {
      const key = vm.readLatin1(kp, ks);
      if (key === null) return S.INVALID_MEMORY_ACCESS;
      const r = sharedGet(settings.vm_id, key);
      if (r.status !== S.OK) return r.status;
      const st = vm.copyOut(r.value, ptrPtr, sizePtr);
      if (st !== S.OK) return st;
      return vm.writeU32(casPtr, r.cas) ? S.OK : S.INVALID_MEMORY_ACCESS;
    },
    proxy_set_shared_data(kp, ks, vp, vs, cas) {
      const key = vm.readLatin1(kp, ks);
      const val = vm.read(vp, vs);
      if (key === null || val === null) return S.INVALID_MEMORY_ACCESS;
      return sharedSet(settings.vm_id, key, val, cas >>> 0);
    },
    proxy_define_metric(type, np, ns, idPtr) {
      const name = vm.readLatin1(np, ns);
      if (name === null) return S.INVALID_MEMORY_ACCESS;
      if (type > 2) return S.BAD_ARGUMENT;
      const m = defineMetric(type, name);
      const id = vm.nextMetric[type];
      vm.nextMetric[type] += 4;
      vm.metricIds.set(id, m);
      return vm.writeU32(idPtr, id) ? S.OK : S.INVALID_MEMORY_ACCESS;
    },
    // Counters take positive offsets only, gauges any, histograms none.
    proxy_increment_metric(id, offset) {
      const m = vm.metricIds.get(id >>> 0);
      if (!m) return S.NOT_FOUND;
      const off = BigInt.asIntN(64, offset);
      if (m.type === 0) {
        if (off <= 0n) return S.BAD_ARGUMENT;
        m.value += off;
      } else if (m.type === 1) m.value += off;
      else return S.BAD_ARGUMENT;
      return S.OK;
    },
    // A counter adds, a gauge is set, a histogram records.
    proxy_record_metric(id, value) {
      const m = vm.metricIds.get(id >>> 0);
      if (!m) return S.NOT_FOUND;
      const v = BigInt.asUintN(64, value);
      if (m.type === 0) m.value += v;
      else if (m.type === 1) m.value = BigInt.asIntN(64, v);
      else m.records.push(v.toString());
      return S.OK;
    },
    proxy_get_metric(id, ptr) {
      const m = vm.metricIds.get(id >>> 0);
      if (!m) return S.NOT_FOUND;
      if (m.type === 2) return S.BAD_ARGUMENT;
      return vm.writeU64(ptr, m.value) ? S.OK : S.INVALID_MEMORY_ACCESS;
    },
    proxy_get_property(pp, ps, ptrPtr, sizePtr) {
      const path = vm.readLatin1(pp, ps);
      if (path === null) return S.INVALID_MEMORY_ACCESS;
      const val = properties.get(path);
      if (val === undefined) return S.NOT_FOUND;
      return vm.copyOut(val, ptrPtr, sizePtr);
    },
    proxy_continue_stream(t) {
      if (t > STREAM_TYPE_MAX) return S.BAD_ARGUMENT;
      const s = vm.current();
      if (s) s.continued.push(t);
      return S.OK;
    },
    proxy_close_stream(t) {
      if (t > STREAM_TYPE_MAX) return S.BAD_ARGUMENT;
      const s = vm.current();
      if (s) s.closedByModule = true;
      return S.OK;
    },
    proxy_set_effective_context(id) {
      if (!vm.contextExists(id >>> 0)) return S.BAD_ARGUMENT;
      vm.effective = id >>> 0;
      return S.OK;
    },
    // NOT_FOUND unless the context is pending done (a VM shutting down), never built here.
    proxy_done: () => S.NOT_FOUND,
    proxy_get_status(codePtr, ptrPtr, sizePtr) {
      return vm.writeU32(codePtr, 0) && vm.writeU32(ptrPtr, 0) && vm.writeU32(sizePtr, 0) ? S.OK : S.INVALID_MEMORY_ACCESS;
    },
    proxy_call_foreign_function(np, ns) {
      return vm.read(np, ns) === null ? S.INVALID_MEMORY_ACCESS : S.NOT_FOUND;
    },
  };
}

let properties = new Map();

// sendCallout sends a callout for real and delivers the reply (or a reset) to
// proxy_on_http_call_response on the root context of the VM that made it.
function sendCallout(vm, rec, addr, method, path, authority, headers, body, timeoutMs) {
  const i = addr.lastIndexOf(':');
  const hdrs = { host: authority };
  const raw = [];
  for (const [k, v] of headers) {
    if (k.startsWith(':')) continue;
    raw.push(k, v);
  }
  let done = false;
  let timer = null;
  const finish = (reply, status, err) => {
    if (done) return;
    done = true;
    if (timer) clearTimeout(timer);
    rec.response_status = status;
    rec.error = err ? String(err.message || err) : '';
    deliver(vm, rec, reply);
    callDone();
  };
  const failure = (err, timedOut) => {
    if (settings.callout_failure !== 'router') return { headers: [], body: Buffer.alloc(0), trailers: [] };
    let status = '503';
    let text = 'upstream connect error or disconnect/reset before headers. reset reason: connection failure';
    if (timedOut) { status = '504'; text = 'upstream request timeout'; }
    return { headers: [[':status', status], ['content-length', String(text.length)], ['content-type', 'text/plain']], body: Buffer.from(text), trailers: [] };
  };
  let req;
  try {
    req = http.request({
      host: addr.slice(0, i).replace(/^\[|\]$/g, ''), port: Number(addr.slice(i + 1)), method, path, agent,
      headers: [...Object.entries(hdrs).flat(), ...raw],
    });
  } catch (e) {
    setImmediate(() => finish(failure(e, false), 0, e));
    return;
  }
  if (timeoutMs > 0) {
    timer = setTimeout(() => {
      const e = new Error('timeout');
      e.timedOut = true;
      req.destroy(e);
    }, timeoutMs);
  }
  req.on('error', (e) => finish(failure(e, !!e.timedOut), 0, e));
  req.on('response', (res) => {
    const chunks = [];
    let n = 0;
    res.on('data', (c) => {
      if (n >= settings.max_callout_body) return;
      const room = settings.max_callout_body - n;
      const part = c.length > room ? c.subarray(0, room) : c;
      chunks.push(part);
      n += part.length;
    });
    res.on('error', (e) => finish(failure(e, !!e.timedOut), res.statusCode, e));
    res.on('aborted', () => finish(failure(new Error('aborted'), false), res.statusCode, new Error('aborted')));
    res.on('end', () => {
      const headersOut = [[':status', String(res.statusCode)]];
      // node hands header bytes over as latin1 strings, this file's representation.
      for (let j = 0; j < res.rawHeaders.length; j += 2) headersOut.push([res.rawHeaders[j].toLowerCase(), res.rawHeaders[j + 1]]);
      const trailersOut = [];
      for (let j = 0; j < res.rawTrailers.length; j += 2) trailersOut.push([res.rawTrailers[j].toLowerCase(), res.rawTrailers[j + 1]]);
      finish({ headers: headersOut, body: Buffer.concat(chunks), trailers: trailersOut }, res.statusCode, null);
    });
  });
  req.end(body);
}

function deliver(vm, rec, reply) {
  if (vm.failed || closed) return;
  vm.callout = reply;
  try {
    const r = vm.call('proxy_on_http_call_response', ROOT_ID, ROOT_ID, rec.token, reply.headers.length, reply.body.length, reply.trailers.length);
    rec.delivered = r !== NOT_EXPORTED;
  } catch (e) {
    rec.delivered = true; // delivered, and the VM failed in it
  } finally {
    vm.callout = null;
  }
}

// ---- WASI (answers from the surface tables) ----
const wasiFuncs = {
  fd_write: (vm) => (fd, iovs, n, nwritten) => {
    const [count, e] = writev(vm, fd, iovs, n);
    if (e === ERRNO.SUCCESS && !vm.writeU32(nwritten, count)) return ERRNO.FAULT;
    return e;
  },
  fd_pwrite: (vm) => (fd, iovs, n, _off, nwritten) => {
    const [count, e] = writev(vm, fd, iovs, n);
    if (e === ERRNO.SUCCESS && !vm.writeU32(nwritten, count)) return ERRNO.FAULT;
    return e;
  },
  fd_fdstat_get: (vm) => (fd, out) => {
    if (fd !== 1 && fd !== 2) return ERRNO.BADF;
    const b = Buffer.alloc(24);
    b[8] = 64; // fs_rights_base = FD_WRITE
    vm.write(out, b); // like Envoy, a failed write is ignored
    return ERRNO.SUCCESS;
  },
  environ_get: (vm) => (arr, buf) => {
    for (const k of settings.env_keys) {
      if (!vm.writeU32(arr, buf)) return ERRNO.FAULT;
      const data = Buffer.from(k + '=' + settings.env[k] + '\0', 'utf8');
      if (!vm.write(buf, data)) return ERRNO.FAULT;
      buf += data.length;
      arr += 4;
    }
    return ERRNO.SUCCESS;
  },
  environ_sizes_get: (vm) => (countPtr, sizePtr) => {
    let size = 0;
    for (const k of settings.env_keys) size += Buffer.byteLength(k) + Buffer.byteLength(settings.env[k]) + 2;
    return vm.writeU32(countPtr, settings.env_keys.length) && vm.writeU32(sizePtr, size) ? ERRNO.SUCCESS : ERRNO.FAULT;
  },
  args_sizes_get: (vm) => (a, b) => (vm.writeU32(a, 0) && vm.writeU32(b, 0) ? ERRNO.SUCCESS : ERRNO.FAULT),
  clock_time_get: (vm) => (id, _precision, out) => {
    let t;
    if (id === 0) t = nowRealtimeNs();
    else if (id === 1) t = process.hrtime.bigint() - monoBase + 1n;
    else return ERRNO.NOTSUP;
    return vm.writeU64(out, t) ? ERRNO.SUCCESS : ERRNO.FAULT;
  },
  clock_res_get: (vm) => (id, out) => {
    if (id !== 0 && id !== 1) return ERRNO.NOTSUP;
    return vm.writeU64(out, 1n) ? ERRNO.SUCCESS : ERRNO.FAULT;
  },
  random_get: (vm) => (buf, n) => {
    n >>>= 0;
    if (n > RANDOM_GET_MAX) return ERRNO.INVAL;
    if (n === 0) return ERRNO.SUCCESS;
    return vm.write(buf, crypto.randomBytes(n)) ? ERRNO.SUCCESS : ERRNO.FAULT;
  },
  poll_oneoff_no_events: (vm) => (_in, _out, _n, neventsPtr) => (vm.writeU32(neventsPtr, 0) ? ERRNO.SUCCESS : ERRNO.FAULT),
  proc_exit: (vm) => () => { addLog(vm.index, LOG.error, 'wasi_unstable proc_exit'); },
  fd_renumber: () => (fd, to) => ((fd !== 1 && fd !== 2) || (to !== 1 && to !== 2) ? ERRNO.BADF : ERRNO.NOTSUP),
  fd_tell: (vm) => (fd, out) => {
    if (fd !== 1 && fd !== 2) return ERRNO.BADF;
    return vm.writeU64(out, 0n) ? ERRNO.SUCCESS : ERRNO.FAULT;
  },
  sock_accept: (vm) => (_fd, _flags, out) => (vm.writeU64(out, 0n) ? ERRNO.NOTSUP : ERRNO.FAULT),
  sock_recv: (vm) => (_fd, _ri, _rl, _flags, roDatalen, roFlags) => {
    if (!vm.writeU32(roDatalen, 0) || !vm.inBounds(roFlags, 2)) return ERRNO.FAULT;
    vm.dv().setUint16(roFlags, 0, true);
    return ERRNO.NOTSUP;
  },
};

// writev: fd 1 → info log, fd 2 → error log, one line per call without its trailing newline.
function writev(vm, fd, iovs, n) {
  let level;
  if (fd === 1) level = LOG.info;
  else if (fd === 2) level = LOG.error;
  else return [0, ERRNO.BADF];
  const parts = [];
  let total = 0;
  for (let i = 0; i < n; i++) {
    if (!vm.inBounds(iovs + i * 8, 8)) return [0, ERRNO.FAULT];
    const dv = vm.dv();
    const buf = dv.getUint32(iovs + i * 8, true);
    const len = dv.getUint32(iovs + i * 8 + 4, true);
    if (len === 0) continue;
    const b = vm.read(buf, len);
    if (b === null) return [0, ERRNO.FAULT];
    parts.push(b);
    total += len;
  }
  if (total > 0) addLog(vm.index, level, Buffer.concat(parts).toString('utf8').replace(/\n$/, ''));
  return [total, ERRNO.SUCCESS];
}

function wasiAnswer(vm, a) {
  switch (a.kind) {
    case 'errno': { const e = a.errno || 0; return () => e; }
    case 'stdio': return (fd) => (fd === 1 || fd === 2 ? ERRNO.SUCCESS : ERRNO.BADF);
    case 'zero-then': {
      const e = a.errno || 0;
      const arg = a.arg || 0;
      return (...args) => (vm.writeU32(args[arg], 0) ? e : ERRNO.FAULT);
    }
    case 'log': return () => { addLog(vm.index, LOG.error, a.message); return ERRNO.SUCCESS; };
    case 'func': {
      const f = wasiFuncs[a.func];
      if (!f) throw Object.assign(new Error(`host.js does not implement WASI function ${a.func}`), { kind: 'start_failed' });
      return f(vm);
    }
    default:
      throw Object.assign(new Error(`host.js does not know WASI answer kind ${a.kind}`), { kind: 'start_failed' });
  }
}

// restricted wraps fn with cpp-host's check (WasmVm::isHostFunctionAllowed): during
// _initialize and inside the allocator only the allowed names run, anything else traps
// with "restricted_callback". Fixed arity: the hot path must not build rest arrays.
function restricted(vm, moduleName, name, fn, init, malloc) {
  return function (a, b, c, d, e, f, g, h, i, j, k, l) {
    if (vm.phase !== PHASE_NORMAL) {
      const allowed = vm.phase === PHASE_INIT ? init : malloc;
      if (!allowed.has(name)) {
        addLog(vm.index, LOG.critical, `Attempted call to restricted capability: ${moduleName}.${name} during ${vm.phase}`);
        throw new HostTrap('restricted_callback');
      }
    }
    return fn(a, b, c, d, e, f, g, h, i, j, k, l);
  };
}

function buildImports(vm) {
  const init = new Set(surface.init_allowed);
  const malloc = new Set(surface.malloc_allowed);
  const env = envFunctions(vm);
  const envObj = {};
  for (const imp of surface.env) {
    let fn = imp.implemented ? env[imp.name] : null;
    if (imp.implemented && typeof fn !== 'function') {
      throw Object.assign(new Error(`host.js does not implement env.${imp.name}`), { kind: 'start_failed' });
    }
    if (!fn) fn = imp.results.length > 0 ? () => S.UNIMPLEMENTED : () => {};
    envObj[imp.name] = restricted(vm, 'env', imp.name, fn, init, malloc);
  }
  const out = { env: envObj };
  for (const modName of ['wasi_snapshot_preview1', 'wasi_unstable']) {
    const o = {};
    for (const imp of surface.wasi) o[imp.name] = restricted(vm, modName, imp.name, wasiAnswer(vm, imp.answer), init, malloc);
    out[modName] = o;
  }
  return out;
}

// ---- streams ----
function newStream(vm) {
  const s = {
    vm, id: 0, reqHeaders: [], hasReqHeaders: false, reqTrailers: [], hasReqTrailers: false,
    respHeaders: [], hasRespHeaders: false, respTrailers: [], hasRespTrailers: false,
    reqBody: Buffer.alloc(0), hasReqBody: false, respBody: Buffer.alloc(0), hasRespBody: false,
    bufferingReqBody: false, pendingLocal: null, local: null, continued: [], closedByModule: false,
    vmFailure: null, ended: false,
  };
  if (vm.failed) { failStream(s, vm.failed); return s; }
  s.id = vm.nextCtxId++;
  vm.streams.set(s.id, s);
  try {
    vm.call('proxy_on_context_create', s.id, s.id, ROOT_ID);
  } catch (e) {
    failStream(s, vm.failed || String(e));
  }
  return s;
}

// failStream is Envoy's failed-VM path: 503 wasm_fail_stream, or nothing with fail-open.
function failStream(s, err) {
  if (!s.vmFailure) s.vmFailure = err;
  s.vm.streams.delete(s.id);
  if (!settings.fail_open && !s.local) s.local = { status: 503, details: 'wasm_fail_stream', body: Buffer.alloc(0), headers: [], grpc_status: 14 };
}

// runStream calls a stream callback and applies what Envoy applies when it returns.
function runStream(s, name, a, b) {
  const vm = s.vm;
  if (s.ended) throw Object.assign(new Error(`${name} after end of stream`), { kind: 'stream_state' });
  if (s.vmFailure || vm.failed) {
    if (!s.vmFailure) failStream(s, vm.failed);
    return settings.fail_open ? ACTION_CONTINUE : ACTION_PAUSE;
  }
  if (s.local) return ACTION_PAUSE;
  let r;
  try {
    r = vm.call(name, s.id, s.id, a, b);
  } catch (e) {
    s.pendingLocal = null;
    failStream(s, vm.failed || String(e));
    return settings.fail_open ? ACTION_CONTINUE : ACTION_PAUSE;
  }
  if (r === NOT_EXPORTED) return ACTION_CONTINUE;
  if (s.pendingLocal) { s.local = s.pendingLocal; s.pendingLocal = null; }
  return r;
}

function requestHeaders(s, headers, eos) {
  s.reqHeaders = headers;
  s.hasReqHeaders = true;
  return runStream(s, 'proxy_on_request_headers', headers.length, eos ? 1 : 0);
}

// requestBody: after a Pause (StopIterationAndBuffer) the host buffers, so the next call sees
// every chunk so far and gets their total size; Continue passes the buffer on.
function requestBody(s, chunk, eos) {
  s.reqBody = s.bufferingReqBody ? Buffer.concat([s.reqBody, chunk]) : Buffer.from(chunk);
  s.hasReqBody = true;
  const act = runStream(s, 'proxy_on_request_body', s.reqBody.length, eos ? 1 : 0);
  s.bufferingReqBody = act === ACTION_PAUSE && !s.local;
  return act;
}

function endStream(s) {
  if (s.ended) return;
  s.ended = true;
  const vm = s.vm;
  if (s.vmFailure || vm.failed) {
    if (!s.vmFailure) failStream(s, vm.failed);
    return;
  }
  try {
    for (const name of ['proxy_on_done', 'proxy_on_log', 'proxy_on_delete']) vm.call(name, s.id, s.id);
  } catch (e) {
    s.vmFailure = vm.failed || String(e);
  } finally {
    vm.streams.delete(s.id);
  }
}

function pickVM(i) {
  if (closed) throw Object.assign(new Error('host closed'), { kind: 'closed' });
  if (i === -1) { i = rr % vms.length; rr++; }
  if (!(i >= 0 && i < vms.length)) throw Object.assign(new Error(`vm ${i} of ${vms.length}`), { kind: 'bad_config' });
  return vms[i];
}
let rr = 0;

// doRequest is harness.Harness.Do: headers, body chunks while the filter lets them through, end.
function doRequest(r) {
  const vm = pickVM(r.vm);
  const s = newStream(vm);
  const chunks = (r.chunks || []).map((c) => Buffer.from(c, 'base64'));
  let act = requestHeaders(s, lowerKeys(fromGo(r.headers)), chunks.length === 0);
  if (act === ACTION_CONTINUE) {
    for (let i = 0; i < chunks.length; i++) {
      if (s.local) break;
      act = requestBody(s, chunks[i], i === chunks.length - 1);
    }
  }
  endStream(s);
  const l = s.local;
  return {
    vm: vm.index, context_id: s.id, action: act, request_headers: toGo(s.reqHeaders),
    vm_failure: s.vmFailure || '',
    local: l ? { status: l.status, details: l.details, body: l.body.toString('base64'), headers: toGo(l.headers), grpc_status: l.grpc_status } : null,
  };
}

// bench times proxy_on_request_headers (header hand-over included, as the harness's
// Stream.RequestHeaders) for n requests cycling through the given header sets, with one
// process.hrtime.bigint() pair per request, inside this process: the IPC is not timed. Every
// answer is checked against want; stream set-up and tear-down are outside the timing.
function bench(a) {
  const vm = pickVM(a.vm);
  const sets = a.header_sets.map((h) => lowerKeys(fromGo(h)));
  const n = a.n;
  const samples = new Float64Array(n);
  for (let i = 0; i < n; i++) {
    const s = newStream(vm);
    const hs = sets[i % sets.length];
    const t0 = process.hrtime.bigint();
    const act = requestHeaders(s, hs, true);
    const t1 = process.hrtime.bigint();
    samples[i] = Number(t1 - t0);
    const status = s.local ? s.local.status : 0;
    if (s.vmFailure || (act === ACTION_CONTINUE) !== a.want_continue || status !== a.want_status) {
      const err = new Error(`request ${i}: action ${act} local ${status} vm_failure ${s.vmFailure || ''}; want continue=${a.want_continue} status=${a.want_status}`);
      endStream(s);
      throw err;
    }
    endStream(s);
  }
  return { samples_ns: Buffer.from(samples.buffer).toString('base64'), memory_bytes: vm.memory.buffer.byteLength };
}

// ---- the mix with list updates (e2e BenchmarkModuleMix) ----

// How many times node's main thread has been scheduled onto a CPU: the third field of
// /proc/thread-self/schedstat (the kernel's sched_info.pcount), read with one pread into a
// buffer allocated once. It grows each time the thread comes back after being switched out,
// whether it was preempted or blocked, so an unchanged count across a request means the
// thread ran it without leaving the CPU. Node has no per-thread getrusage
// (process.resourceUsage() is RUSAGE_SELF: every thread of node, V8's helpers included, which
// would mark requests that were never switched out), and /proc/thread-self/status, which has
// the voluntary and involuntary counts apart, costs twice as much to read and disturbed the
// timings more (docs/benchmarks.md).
let schedFd = -2; // -2: not opened yet, -1: not available
const schedBuf = Buffer.alloc(256);
let schedCount = 0;
// readSched sets schedCount; false when the count cannot be read.
function readSched() {
  if (schedFd === -2) {
    try { schedFd = fs.openSync('/proc/thread-self/schedstat', 'r'); } catch (e) { schedFd = -1; }
  }
  if (schedFd < 0) return false;
  const n = fs.readSync(schedFd, schedBuf, 0, schedBuf.length, 0);
  let i = n - 1;
  while (i >= 0 && (schedBuf[i] < 48 || schedBuf[i] > 57)) i--;
  let v = 0;
  let m = 1;
  while (i >= 0 && schedBuf[i] >= 48 && schedBuf[i] <= 57) { v += (schedBuf[i] - 48) * m; m *= 10; i--; }
  schedCount = v;
  return true;
}

// mix runs one chunk of the mixed benchmark on a VM: first the given shared-data writes (a
// new list generation, as the lease holder's syncer writes it from another worker), then
// one request per entry of seq (an index into header_sets), each a new stream with only
// proxy_on_request_headers timed. Between requests, outside the timing, proxy_on_tick runs
// whenever the VM's own tick period has passed since its last tick, as Envoy's dispatcher
// fires the timer on the worker's thread between events. Around each tick and at both ends of
// the chunk it reads the module's test-only counter gc_counter (if named), so a collection
// that starts or ends inside a request callback shows as a change outside the ticks. Each
// request records its answer, its start (ns since the host's base), and whether this thread
// was switched out between the two reads of readSched that bracket it (bit 2: preempted or
// blocked, not told apart). Answers are returned, not checked: the driver knows when a revocation must show.
function mix(a) {
  const vm = pickVM(a.vm);
  const sets = a.header_sets.map((h) => lowerKeys(fromGo(h)));
  const seqRaw = Buffer.from(a.seq, 'base64');
  const n = seqRaw.length >>> 2;
  const seq = new Uint32Array(n);
  for (let i = 0; i < n; i++) seq[i] = seqRaw.readUInt32LE(4 * i);
  const samples = new Float64Array(n);
  const starts = new Float64Array(n);
  const status = new Uint16Array(n);
  const sw = new Uint8Array(n);
  const gcName = a.gc_counter || '';
  if (gcName && typeof vm.exports[gcName] !== 'function') throw new Error(`${gcName} is not exported (build with -tags jtiguard_testexports)`);
  const gc = () => (gcName ? vm.call(gcName, 0) : 0);
  const period = BigInt(vm.tickPeriod > 0 ? vm.tickPeriod : 0) * 1000000n;
  let gcStart = gc();
  let gcTicks = 0;
  const ticks = []; // [ns, gc counter change] per tick
  const published = process.hrtime.bigint();
  for (const w of a.publish || []) {
    const st = sharedSet(a.vm_id, w.key, Buffer.from(w.value || '', 'base64'), 0);
    if (st !== S.OK) throw new Error(`publish ${w.key}: status ${st}`);
  }
  if (vm.mixLastTick === undefined) vm.mixLastTick = published;
  let known = true;
  for (let i = 0; i < n; i++) {
    if (period > 0n && process.hrtime.bigint() - vm.mixLastTick >= period) {
      const g0 = gc();
      readSched();
      const tc = schedCount;
      const t0 = process.hrtime.bigint();
      vm.call('proxy_on_tick', ROOT_ID, ROOT_ID);
      const t1 = process.hrtime.bigint();
      readSched();
      const dg = gc() - g0;
      gcTicks += dg;
      vm.mixLastTick = t1;
      ticks.push([Number(t1 - t0), dg, schedCount !== tc ? 1 : 0]);
    }
    const s = newStream(vm);
    const hs = sets[seq[i]];
    known = (!a.no_switches && readSched()) && known;
    const c0 = schedCount;
    const t0 = process.hrtime.bigint();
    const act = requestHeaders(s, hs, true);
    const t1 = process.hrtime.bigint();
    if (!a.no_switches) readSched();
    samples[i] = Number(t1 - t0);
    starts[i] = Number(t0 - monoBase);
    sw[i] = schedCount !== c0 ? 4 : 0;
    if (s.vmFailure) status[i] = 0xffff;
    else if (s.local) status[i] = s.local.status;
    else status[i] = act === ACTION_CONTINUE ? 0 : 0xfffe;
    endStream(s);
    if (vm.failed) throw new VMFailed(vm.failed);
  }
  const gcAll = gc() - gcStart;
  const b64 = (arr) => Buffer.from(arr.buffer, arr.byteOffset, arr.byteLength).toString('base64');
  return {
    samples_ns: b64(samples), starts_ns: b64(starts), status: b64(status), switches: b64(sw),
    switches_known: known, published_ns: Number(published - monoBase), ticks,
    gc_in_ticks: gcTicks, gc_outside_ticks: gcAll - gcTicks, memory_bytes: vm.memory.buffer.byteLength,
  };
}

// benchExport measures the floor under a callback: it calls one export (with cpp-host's
// bookkeeping, as every callback) per times per batch, n batches, and returns each batch's
// mean per call in nanoseconds. For method measurements (docs/benchmarks.md), not the table.
function benchExport(a) {
  const vm = pickVM(a.vm);
  const args = a.args || [];
  const per = a.per || 1;
  const samples = new Float64Array(a.n);
  const [x, y, z] = [args[0], args[1], args[2]];
  for (let i = 0; i < a.n; i++) {
    const t0 = process.hrtime.bigint();
    for (let j = 0; j < per; j++) vm.call(a.name, ROOT_ID, x, y, z);
    samples[i] = Number(process.hrtime.bigint() - t0) / per;
  }
  return { samples_ns: Buffer.from(samples.buffer).toString('base64'), memory_bytes: vm.memory.buffer.byteLength };
}

// ---- protocol ----
function send(obj) { process.stdout.write(JSON.stringify(obj) + '\n'); }

const ops = {
  start(a) {
    settings = a.settings;
    surface = a.surface;
    echoLogs = !!a.echo_logs;
    settings.vm_config = Buffer.from(settings.vm_config || '', 'base64');
    settings.plugin_config = Buffer.from(settings.plugin_config || '', 'base64');
    settings.env = settings.env || {};
    settings.env_keys = settings.env_keys || [];
    properties = new Map(Object.entries(settings.properties || {}).map(([k, v]) => [k, Buffer.from(v || '', 'base64')]));
    const bytes = fs.readFileSync(a.wasm_path);
    const t0 = process.hrtime.bigint();
    try {
      wasmModule = new WebAssembly.Module(bytes);
    } catch (e) {
      throw Object.assign(new Error('compile: ' + e.message), { kind: 'start_failed' });
    }
    const compileNs = Number(process.hrtime.bigint() - t0);
    for (let i = 0; i < settings.workers; i++) {
      const vm = new VM(i);
      try {
        vm.instantiate(wasmModule);
      } catch (e) {
        if (e.kind) throw e;
        throw Object.assign(new Error(`instantiate vm ${i}: ${e.message}`), { kind: 'start_failed' });
      }
      vms.push(vm);
      vm.start();
    }
    return { compile_ns: compileNs, vms: vms.map((v) => v.timings), v8: process.versions.v8, node: process.version, flags: process.execArgv };
  },
  do: (a) => doRequest(a.request),
  tick(a) {
    if (a.vm === -1) {
      let n = 0;
      for (const vm of vms) {
        if (vm.tickPeriod > 0 && !vm.failed) {
          try { vm.call('proxy_on_tick', ROOT_ID, ROOT_ID); n++; } catch (e) { /* failed */ }
        }
      }
      return n;
    }
    const vm = pickVM(a.vm);
    vm.call('proxy_on_tick', ROOT_ID, ROOT_ID);
    return 1;
  },
  wait_calls() {
    if (inflight === 0) return 0;
    return new Promise((resolve) => inflightWaiters.push(() => resolve(0)));
  },
  calls: () => calls,
  shared_get(a) {
    const r = sharedGet(a.vm_id, a.key);
    return { status: r.status, value: r.value ? r.value.toString('base64') : '', cas: r.cas || 0 };
  },
  shared_set: (a) => sharedSet(a.vm_id, a.key, Buffer.from(a.value || '', 'base64'), a.cas >>> 0),
  metrics() {
    const out = [];
    for (const m of metrics.values()) out.push({ type: m.type, name: m.name, value: m.value.toString(), records: m.records });
    return out;
  },
  logs: (a) => logs.slice(a.since || 0),
  vms: () => vms.map((v) => ({ failed: v.failed || '', memory_bytes: v.memory.buffer.byteLength, tick_period_ms: v.tickPeriod })),
  bench,
  mix,
  // call_export calls a test-only export (a counter of a module built with -tags
  // jtiguard_testexports) outside any context.
  call_export: (a) => {
    const r = pickVM(a.vm).call(a.name, 0);
    if (r === NOT_EXPORTED) throw new Error(`${a.name} is not exported`);
    return r;
  },
  bench_export: benchExport,
  close() {
    closed = true;
    for (const vm of vms) vm.stopTimer();
    agent.destroy();
    setImmediate(() => process.exit(0));
    return 0;
  },
};

const rl = readline.createInterface({ input: process.stdin, crlfDelay: Infinity });
rl.on('line', async (line) => {
  let msg;
  try {
    msg = JSON.parse(line);
  } catch (e) {
    send({ id: 0, ok: false, error: 'bad request line: ' + e.message, kind: 'protocol' });
    return;
  }
  try {
    const op = ops[msg.op];
    if (!op) throw Object.assign(new Error('unknown op ' + msg.op), { kind: 'protocol' });
    const result = await op(msg.args || {});
    send({ id: msg.id, ok: true, result });
  } catch (e) {
    send({ id: msg.id, ok: false, error: e.message, kind: e.kind || (e instanceof VMFailed ? 'vm_failed' : 'error') });
  }
});
// The driver going away (its end of stdin closed) ends the host.
rl.on('close', () => {
  closed = true;
  for (const vm of vms) vm.stopTimer();
  agent.destroy();
  setImmediate(() => process.exit(0));
});
