package wasmstub

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"
)

// stubbed is the import the real module's build stubs (wasmstub.EnvoyStubs).
const stubbed = "wasi_snapshot_preview1.poll_oneoff"

var (
	realOnce   sync.Once
	realModule []byte
	realErr    error
)

// buildRealModule builds the plugin exactly as the release build does. A failed build fails the
// test: the point is to prove the rewrite on the module we ship, and a skip would hide that.
func buildRealModule(t *testing.T) []byte {
	t.Helper()
	realOnce.Do(func() {
		root, err := filepath.Abs("../..")
		if err != nil {
			realErr = err
			return
		}
		dir, err := os.MkdirTemp("", "wasmstub")
		if err != nil {
			realErr = err
			return
		}
		defer os.RemoveAll(dir)
		out := filepath.Join(dir, "m.wasm")
		cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, ".")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		if msg, err := cmd.CombinedOutput(); err != nil {
			realErr = err
			realModule = msg
			return
		}
		realModule, realErr = os.ReadFile(out)
	})
	if realErr != nil {
		t.Fatalf("building the plugin: %v\n%s", realErr, realModule)
	}
	return realModule
}

func importNames(t *testing.T, ctx context.Context, r wazero.Runtime, m []byte) (wazero.CompiledModule, []string) {
	t.Helper()
	compiled, err := r.CompileModule(ctx, m)
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	var names []string
	for _, d := range compiled.ImportedFunctions() {
		mod, name, _ := d.Import()
		names = append(names, mod+"."+name)
	}
	return compiled, names
}

// TestRealModule stubs poll_oneoff in the real plugin and runs it: _initialize runs every
// package init (Go's runtime walks its PC tables while it does, and panics if function pointers
// went astray), then a context is created and memory allocated through the proxy-wasm exports.
func TestRealModule(t *testing.T) {
	ctx := context.Background()
	orig := buildRealModule(t)
	out, err := StubImports(orig, map[string]int32{stubbed: 0})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("module: %d bytes, after stubbing %s: %d bytes", len(orig), stubbed, len(out))

	r := wazero.NewRuntime(ctx)
	defer r.Close(ctx)
	origCompiled, before := importNames(t, ctx, r, orig)
	if !slices.Contains(before, stubbed) {
		t.Fatalf("the plugin no longer imports %s; this test (and the stub step) may be obsolete. Imports: %v", stubbed, before)
	}
	compiled, after := importNames(t, ctx, r, out)
	if want := slices.DeleteFunc(slices.Clone(before), func(s string) bool { return s == stubbed }); !slices.Equal(after, want) {
		t.Errorf("imports after = %v\nwant %v", after, want)
	}
	// What the step is for: every WASI import is one the Envoy hosts of 2025-2026 provide.
	envoyWASI := []string{"fd_write", "fd_read", "fd_seek", "fd_close", "fd_fdstat_get", "fd_fdstat_set_flags",
		"environ_get", "environ_sizes_get", "args_get", "args_sizes_get", "clock_time_get", "random_get",
		"sched_yield", "poll_oneoff", "proc_exit", "path_open", "fd_prestat_get", "fd_prestat_dir_name"}
	for _, im := range after {
		if name, ok := strings.CutPrefix(im, wasi_snapshot_preview1.ModuleName+"."); ok && !slices.Contains(envoyWASI, name) {
			t.Errorf("after stubbing, the plugin still imports %s, which Envoy 1.33..1.3x lacks (stub it too?)", im)
		}
	}
	// Exports keep their names and their functions' debug names.
	for name, d := range origCompiled.ExportedFunctions() {
		nd, ok := compiled.ExportedFunctions()[name]
		if !ok {
			t.Errorf("export %s lost", name)
			continue
		}
		if nd.Name() != d.Name() || nd.Index() != d.Index()-1 {
			t.Errorf("export %s: function %d %q, was %d %q", name, nd.Index(), nd.Name(), d.Index(), d.Name())
		}
	}

	if _, err := wasi_snapshot_preview1.Instantiate(ctx, r); err != nil {
		t.Fatal(err)
	}
	env := r.NewHostModuleBuilder("env")
	for _, d := range compiled.ImportedFunctions() {
		mod, name, _ := d.Import()
		switch mod {
		case "env":
		case wasi_snapshot_preview1.ModuleName:
			continue
		default:
			t.Fatalf("unexpected import module %s.%s", mod, name)
		}
		nres := len(d.ResultTypes())
		env.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, stack []uint64) {
			clear(stack[:nres]) // every proxy-wasm import returns a status; 0 is OK
		}), d.ParamTypes(), d.ResultTypes()).Export(name)
	}
	if _, err := env.Instantiate(ctx); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	mod, err := r.InstantiateModule(ctx, compiled, wazero.NewModuleConfig().
		WithStartFunctions().WithSysWalltime().WithSysNanotime().WithStdout(&stdout).WithStderr(&stderr))
	if err != nil {
		t.Fatalf("instantiate: %v", err)
	}
	call := func(name string, args ...uint64) []uint64 {
		t.Helper()
		fn := mod.ExportedFunction(name)
		if fn == nil {
			t.Fatalf("no export %s", name)
		}
		res, err := fn.Call(ctx, args...)
		if err != nil {
			t.Fatalf("%s: %v\nstderr: %s", name, err, stderr.String())
		}
		return res
	}
	call("_initialize")
	call("proxy_on_context_create", 1, 0)
	res := call("proxy_on_memory_allocate", 100)
	if len(res) != 1 || uint32(res[0]) == 0 {
		t.Fatalf("proxy_on_memory_allocate(100) = %v, want a non-zero pointer", res)
	}
	if size := mod.Memory().Size(); uint32(res[0])+100 > size {
		t.Errorf("allocated pointer %#x outside memory of %d bytes", res[0], size)
	}
	if strings.Contains(stderr.String(), "panic") || strings.Contains(stderr.String(), "fatal") {
		t.Errorf("stderr: %s", stderr.String())
	}
}

func TestRealModuleNothingToStub(t *testing.T) {
	orig := buildRealModule(t)
	out, err := StubImports(orig, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out, orig) {
		t.Fatal("stubbing nothing changed the real module")
	}
	if _, err := StubImports(orig, map[string]int32{"wasi_snapshot_preview1.no_such_function": 52}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("absent import: %v", err)
	}
}
