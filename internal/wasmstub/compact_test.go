package wasmstub

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// dataModule is a module with one memory of the given pages, exported as "memory", a function
// "f" (so it has function and code sections), optionally a start function writing 0xAB at
// address 0 (to show an existing start still runs), and the given active data segments.
func dataModule(pages uint32, withStart bool, segs []DataSegment) []byte {
	var data [][]byte
	for _, s := range segs {
		data = append(data, cat(b(0x00), i32Const(int32(uint32(s.Offset))), b(end), leb(uint64(len(s.Bytes))), s.Bytes))
	}
	funcs := [][]byte{leb(0)}
	bodies := [][]byte{body(noLocals, b(end))}
	sections := [][]byte{
		sec(1, vec(b(0x60, 0x00, 0x00))),
	}
	if withStart {
		funcs = append(funcs, leb(0))
		// i32.store8 (i32.const 0) (i32.const 0xAB)
		bodies = append(bodies, body(noLocals, i32Const(0), i32Const(0xAB), b(0x3A, 0x00, 0x00), b(end)))
	}
	sections = append(sections,
		sec(3, vec(funcs...)),
		sec(5, vec(cat(b(0x00), leb(uint64(pages))))),
		sec(7, vec(export("memory", 2, 0), export("f", 0, 0))))
	if withStart {
		sections = append(sections, sec(8, leb(1)))
	}
	sections = append(sections,
		sec(10, vec(bodies...)),
		sec(11, vec(data...)),
		custom("name", b(1), func() []byte { c := vec(nameAssoc(0, "f")); return cat(leb(uint64(len(c))), c) }()))
	return module(sections...)
}

// memoryAfterInstantiation instantiates m in wazero (start function included) and returns its
// memory.
func memoryAfterInstantiation(t *testing.T, ctx context.Context, r wazero.Runtime, m []byte) []byte {
	t.Helper()
	compiled, err := r.CompileModule(ctx, m)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	mod, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().WithName(""))
	if err != nil {
		t.Fatalf("instantiate: %v", err)
	}
	defer mod.Close(ctx)
	mem, ok := mod.Memory().Read(0, mod.Memory().Size())
	if !ok {
		t.Fatal("memory unreadable")
	}
	return bytes.Clone(mem)
}

// findfunctabLike lays out what Go's linker writes for wasm's findfunctab: 20-byte buckets, 16
// per function, each holding the function number as a little-endian u32 with its high zero
// bytes, and its low ones when the number is a multiple of 256, left out of the segment.
func findfunctabLike(base uint64, funcs int) []DataSegment {
	var segs []DataSegment
	for f := 1; f < funcs; f++ {
		var v [4]byte
		binary.LittleEndian.PutUint32(v[:], uint32(f))
		lo, hi := 0, 4
		for hi > 0 && v[hi-1] == 0 {
			hi--
		}
		for lo < hi && v[lo] == 0 {
			lo++
		}
		for k := 0; k < 16; k++ {
			at := base + uint64(f*16+k)*20
			segs = append(segs, DataSegment{Offset: at + uint64(lo), Bytes: bytes.Clone(v[lo:hi])})
		}
	}
	return segs
}

func TestCompactDataFindfunctab(t *testing.T) {
	ctx := context.Background()
	for _, withStart := range []bool{false, true} {
		segs := append([]DataSegment{{Offset: 16, Bytes: []byte("leading data")}}, findfunctabLike(4096, 700)...)
		last := segs[len(segs)-1]
		segs = append(segs, DataSegment{Offset: last.Offset + 30, Bytes: []byte("trailing data, long enough")})
		m := dataModule(5, withStart, segs)
		out, st, err := CompactData(m)
		if err != nil {
			t.Fatal(err)
		}
		if st.Runs == 0 || st.SegmentsAfter > 20 || len(out) >= len(m)/3 {
			t.Errorf("withStart=%v: %+v, %d -> %d bytes: the findfunctab pattern was not compacted", withStart, st, len(m), len(out))
		}
		r := wazero.NewRuntime(ctx)
		want := memoryAfterInstantiation(t, ctx, r, m)
		got := memoryAfterInstantiation(t, ctx, r, out)
		if withStart && want[0] != 0xAB {
			t.Fatal("the original start function did not run")
		}
		if !bytes.Equal(got, want) {
			t.Errorf("withStart=%v: memory differs after compaction at %d", withStart, firstDiff(got, want))
		}
		// The new function is named, after the old names.
		l, err := Inspect(out)
		if err != nil {
			t.Fatal(err)
		}
		names := map[string]bool{}
		for _, f := range l.Funcs {
			names[f.Name] = true
		}
		if !names[DataInitFunctionName] || !names["f"] {
			t.Errorf("names after compaction: %v", names)
		}
		_ = r.Close(ctx)
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// TestCompactDataRandomLayouts: generated data layouts, some regular (strided, stepping values),
// some not, mixed with ordinary segments; whatever CompactData does, the memory the engine
// initialises is the original's.
func TestCompactDataRandomLayouts(t *testing.T) {
	ctx := context.Background()
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	rng := rand.New(rand.NewPCG(1, 2))
	compacted := 0
	for iter := 0; iter < 150; iter++ {
		var segs []DataSegment
		at := uint64(rng.IntN(64))
		for len(segs) < 400 && at < 60000 {
			switch rng.IntN(3) {
			case 0: // an ordinary segment
				n := 1 + rng.IntN(40)
				bs := make([]byte, n)
				for i := range bs {
					bs[i] = byte(1 + rng.IntN(255))
				}
				segs = append(segs, DataSegment{Offset: at, Bytes: bs})
				at += uint64(n + 8 + rng.IntN(20))
			default: // a strided run, regular or with noise
				stride := uint64(4 + rng.IntN(30))
				every := 1 + rng.IntN(20)
				v := uint32(rng.IntN(1 << 20))
				step := uint32(rng.IntN(5)) - 2
				width := 1 + rng.IntN(4)
				n := rng.IntN(80)
				for i := 0; i < n && at < 60000; i++ {
					if i > 0 && (i+every/2)%every == 0 {
						v += step
					}
					val := v
					if rng.IntN(30) == 0 {
						val = rng.Uint32() // noise
					}
					var bs [4]byte
					binary.LittleEndian.PutUint32(bs[:], val)
					w := width
					for w > 1 && bs[w-1] == 0 {
						w--
					}
					if bs[0] == 0 {
						bs[0] = 1 // Go's linker never starts a segment with zero
					}
					segs = append(segs, DataSegment{Offset: at, Bytes: bytes.Clone(bs[:w])})
					at += stride
				}
				at += 8
			}
		}
		m := dataModule(2, iter%2 == 0, segs)
		out, st, err := CompactData(m)
		if err != nil {
			t.Fatalf("iter %d: %v", iter, err)
		}
		if st.Runs > 0 {
			compacted++
		}
		if !bytes.Equal(memoryAfterInstantiation(t, ctx, r, out), memoryAfterInstantiation(t, ctx, r, m)) {
			t.Fatalf("iter %d: memory differs after compaction (%+v)", iter, st)
		}
	}
	if compacted < 50 {
		t.Errorf("only %d of 150 layouts had a run compacted: the generator no longer exercises the rewrite", compacted)
	}
}

func TestCompactDataRefuses(t *testing.T) {
	run := findfunctabLike(0, 3)
	tests := []struct {
		name string
		m    []byte
	}{
		{"overlapping segments", dataModule(1, false, append(run, DataSegment{Offset: run[3].Offset, Bytes: []byte{1, 2, 3}}))},
		{"64-bit memory", func() []byte {
			m := dataModule(1, false, run)
			return bytes.Replace(m, []byte{0x05, 0x03, 0x01, 0x00, 0x01}, []byte{0x05, 0x03, 0x01, 0x04, 0x01}, 1)
		}()},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, err := CompactData(tc.m); !errors.Is(err, ErrCompact) {
				t.Fatalf("err = %v, want ErrCompact", err)
			}
		})
	}
	// The proof catches a rewrite that would change memory: the runs found, each altered.
	m0 := dataModule(2, false, findfunctabLike(64, 40))
	l, err := Inspect(m0)
	if err != nil {
		t.Fatal(err)
	}
	secs, err := splitSections(m0)
	if err != nil {
		t.Fatal(err)
	}
	runs := findRuns(l.Data)
	if len(runs) == 0 {
		t.Fatal("no runs in the findfunctab layout")
	}
	for _, alter := range []func(*fillRun){
		func(r *fillRun) { r.value0++ },
		func(r *fillRun) { r.addr++ },
		func(r *fillRun) { r.count-- },
		func(r *fillRun) { r.every++ },
	} {
		bad := slices.Clone(runs)
		alter(&bad[len(bad)-1])
		out, err := rewriteWithRuns(m0, secs, l, bad)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkSameImage(l.Data, out, bad); !errors.Is(err, ErrCompact) {
			t.Errorf("altered run %+v: err = %v, want ErrCompact", bad[len(bad)-1], err)
		}
	}
	// Nothing worth a loop: the module comes back as it was.
	m := dataModule(1, false, []DataSegment{{Offset: 8, Bytes: []byte("x")}, {Offset: 40, Bytes: []byte("y")}})
	out, st, err := CompactData(m)
	if err != nil || !bytes.Equal(out, m) || st.Runs != 0 {
		t.Fatalf("no runs: err %v, changed %v, %+v", err, !bytes.Equal(out, m), st)
	}
}

// TestRealModuleCompactData compacts the real plugin (stubbed as make build does) and checks, in
// wazero, that it initialises exactly the same memory as before, that its data section shrank by
// the findfunctab's tiny segments, and that it still starts: _initialize walks Go's PC tables.
func TestRealModuleCompactData(t *testing.T) {
	ctx := context.Background()
	stubbedModule, err := StubImports(buildRealModule(t), EnvoyStubs)
	if err != nil {
		t.Fatal(err)
	}
	out, st, err := CompactData(stubbedModule)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%+v", st)
	if st.SegmentsAfter > st.SegmentsBefore/4 || st.BytesBefore-st.BytesAfter < 300_000 {
		t.Errorf("compaction saved too little: %+v (docs/module-size.md expects about 560 KB and 57 000 segments)", st)
	}
	for _, m := range [][]byte{stubbedModule, out} {
		if _, _, err := CompactData(m); err != nil {
			t.Fatalf("compacting again: %v", err)
		}
	}
	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r); err != nil {
		t.Fatal(err)
	}
	compiled, err := r.CompileModule(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	env := r.NewHostModuleBuilder("env")
	for _, d := range compiled.ImportedFunctions() {
		mod, name, _ := d.Import()
		if mod != "env" {
			continue
		}
		nres := len(d.ResultTypes())
		env.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, stack []uint64) {
			clear(stack[:nres])
		}), d.ParamTypes(), d.ResultTypes()).Export(name)
	}
	if _, err := env.Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	memOf := func(m []byte, name string) (api.Module, []byte) {
		c, err := r.CompileModule(ctx, m)
		if err != nil {
			t.Fatal(err)
		}
		mod, err := r.InstantiateModule(ctx, c, wazero.NewModuleConfig().WithName(name).WithStartFunctions())
		if err != nil {
			t.Fatal(err)
		}
		mem, _ := mod.Memory().Read(0, mod.Memory().Size())
		return mod, bytes.Clone(mem)
	}
	_, want := memOf(stubbedModule, "before")
	mod, got := memOf(out, "after")
	if !bytes.Equal(got, want) {
		t.Fatalf("memory after instantiation differs at %#x", firstDiff(got, want))
	}
	if _, err := mod.ExportedFunction("_initialize").Call(ctx); err != nil {
		t.Fatalf("_initialize of the compacted module: %v", err)
	}
}
