package harness

import (
	"context"
	"errors"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
)

// growModule exports memory.grow, a 32-bit store and a load over its 2-page memory (no
// maximum: the runtime's limit is the maximum, as for Go's modules).
func growModule() []byte {
	i32 := api.ValueTypeI32
	m := wModule{funcs: []wFunc{
		{export: "grow", params: ts(1), results: ts(1), body: cat(localGet(0), []byte{0x40, 0x00})},
		{export: "store", params: []api.ValueType{i32, i32}, body: cat(localGet(0), localGet(1), []byte{0x36, 0x02, 0x00})},
		{export: "load", params: ts(1), results: ts(1), body: cat(localGet(0), []byte{0x28, 0x02, 0x00})},
	}}
	return m.bytes()
}

// TestLinearMemoryGrowsInPlace runs memory.grow in wazero with the harness's allocator and
// with the fallback it uses where it cannot reserve: what was written stays, new pages read
// zero, a grow past the limit fails without touching the memory, and the reserved memory
// never moves (on linux, where the harness reserves).
func TestLinearMemoryGrowsInPlace(t *testing.T) {
	const limit = 64 // pages
	for _, c := range []struct {
		name     string
		alloc    experimental.MemoryAllocator
		reserved bool
	}{
		{"harness", memoryAllocator, runtime.GOOS == "linux"},
		{"growing", experimental.MemoryAllocatorFunc(growingAllocator), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			ctx := context.Background()
			rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithMemoryLimitPages(limit))
			defer rt.Close(ctx)
			mod, err := rt.InstantiateWithConfig(experimental.WithMemoryAllocator(ctx, c.alloc), growModule(), wazero.NewModuleConfig())
			if err != nil {
				t.Fatal(err)
			}
			call := func(name string, args ...uint64) uint64 {
				t.Helper()
				r, err := mod.ExportedFunction(name).Call(ctx, args...)
				if err != nil {
					t.Fatalf("%s%v: %v", name, args, err)
				}
				if len(r) == 0 {
					return 0
				}
				return r[0]
			}
			base := func() uintptr {
				b, _ := mod.Memory().Read(0, 1)
				return uintptr(unsafe.Pointer(unsafe.SliceData(b)))
			}
			at0 := base()
			call("store", 8, 0x01020304)
			call("store", 65536+12, 0x0a0b0c0d)
			for _, grow := range []uint64{1, 5, 20} {
				before := uint64(mod.Memory().Size() / 65536)
				if got := uint32(call("grow", grow)); uint64(got) != before {
					t.Fatalf("grow(%d) = %d; want the old size %d", grow, got, before)
				}
				if got := call("load", (before+grow)*65536-4); got != 0 {
					t.Fatalf("the last word of the new pages is %#x; want 0", got)
				}
			}
			if got := mod.Memory().Size() / 65536; got != 28 {
				t.Fatalf("memory is %d pages; want 28", got)
			}
			if got := int32(call("grow", limit)); got != -1 {
				t.Fatalf("grow past the limit = %d; want -1", got)
			}
			if got := mod.Memory().Size() / 65536; got != 28 {
				t.Fatalf("memory is %d pages after a failed grow; want 28", got)
			}
			if a, b := call("load", 8), call("load", 65536+12); a != 0x01020304 || b != 0x0a0b0c0d {
				t.Fatalf("values after the grows: %#x %#x", a, b)
			}
			if c.reserved && base() != at0 {
				t.Fatal("the reserved memory moved on a grow")
			}
		})
	}
}

// TestCallsAfterCloseAreRefused: Close unmaps each VM's memory, so a stream ended late, a tick
// or a call made after it must not run the module (it would fault on the unmapped memory and
// take the whole process down). Every callback here writes to memory.
func TestCallsAfterCloseAreRefused(t *testing.T) {
	store := cat(i32c(4096), i32c(7), []byte{0x36, 0x02, 0x00})
	m := &wModule{funcs: proxyFuncs(map[string][]byte{
		"proxy_on_request_headers": cat(store, i32c(0)),
		"proxy_on_done":            cat(store, i32c(1)),
		"proxy_on_tick":            store,
	})}
	ctx := context.Background()
	h := newHarness(t, m, testConfig().WithWorkers(1))
	open, err := h.NewStream(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := open.RequestHeaders(ctx, Pairs{{":path", "/"}}, false); err != nil {
		t.Fatal(err)
	}
	if err := h.VM(0).Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if err := h.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := open.RequestHeaders(ctx, Pairs{{":path", "/"}}, true); !errors.Is(err, ErrClosed) {
		t.Errorf("request headers after Close: %v; want ErrClosed", err)
	}
	if err := open.End(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("End after Close: %v; want ErrClosed", err)
	}
	if err := h.VM(0).Tick(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("Tick after Close: %v; want ErrClosed", err)
	}
	if _, err := h.VM(0).CallExport(ctx, "proxy_on_tick", 1); !errors.Is(err, ErrClosed) {
		t.Errorf("CallExport after Close: %v; want ErrClosed", err)
	}
	if _, err := h.NewStream(ctx, 0); !errors.Is(err, ErrClosed) {
		t.Errorf("NewStream after Close: %v; want ErrClosed", err)
	}
	if _, err := h.Do(ctx, Request{Path: "/"}); !errors.Is(err, ErrClosed) {
		t.Errorf("Do after Close: %v; want ErrClosed", err)
	}
}

// BenchmarkMemoryGrow grows a memory from 2 pages to 50 MiB, 4 MiB at a time (as Go's runtime
// in the module grows its heap), touching each new 4 KiB page once (as the module's allocator
// does), with the harness's allocator and with wazero's own behaviour (growing). It reports
// the slowest single grow with its pages' first touch (max-grow-ms) and the cost of a page
// (ns/page): in place, a page costs its first touch (the OS's page fault); copied, every grow
// also copies the whole memory so far, and the slowest grow grows with the memory.
func BenchmarkMemoryGrow(b *testing.B) {
	const step, top = 64, 800 // pages: 4 MiB steps up to 50 MiB
	for _, c := range []struct {
		name  string
		alloc experimental.MemoryAllocator
	}{
		{"harness", memoryAllocator},
		{"growing", experimental.MemoryAllocatorFunc(growingAllocator)},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := context.Background()
			rt := wazero.NewRuntime(ctx)
			defer rt.Close(ctx)
			compiled, err := rt.CompileModule(ctx, growModule())
			if err != nil {
				b.Fatal(err)
			}
			var slowest, total time.Duration
			pages := 0
			for b.Loop() {
				mod, err := rt.InstantiateModule(experimental.WithMemoryAllocator(ctx, c.alloc), compiled,
					wazero.NewModuleConfig().WithName(""))
				if err != nil {
					b.Fatal(err)
				}
				grow := mod.ExportedFunction("grow")
				for size := uint32(2); size+step <= top; size += step {
					t0 := time.Now()
					if _, err := grow.Call(ctx, step); err != nil {
						b.Fatal(err)
					}
					mem := mod.Memory()
					for off := size * 65536; off < (size+step)*65536; off += 4096 {
						mem.WriteByte(off, 1)
					}
					d := time.Since(t0)
					slowest, total = max(slowest, d), total+d
					pages += step * 16
				}
				mod.Close(ctx)
			}
			b.ReportMetric(float64(slowest.Microseconds())/1000, "max-grow-ms")
			b.ReportMetric(float64(total.Nanoseconds())/float64(pages), "ns/page")
		})
	}
}
