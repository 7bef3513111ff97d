package wasmstub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// hostF are the host implementations of env.f0..f2 in the hand module.
var hostF = [3]func(int32) int32{
	func(x int32) int32 { return x + 1 },
	func(x int32) int32 { return x + 1000 },
	func(x int32) int32 { return x * 2 },
}

func newRuntime(ctx context.Context) wazero.Runtime {
	return wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().
		WithCoreFeatures(api.CoreFeaturesV2|experimental.CoreFeaturesTailCall).
		WithCustomSections(true))
}

// TestHandModule stubs subsets of the hand module's imports, runs the result with only the
// remaining imports provided, and checks every way of reaching a function still reaches the right
// one: the host function where it was kept, the stub (returning its errno) where it was replaced.
func TestHandModule(t *testing.T) {
	tests := []struct {
		name  string
		stubs map[string]int32
	}{
		{"none", nil},
		{"f1", map[string]int32{"env.f1": 52}},
		{"f0 negative errno", map[string]int32{"env.f0": -70000}},
		{"f2 large errno", map[string]int32{"env.f2": 1 << 30}},
		{"f0 and f2", map[string]int32{"env.f0": 8, "env.f2": 76}},
		{"all", map[string]int32{"env.f0": 1, "env.f1": 2, "env.f2": 3}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			orig := handModule()
			out, err := StubImports(orig, tc.stubs)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(orig, handModule()) {
				t.Fatal("StubImports modified its input")
			}

			// What each function should do after the rewrite.
			var f [3]func(int32) int32
			for i := range f {
				if errno, ok := tc.stubs[fmt.Sprintf("env.f%d", i)]; ok {
					f[i] = func(int32) int32 { return errno }
				} else {
					f[i] = hostF[i]
				}
			}

			r := newRuntime(ctx)
			defer r.Close(ctx)
			compiled, err := r.CompileModule(ctx, out)
			if err != nil {
				t.Fatalf("rewritten module does not validate: %v", err)
			}

			// Imports: exactly the functions not stubbed, in their original order.
			var wantImports, gotImports []string
			for i := range 3 {
				if _, ok := tc.stubs[fmt.Sprintf("env.f%d", i)]; !ok {
					wantImports = append(wantImports, fmt.Sprintf("env.f%d", i))
				}
			}
			for _, d := range compiled.ImportedFunctions() {
				mod, name, _ := d.Import()
				gotImports = append(gotImports, mod+"."+name)
			}
			if !slices.Equal(gotImports, wantImports) {
				t.Errorf("imports = %v, want %v", gotImports, wantImports)
			}

			// Exports still name the right functions, under the right debug names, at the new indices.
			newIdx := expectedIndices(tc.stubs)
			exports := compiled.ExportedFunctions()
			for name, old := range map[string]int{
				"direct": fnDirect, "indirect": fnIndirect, "reffunc": fnRefFunc, "viaglobal": fnViaGlobal,
				"passive": fnPassive, "kitchen": fnKitchen, "tail": fnTail, "f1": fnF1,
			} {
				d, ok := exports[name]
				if !ok {
					t.Errorf("export %q missing", name)
					continue
				}
				if d.Index() != newIdx[old] {
					t.Errorf("export %q is function %d, want %d", name, d.Index(), newIdx[old])
				}
				if d.Name() != handFuncNames[old] {
					t.Errorf("export %q has name-section name %q, want %q", name, d.Name(), handFuncNames[old])
				}
			}
			if d := exports["f1"]; d != nil {
				_, _, isImport := d.Import()
				_, stubbed := tc.stubs["env.f1"]
				if isImport == stubbed {
					t.Errorf("export f1: import=%v, but stubbed=%v", isImport, stubbed)
				}
			}
			if got := exports["kitchen"].ParamNames(); !slices.Equal(got, []string{"x"}) {
				t.Errorf("kitchen parameter names = %q, want [x] (local names subsection)", got)
			}
			if compiled.Name() != "hand" {
				t.Errorf("module name = %q", compiled.Name())
			}
			if got := compiled.CustomSections(); len(got) != 1 || got[0].Name() != "producers" ||
				!bytes.Equal(got[0].Data(), vec(cat(str("language"), vec(cat(str("asm"), str("1")))))) {
				t.Errorf("producers section not preserved: %v", got)
			}

			host := r.NewHostModuleBuilder("env")
			for i, fn := range hostF {
				if _, stubbed := tc.stubs[fmt.Sprintf("env.f%d", i)]; stubbed {
					continue
				}
				host.NewFunctionBuilder().WithFunc(func(x int32) int32 { return fn(x) }).Export(fmt.Sprintf("f%d", i))
			}
			if _, err := host.Instantiate(ctx); err != nil {
				t.Fatal(err)
			}
			mod, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig())
			if err != nil {
				t.Fatalf("instantiate: %v", err)
			}

			if got, want := int32(mod.ExportedGlobal("g").Get()), f[1](7); got != want {
				t.Errorf("global set by start function = %d, want %d", got, want)
			}
			calls := []struct {
				fn   string
				arg  int32
				want int32
			}{
				{"direct", 10, f[0](10) + f[1](10) + f[2](10)},
				{"indirect", 0, f[0](100)},
				{"indirect", 1, f[1](100)},
				{"indirect", 2, f[2](100)},
				{"indirect", 3, f[0](100) + f[1](100) + f[2](100)},
				{"indirect", 4, f[0](100)},
				{"indirect", 5, f[1](100)},
				{"indirect", 9, f[2](100)},
				{"indirect", 10, f[1](100)},
				{"reffunc", 5, f[1](5)},
				{"viaglobal", 5, f[2](5)},
				{"passive", 5, f[2](5)},
				{"kitchen", 10, f[0](f[2](10) + 37)},
				{"tail", 3, f[1](3)},
				{"f1", 123, f[1](123)},
			}
			for _, c := range calls {
				res, err := mod.ExportedFunction(c.fn).Call(ctx, api.EncodeI32(c.arg))
				if err != nil {
					t.Errorf("%s(%d): %v", c.fn, c.arg, err)
					continue
				}
				if got := api.DecodeI32(res[0]); got != c.want {
					t.Errorf("%s(%d) = %d, want %d", c.fn, c.arg, got, c.want)
				}
			}
		})
	}
}

// expectedIndices is the renumbering the stubs should cause, worked out independently: kept
// imports first, then defined functions, then one stub per removed import in import order.
func expectedIndices(stubs map[string]int32) []uint32 {
	var order []int
	var removed []int
	for i := range 3 {
		if _, ok := stubs[fmt.Sprintf("env.f%d", i)]; ok {
			removed = append(removed, i)
		} else {
			order = append(order, i)
		}
	}
	for i := 3; i < numHandFuncs; i++ {
		order = append(order, i)
	}
	order = append(order, removed...)
	idx := make([]uint32, numHandFuncs)
	for n, old := range order {
		idx[old] = uint32(n)
	}
	return idx
}

// TestExactBytes pins the encoding: which bytes change, that a padded index keeps its width (so
// the body size does not change), and how the stub is encoded.
func TestExactBytes(t *testing.T) {
	types := sec(1, vec(b(0x60, 0x00, 0x01, i32)))
	imports := func(names ...string) []byte {
		var im [][]byte
		for _, n := range names {
			im = append(im, funcImport("a", n, 0))
		}
		return sec(2, vec(im...))
	}
	stub := func(errno int64) []byte { return body(noLocals, b(0x41), sleb(errno), b(end)) }

	tests := []struct {
		name  string
		in    []byte
		stubs map[string]int32
		want  []byte
	}{
		{
			name: "minimal LEBs",
			in: module(types, imports("x", "y"), sec(3, vec(leb(0))),
				sec(7, vec(export("run", 0, 2), export("x", 0, 0))),
				sec(10, vec(body(noLocals, call(0), b(0x1A), call(1), b(end))))),
			stubs: map[string]int32{"a.x": 9},
			want: module(types, imports("y"), sec(3, vec(leb(0), leb(0))),
				sec(7, vec(export("run", 0, 1), export("x", 0, 2))),
				sec(10, vec(body(noLocals, call(2), b(0x1A), call(0), b(end)), stub(9)))),
		},
		{
			name: "padded call immediates keep their width",
			in: module(types, imports("x", "y"), sec(3, vec(leb(0))),
				sec(10, vec(body(noLocals, b(0x10), leb5(0), b(0x1A), b(0x10), leb5(1), b(end))))),
			stubs: map[string]int32{"a.x": -1},
			want: module(types, imports("y"), sec(3, vec(leb(0), leb(0))),
				sec(10, vec(body(noLocals, b(0x10), leb5(2), b(0x1A), b(0x10), leb5(0), b(end)), stub(-1)))),
		},
		{
			name: "a rewritten index that needs more bytes grows the body",
			in: module(types, imports(manyNames(130)...), sec(3, vec(leb(0))),
				sec(10, vec(body(noLocals, call(0), b(end))))),
			stubs: map[string]int32{"a.n0": 52},
			want: module(types, imports(manyNames(130)[1:]...), sec(3, vec(leb(0), leb(0))),
				sec(10, vec(body(noLocals, call(130), b(end)), stub(52)))),
		},
		{
			name:  "imports only: function and code sections are created, custom sections stay last",
			in:    module(types, imports("x"), custom("name", sec(1, vec(nameAssoc(0, "x"))))),
			stubs: map[string]int32{"a.x": 52},
			want: module(types, imports(), sec(3, vec(leb(0))), sec(10, vec(stub(52))),
				custom("name", sec(1, vec(nameAssoc(0, "x"))))),
		},
		{
			name: "names are renumbered and re-sorted; other subsections are copied",
			in: module(types, imports("x", "y"), sec(3, vec(leb(0))),
				sec(10, vec(body(noLocals, i32Const(0), b(end)))),
				custom("name", b(0), leb(2), str("m"),
					sec(1, vec(nameAssoc(0, "x"), nameAssoc(1, "y"), nameAssoc(2, "z"))),
					sec(2, vec(cat(leb(0), vec(nameAssoc(0, "p"))), cat(leb(2), vec()))),
					sec(7, vec(nameAssoc(0, "global0"))))),
			stubs: map[string]int32{"a.x": 52},
			want: module(types, imports("y"), sec(3, vec(leb(0), leb(0))),
				sec(10, vec(body(noLocals, i32Const(0), b(end)), stub(52))),
				custom("name", b(0), leb(2), str("m"),
					sec(1, vec(nameAssoc(0, "y"), nameAssoc(1, "z"), nameAssoc(2, "x"))),
					sec(2, vec(cat(leb(1), vec()), cat(leb(2), vec(nameAssoc(0, "p"))))),
					sec(7, vec(nameAssoc(0, "global0"))))),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := StubImports(tc.in, tc.stubs)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, tc.want) {
				t.Errorf("got  % x\nwant % x", got, tc.want)
			}
		})
	}
}

func manyNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("n%d", i)
	}
	return out
}

// TestInstructionDecoding puts instructions with awkward immediates in front of function
// references and checks that the references after them are still found: a decoder that skipped
// an immediate wrongly would miss or corrupt them. Module: imports m.a (0), m.b (1), one defined
// function (2); m.a is stubbed, so 0 -> 2, 1 -> 0, 2 -> 1.
func TestInstructionDecoding(t *testing.T) {
	tests := []struct {
		name    string
		in, out []byte
	}{
		{"call and return_call", cat(call(0), call(1), returnCall(2)), cat(call(2), call(0), returnCall(1))},
		{"ref.func", cat(refFunc(0), b(0x1A)), cat(refFunc(2), b(0x1A))},
		{"i32.const 0x10", cat(b(0x41, 0x10, 0x1A)), cat(b(0x41, 0x10, 0x1A))},
		{"i64.const multibyte", b(0x42, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x00, 0x1A), b(0x42, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90, 0x00, 0x1A)},
		{"f32/f64 const with 0x10 bytes", b(0x43, 0x10, 0x10, 0x10, 0x10, 0x44, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10), b(0x43, 0x10, 0x10, 0x10, 0x10, 0x44, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x10)},
		{"block type index", b(0x02, 0x10, 0x0B, 0x03, 0x7F, 0x0B, 0x04, 0x40, 0x05, 0x0B), b(0x02, 0x10, 0x0B, 0x03, 0x7F, 0x0B, 0x04, 0x40, 0x05, 0x0B)},
		{"block type (ref null 16)", b(0x02, 0x63, 0x10, 0x0B), b(0x02, 0x63, 0x10, 0x0B)},
		{"br_table", b(0x0E, 0x03, 0x10, 0x10, 0x10, 0x10), b(0x0E, 0x03, 0x10, 0x10, 0x10, 0x10)},
		{"call_indirect", b(0x11, 0x10, 0x10, 0x13, 0x10, 0x00), b(0x11, 0x10, 0x10, 0x13, 0x10, 0x00)},
		{"select typed", b(0x1C, 0x02, 0x7F, 0x64, 0x10), b(0x1C, 0x02, 0x7F, 0x64, 0x10)},
		{"memarg with memory index and 64-bit offset", b(0x28, 0x42, 0x10, 0x90, 0x90, 0x90, 0x90, 0x90, 0x01), b(0x28, 0x42, 0x10, 0x90, 0x90, 0x90, 0x90, 0x90, 0x01)},
		{"memory.size/grow", b(0x3F, 0x10, 0x40, 0x00), b(0x3F, 0x10, 0x40, 0x00)},
		{"ref.null", b(0xD0, 0x70, 0xD0, 0x10), b(0xD0, 0x70, 0xD0, 0x10)},
		{"0xFC bulk", b(0xFC, 0x08, 0x10, 0x00, 0xFC, 0x0C, 0x10, 0x10, 0xFC, 0x0E, 0x10, 0x10, 0xFC, 0x11, 0x10, 0xFC, 0x07), b(0xFC, 0x08, 0x10, 0x00, 0xFC, 0x0C, 0x10, 0x10, 0xFC, 0x0E, 0x10, 0x10, 0xFC, 0x11, 0x10, 0xFC, 0x07)},
		{"0xFD simd", cat(b(0xFD, 0x0C), bytes.Repeat(b(0x10), 16), b(0xFD, 0x0D), bytes.Repeat(b(0x10), 16), b(0xFD, 0x15, 0x10, 0xFD, 0x54, 0x00, 0x10, 0x10, 0xFD, 0x00, 0x04, 0x10, 0xFD, 0x80, 0x02)), cat(b(0xFD, 0x0C), bytes.Repeat(b(0x10), 16), b(0xFD, 0x0D), bytes.Repeat(b(0x10), 16), b(0xFD, 0x15, 0x10, 0xFD, 0x54, 0x00, 0x10, 0x10, 0xFD, 0x00, 0x04, 0x10, 0xFD, 0x80, 0x02))},
		{"0xFE atomics", b(0xFE, 0x00, 0x02, 0x10, 0xFE, 0x03, 0x00, 0xFE, 0x4E, 0x00, 0x10), b(0xFE, 0x00, 0x02, 0x10, 0xFE, 0x03, 0x00, 0xFE, 0x4E, 0x00, 0x10)},
		{"0xFB gc", b(0xFB, 0x02, 0x10, 0x10, 0xFB, 0x08, 0x10, 0x10, 0xFB, 0x14, 0x6E, 0xFB, 0x18, 0x03, 0x10, 0x6E, 0x10, 0xFB, 0x1C), b(0xFB, 0x02, 0x10, 0x10, 0xFB, 0x08, 0x10, 0x10, 0xFB, 0x14, 0x6E, 0xFB, 0x18, 0x03, 0x10, 0x6E, 0x10, 0xFB, 0x1C)},
		{"exceptions: try_table", b(0x1F, 0x40, 0x04, 0x00, 0x10, 0x10, 0x01, 0x10, 0x10, 0x02, 0x10, 0x03, 0x10, 0x0B), b(0x1F, 0x40, 0x04, 0x00, 0x10, 0x10, 0x01, 0x10, 0x10, 0x02, 0x10, 0x03, 0x10, 0x0B)},
		{"exceptions: legacy try", cat(b(0x06, 0x40), call(0), b(0x07, 0x10, 0x19, 0x09, 0x10, 0x0B, 0x06, 0x40, 0x18, 0x10, 0x08, 0x10, 0x0A)), cat(b(0x06, 0x40), call(2), b(0x07, 0x10, 0x19, 0x09, 0x10, 0x0B, 0x06, 0x40, 0x18, 0x10, 0x08, 0x10, 0x0A))},
		{"function references", b(0x14, 0x10, 0x15, 0x10, 0xD5, 0x10, 0xD6, 0x10, 0xD3, 0xD4), b(0x14, 0x10, 0x15, 0x10, 0xD5, 0x10, 0xD6, 0x10, 0xD3, 0xD4)},
		{"numeric and sign extension", b(0x45, 0x6A, 0xA7, 0xC4), b(0x45, 0x6A, 0xA7, 0xC4)},
	}
	types := sec(1, vec(b(0x60, 0x00, 0x01, i32)))
	imports := sec(2, vec(funcImport("m", "a", 0), funcImport("m", "b", 0)))
	stub := body(noLocals, i32Const(52), b(end))
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			in := module(types, imports, sec(3, vec(leb(0))),
				sec(10, vec(body(noLocals, tc.in, call(1), refFunc(2), b(end)))))
			want := module(types, sec(2, vec(funcImport("m", "b", 0))), sec(3, vec(leb(0), leb(0))),
				sec(10, vec(body(noLocals, tc.out, call(0), refFunc(1), b(end)), stub)))
			got, err := StubImports(in, map[string]int32{"m.a": 52})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("got  % x\nwant % x", got, want)
			}
		})
	}
}

func TestNothingToStubIsIdentity(t *testing.T) {
	padded := module(sec(1, vec(b(0x60, 0x00, 0x01, i32))), sec(2, vec(funcImport("a", "x", 0))),
		sec(3, vec(leb(0))), sec(10, vec(body(noLocals, b(0x10), leb5(0), b(end)))))
	for name, m := range map[string][]byte{"hand": handModule(), "padded": padded, "header only": header()} {
		for _, stubs := range []map[string]int32{nil, {}} {
			got, err := StubImports(m, stubs)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if !bytes.Equal(got, m) {
				t.Errorf("%s: stubbing nothing changed the module", name)
			}
		}
	}
}

func TestErrors(t *testing.T) {
	types := sec(1, vec(b(0x60, 0x01, i32, 0x01, i32), b(0x60, 0x00, 0x01, i64), b(0x60, 0x00, 0x00), b(0x60, 0x00, 0x02, i32, i32)))
	imports := sec(2, vec(funcImport("env", "ok", 0), funcImport("env", "i64", 1), funcImport("env", "void", 2),
		funcImport("env", "two", 3), cat(str("env"), str("memory"), b(0x02, 0x00, 0x01)), funcImport("env", "bad", 9)))
	good := module(types, imports)
	withCode := func(code ...[]byte) []byte {
		return module(sec(1, vec(b(0x60, 0x00, 0x00))), sec(3, vec(leb(0))), sec(10, vec(body(noLocals, cat(code...)))))
	}
	tests := []struct {
		name   string
		module []byte
		stubs  map[string]int32
		want   error
	}{
		{"absent import", good, map[string]int32{"env.nope": 52}, ErrNotFound},
		{"absent among present", good, map[string]int32{"env.ok": 52, "wasi.nope": 52}, ErrNotFound},
		{"module and name split differently", good, map[string]int32{"en.v.ok": 52}, ErrNotFound},
		{"returns i64", good, map[string]int32{"env.i64": 52}, ErrUnsupportedType},
		{"returns nothing", good, map[string]int32{"env.void": 52}, ErrUnsupportedType},
		{"returns two i32", good, map[string]int32{"env.two": 52}, ErrUnsupportedType},
		{"memory import", good, map[string]int32{"env.memory": 52}, ErrUnsupportedType},
		{"import type out of range", good, map[string]int32{"env.bad": 52}, ErrBadModule},
		{"no magic", []byte("\x00asn\x01\x00\x00\x00"), nil, ErrBadModule},
		{"too short", []byte("\x00as"), nil, ErrBadModule},
		{"component", []byte("\x00asm\x0d\x00\x01\x00"), nil, ErrBadModule},
		{"section size past end", cat(header(), b(1, 0x10, 0x00)), nil, ErrBadModule},
		{"sections out of order", module(sec(3, vec()), sec(1, vec())), nil, ErrBadModule},
		{"repeated section", module(sec(1, vec()), sec(1, vec())), nil, ErrBadModule},
		{"unknown section", module(sec(14, vec())), nil, ErrBadModule},
		{"overlong LEB", cat(header(), b(1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00)), nil, ErrBadModule},
		{"LEB overflows u32", cat(header(), b(1, 0xFF, 0xFF, 0xFF, 0xFF, 0x1F)), nil, ErrBadModule},
		{"unknown opcode", withCode(b(0xFF, end)), nil, ErrBadModule},
		{"unknown 0xFC opcode", withCode(b(0xFC, 0x30, end)), nil, ErrBadModule},
		{"body without end", withCode(b(0x01)), nil, ErrBadModule},
		{"body ending in an immediate 0x0B", withCode(b(0x41, 0x0B)), nil, ErrBadModule},
		{"call out of range", withCode(call(5), b(end)), nil, ErrBadModule},
		{"body/function count mismatch", module(sec(1, vec(b(0x60, 0x00, 0x00))), sec(3, vec(leb(0), leb(0))), sec(10, vec(body(noLocals, b(end))))), nil, ErrBadModule},
		{"functions without code", module(sec(1, vec(b(0x60, 0x00, 0x00))), sec(3, vec(leb(0)))), nil, ErrBadModule},
		{"huge vector count", module(sec(2, b(0xFF, 0xFF, 0xFF, 0xFF, 0x0F))), nil, ErrBadModule},
		{"trailing bytes in section", module(sec(1, vec(), b(0x00))), nil, ErrBadModule},
		{"name section with unknown function", module(custom("name", sec(1, vec(nameAssoc(3, "x"))))), nil, ErrBadModule},
		{"element segment encoding 8", module(sec(9, vec(leb(8)))), nil, ErrBadModule},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := StubImports(tc.module, tc.stubs)
			if !errors.Is(err, tc.want) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if out != nil {
				t.Errorf("got output along with an error")
			}
		})
	}
}

// TestTruncated feeds every prefix of the hand module: none may panic, and every failure must be
// one of the package's sentinels.
func TestTruncated(t *testing.T) {
	m := handModule()
	for n := range len(m) {
		_, err := StubImports(m[:n], map[string]int32{"env.f1": 52})
		if err == nil {
			continue // a cut at a section boundary can leave a well-formed module
		}
		if !errors.Is(err, ErrBadModule) && !errors.Is(err, ErrNotFound) {
			t.Fatalf("prefix %d: %v", n, err)
		}
	}
}

func FuzzStubImports(f *testing.F) {
	f.Add(handModule(), "env.f1", int32(52))
	f.Add(handModule(), "env.f0", int32(-1))
	f.Add(module(sec(1, vec(b(0x60, 0x00, 0x01, i32))), sec(2, vec(funcImport("a", "x", 0)))), "a.x", int32(52))
	f.Fuzz(func(t *testing.T, m []byte, name string, errno int32) {
		out, err := StubImports(m, map[string]int32{name: errno})
		if err != nil {
			if !errors.Is(err, ErrBadModule) && !errors.Is(err, ErrNotFound) && !errors.Is(err, ErrUnsupportedType) {
				t.Fatalf("error without a sentinel: %v", err)
			}
			return
		}
		// What we wrote must parse again, no longer import the name, and be stable.
		if _, err := StubImports(out, map[string]int32{name: errno}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("stubbed import still there (or output malformed): %v", err)
		}
		again, err := StubImports(out, nil)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("output does not round-trip: %v", err)
		}
	})
}
