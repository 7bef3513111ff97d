package harness

// A tiny WebAssembly binary writer for tests of the import surface, start
// sequence, traps and host functions that do not need the real module. It
// knows just enough of the binary format (types, imports, functions, one
// memory, exports, code, active data) to build proxy-wasm shaped modules
// whose callbacks are a few hand-written instructions.

import "github.com/tetratelabs/wazero/api"

type wImport struct {
	module, name    string
	params, results []api.ValueType
	memory          bool // import a memory instead of a function
}

type wFunc struct {
	export          string
	params, results []api.ValueType
	body            []byte // instructions, without the final end
}

type wData struct {
	offset uint32
	bytes  []byte
}

type wModule struct {
	imports []wImport
	funcs   []wFunc
	data    []wData
	noMem   bool
}

func uleb(v uint64) []byte {
	var out []byte
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if v != 0 {
			out = append(out, b|0x80)
			continue
		}
		return append(out, b)
	}
}

func sleb(v int64) []byte {
	var out []byte
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && b&0x40 == 0) || (v == -1 && b&0x40 != 0) {
			return append(out, b)
		}
		out = append(out, b|0x80)
	}
}

func wname(s string) []byte { return append(uleb(uint64(len(s))), s...) }

func vec(items [][]byte) []byte {
	out := uleb(uint64(len(items)))
	for _, it := range items {
		out = append(out, it...)
	}
	return out
}

func section(id byte, content []byte) []byte {
	return append(append([]byte{id}, uleb(uint64(len(content)))...), content...)
}

func functype(params, results []api.ValueType) []byte {
	out := []byte{0x60}
	out = append(out, uleb(uint64(len(params)))...)
	out = append(out, params...)
	out = append(out, uleb(uint64(len(results)))...)
	return append(out, results...)
}

// funcIndex returns the index of an imported function by name, for call.
func (m *wModule) funcIndex(name string) uint32 {
	i := uint32(0)
	for _, im := range m.imports {
		if im.memory {
			continue
		}
		if im.name == name {
			return i
		}
		i++
	}
	panic("no import " + name)
}

func (m *wModule) bytes() []byte {
	var types, imports, funcs, exports, codes, datas [][]byte
	nImportedFuncs := 0
	for _, im := range m.imports {
		entry := append(wname(im.module), wname(im.name)...)
		if im.memory {
			entry = append(entry, 0x02, 0x00, 0x01)
		} else {
			entry = append(entry, 0x00)
			entry = append(entry, uleb(uint64(len(types)))...)
			types = append(types, functype(im.params, im.results))
			nImportedFuncs++
		}
		imports = append(imports, entry)
	}
	for i, f := range m.funcs {
		funcs = append(funcs, uleb(uint64(len(types))))
		types = append(types, functype(f.params, f.results))
		body := append([]byte{0x00}, f.body...) // no locals
		body = append(body, 0x0b)
		codes = append(codes, append(uleb(uint64(len(body))), body...))
		if f.export != "" {
			exports = append(exports, append(append(wname(f.export), 0x00), uleb(uint64(nImportedFuncs+i))...))
		}
	}
	if !m.noMem {
		exports = append(exports, append(wname("memory"), 0x02, 0x00))
	}
	for _, d := range m.data {
		e := []byte{0x00, 0x41}
		e = append(e, sleb(int64(d.offset))...)
		e = append(e, 0x0b)
		e = append(e, uleb(uint64(len(d.bytes)))...)
		datas = append(datas, append(e, d.bytes...))
	}
	out := []byte{0x00, 'a', 's', 'm', 0x01, 0x00, 0x00, 0x00}
	out = append(out, section(1, vec(types))...)
	if len(imports) > 0 {
		out = append(out, section(2, vec(imports))...)
	}
	out = append(out, section(3, vec(funcs))...)
	if !m.noMem {
		out = append(out, section(5, vec([][]byte{{0x00, 0x02}}))...) // 2 pages
	}
	out = append(out, section(7, vec(exports))...)
	out = append(out, section(10, vec(codes))...)
	if len(datas) > 0 {
		out = append(out, section(11, vec(datas))...)
	}
	return out
}

// Instruction helpers.
func i32c(v int32) []byte       { return append([]byte{0x41}, sleb(int64(v))...) }
func i64c(v int64) []byte       { return append([]byte{0x42}, sleb(v)...) }
func call(idx uint32) []byte    { return append([]byte{0x10}, uleb(uint64(idx))...) }
func localGet(i uint32) []byte  { return append([]byte{0x20}, uleb(uint64(i))...) }
func i32load(addr int32) []byte { return append(i32c(addr), 0x28, 0x02, 0x00) }

const (
	opDrop        = 0x1a
	opUnreachable = 0x00
	opI32GtU      = 0x4b
	opI64ExtendU  = 0xad
)

func ifThen(body ...byte) []byte {
	out := []byte{0x04, 0x40}
	out = append(out, body...)
	return append(out, 0x0b)
}

func cat(parts ...[]byte) []byte {
	var out []byte
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

var (
	tI32 = []api.ValueType{api.ValueTypeI32}
	tI64 = []api.ValueType{api.ValueTypeI64}
)

func ts(n int) []api.ValueType { return words(n) }

// envImport declares env.name with Envoy's signature.
func envImport(name string) wImport {
	s := envSigs[name]
	return wImport{module: "env", name: name, params: s.params, results: s.results}
}

// wasiImport declares wasi_snapshot_preview1.name with Envoy's signature.
func wasiImport(name string) wImport {
	s := wasiSigs[name]
	return wImport{module: wasiModule, name: name, params: s.params, results: s.results}
}

// proxyFuncs returns the minimal exports of a proxy-wasm module; callbacks
// given in override replace the defaults (matched by export name, "" drops).
func proxyFuncs(override map[string][]byte) []wFunc {
	def := []wFunc{
		{export: "_initialize"},
		{export: "proxy_abi_version_0_2_1"},
		{export: "proxy_on_memory_allocate", params: ts(1), results: tI32, body: i32c(8192)},
		{export: "proxy_on_context_create", params: ts(2)},
		{export: "proxy_on_vm_start", params: ts(2), results: tI32, body: i32c(1)},
		{export: "proxy_on_configure", params: ts(2), results: tI32, body: i32c(1)},
		{export: "proxy_on_request_headers", params: ts(3), results: tI32, body: i32c(0)},
		{export: "proxy_on_tick", params: ts(1)},
		{export: "proxy_on_http_call_response", params: ts(5)},
		{export: "proxy_on_done", params: ts(1), results: tI32, body: i32c(1)},
		{export: "proxy_on_log", params: ts(1)},
		{export: "proxy_on_delete", params: ts(1)},
	}
	var out []wFunc
	for _, f := range def {
		if b, ok := override[f.export]; ok {
			if b == nil {
				continue // dropped
			}
			f.body = b
		}
		out = append(out, f)
	}
	return out
}
