package harness

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// The import surface below is copied by hand from proxy-wasm-cpp-host
// (include/proxy-wasm/exports.h FOR_ALL_WASI_FUNCTIONS / FOR_ALL_HOST_FUNCTIONS,
// src/wasm.cc registerCallbacks and startVm, include/proxy-wasm/wasm.h
// allocMemory), before and after commit 94091cd. Signatures are Envoy's, not
// the WASI spec's: Envoy declares path_link with 6 and path_symlink with 4
// words, so a module importing them with the spec's signature fails to link
// in Envoy too.

const (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

type sig struct {
	params  []api.ValueType
	results []api.ValueType
}

func words(n int) []api.ValueType {
	p := make([]api.ValueType, n)
	for i := range p {
		p[i] = i32
	}
	return p
}

func w(n int) sig { return sig{params: words(n), results: []api.ValueType{i32}} }

func p(params ...api.ValueType) sig { return sig{params: params, results: []api.ValueType{i32}} }

// Module names Envoy registers WASI under (both get the same functions).
const (
	wasiModule         = "wasi_snapshot_preview1"
	wasiUnstableModule = "wasi_unstable"
	envModule          = "env"
)

// wasiSigs is the full (current) WASI surface Envoy registers.
var wasiSigs = map[string]sig{
	"fd_write":                w(4),
	"fd_read":                 w(4),
	"fd_seek":                 p(i32, i64, i32, i32),
	"fd_close":                w(1),
	"fd_fdstat_get":           w(2),
	"fd_fdstat_set_flags":     w(2),
	"fd_fdstat_set_rights":    p(i32, i64, i64),
	"environ_get":             w(2),
	"environ_sizes_get":       w(2),
	"args_get":                w(2),
	"args_sizes_get":          w(2),
	"clock_time_get":          p(i32, i64, i32),
	"clock_res_get":           w(2),
	"fd_advise":               p(i32, i64, i64, i32),
	"fd_allocate":             p(i32, i64, i64),
	"fd_datasync":             w(1),
	"fd_filestat_set_size":    p(i32, i64),
	"fd_filestat_set_times":   p(i32, i64, i64, i32),
	"fd_pread":                p(i32, i32, i32, i64, i32),
	"fd_pwrite":               p(i32, i32, i32, i64, i32),
	"fd_readdir":              p(i32, i32, i32, i64, i32),
	"fd_renumber":             w(2),
	"fd_sync":                 w(1),
	"fd_tell":                 w(2),
	"path_create_directory":   w(3),
	"path_filestat_set_times": p(i32, i32, i32, i32, i64, i64, i32),
	"path_link":               w(6),
	"path_readlink":           w(6),
	"path_remove_directory":   w(3),
	"path_rename":             w(6),
	"path_symlink":            w(4),
	"path_unlink_file":        w(3),
	"sock_accept":             w(3),
	"sock_recv":               w(6),
	"sock_send":               w(5),
	"sock_shutdown":           w(2),
	"random_get":              w(2),
	"sched_yield":             w(0),
	"poll_oneoff":             w(4),
	"proc_exit":               {params: words(1)},
	"path_open":               p(i32, i32, i32, i32, i32, i64, i64, i32, i32),
	"fd_prestat_get":          w(2),
	"fd_prestat_dir_name":     w(3),
	"path_filestat_get":       w(5),
	"fd_filestat_get":         w(2),
}

// wasiEnvoy133 lists the WASI functions of Envoy 1.33 (cpp-host c4d7bb0).
var wasiEnvoy133 = []string{
	"fd_write", "fd_read", "fd_seek", "fd_close", "fd_fdstat_get", "fd_fdstat_set_flags",
	"environ_get", "environ_sizes_get", "args_get", "args_sizes_get", "clock_time_get",
	"random_get", "sched_yield", "poll_oneoff", "proc_exit", "path_open",
	"fd_prestat_get", "fd_prestat_dir_name",
}

// envSigs is env.*: the ABI v0.2.1 proxy_* functions plus the two emscripten
// helpers Envoy always registers.
var envSigs = map[string]sig{
	"pthread_equal":                   w(2),
	"emscripten_notify_memory_growth": {params: words(1)},

	"proxy_log":                          w(3),
	"proxy_get_status":                   w(3),
	"proxy_set_property":                 w(4),
	"proxy_get_property":                 w(4),
	"proxy_send_local_response":          w(8),
	"proxy_get_shared_data":              w(5),
	"proxy_set_shared_data":              w(5),
	"proxy_register_shared_queue":        w(3),
	"proxy_resolve_shared_queue":         w(5),
	"proxy_dequeue_shared_queue":         w(3),
	"proxy_enqueue_shared_queue":         w(3),
	"proxy_get_header_map_value":         w(5),
	"proxy_add_header_map_value":         w(5),
	"proxy_replace_header_map_value":     w(5),
	"proxy_remove_header_map_value":      w(3),
	"proxy_get_header_map_pairs":         w(3),
	"proxy_set_header_map_pairs":         w(3),
	"proxy_get_header_map_size":          w(2),
	"proxy_get_buffer_status":            w(3),
	"proxy_get_buffer_bytes":             w(5),
	"proxy_set_buffer_bytes":             w(5),
	"proxy_http_call":                    w(10),
	"proxy_grpc_call":                    w(12),
	"proxy_grpc_stream":                  w(9),
	"proxy_grpc_close":                   w(1),
	"proxy_grpc_cancel":                  w(1),
	"proxy_grpc_send":                    w(4),
	"proxy_set_tick_period_milliseconds": w(1),
	"proxy_get_current_time_nanoseconds": w(1),
	"proxy_define_metric":                w(4),
	"proxy_increment_metric":             p(i32, i64),
	"proxy_record_metric":                p(i32, i64),
	"proxy_get_metric":                   w(2),
	"proxy_set_effective_context":        w(1),
	"proxy_done":                         w(0),
	"proxy_call_foreign_function":        w(6),
	// ABI v0.2.1 specific.
	"proxy_continue_stream": w(1),
	"proxy_close_stream":    w(1),
	"proxy_get_log_level":   w(1),
}

// wasiNames returns the WASI function names of generation g.
func wasiNames(g WASIGeneration) []string {
	if g == WASIEnvoy133 {
		return wasiEnvoy133
	}
	names := make([]string, 0, len(wasiSigs))
	for n := range wasiSigs {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// phase says which host functions the guest may call right now.
type phase int

const (
	phaseNormal     phase = iota
	phaseInitialize       // _initialize / _start / main
	phaseMalloc           // proxy_on_memory_allocate (malloc)
)

func (p phase) String() string {
	switch p {
	case phaseInitialize:
		return "_initialize"
	case phaseMalloc:
		return "proxy_on_memory_allocate"
	}
	return "callback"
}

// Functions allowed while Envoy restricts callbacks. Names are bare: the
// WASI ones apply to both wasi module names, "proxy_log" and
// "emscripten_notify_memory_growth" are env.
var (
	initAllowed133 = []string{
		"emscripten_notify_memory_growth", "proxy_log", "fd_write",
		"args_sizes_get", "args_get", "environ_sizes_get", "environ_get",
		"fd_prestat_get", "fd_prestat_dir_name", "clock_time_get", "random_get",
		"fd_fdstat_get", "fd_fdstat_set_flags",
	}
	initAllowedCurrent = []string{
		"emscripten_notify_memory_growth", "proxy_log", "fd_write",
		"args_sizes_get", "args_get", "environ_sizes_get", "environ_get",
		"clock_time_get", "clock_res_get", "random_get",
		"poll_oneoff", "fd_fdstat_get", "fd_fdstat_set_flags",
		"fd_advise", "fd_allocate", "fd_datasync", "fd_fdstat_set_rights", "fd_filestat_get",
		"fd_filestat_set_size", "fd_filestat_set_times", "fd_pread", "fd_prestat_dir_name",
		"fd_prestat_get", "fd_pwrite", "fd_readdir", "fd_renumber", "fd_sync", "fd_tell",
		"path_create_directory", "path_filestat_get", "path_filestat_set_times", "path_link",
		"path_readlink", "path_remove_directory", "path_rename", "path_symlink",
		"path_unlink_file", "sock_accept", "sock_recv", "sock_send", "sock_shutdown",
	}
	mallocAllowed133     = []string{"proxy_log", "fd_write", "clock_time_get"}
	mallocAllowedCurrent = []string{"proxy_log", "fd_write", "clock_time_get", "poll_oneoff"}
)

// restrictions maps a phase to the set of bare names allowed in it.
type restrictions map[phase]map[string]bool

func newRestrictions(g WASIGeneration) restrictions {
	set := func(names []string) map[string]bool {
		m := make(map[string]bool, len(names))
		for _, n := range names {
			m[n] = true
		}
		return m
	}
	if g == WASIEnvoy133 {
		return restrictions{phaseInitialize: set(initAllowed133), phaseMalloc: set(mallocAllowed133)}
	}
	return restrictions{phaseInitialize: set(initAllowedCurrent), phaseMalloc: set(mallocAllowedCurrent)}
}

func (r restrictions) allowed(ph phase, name string) bool {
	if ph == phaseNormal {
		return true
	}
	return r[ph][name]
}

// Required exports. Envoy takes malloc if the module exports it and
// proxy_on_memory_allocate otherwise.
const (
	exportABIVersion    = "proxy_abi_version_0_2_1"
	exportMalloc        = "malloc"
	exportAllocate      = "proxy_on_memory_allocate"
	exportContextCreate = "proxy_on_context_create"
	exportMemory        = "memory"
)

// checkModule refuses a compiled module the way Envoy would: every import
// must be one Envoy provides in generation g, with Envoy's signature, and
// the ABI marker, an allocator, proxy_on_context_create and the memory must
// be exported. All problems are reported together.
func checkModule(cm wazero.CompiledModule, g WASIGeneration) error {
	var errs []error

	wasi := map[string]bool{}
	for _, n := range wasiNames(g) {
		wasi[n] = true
	}
	for _, def := range cm.ImportedFunctions() {
		mod, name, _ := def.Import()
		var want sig
		var ok bool
		switch mod {
		case wasiModule, wasiUnstableModule:
			if wasi[name] {
				want, ok = wasiSigs[name]
			}
		case envModule:
			want, ok = envSigs[name]
		}
		if !ok {
			errs = append(errs, fmt.Errorf("%w: %s.%s (wasi surface %s); envoy refuses to load a module with a missing import",
				ErrImportNotProvided, mod, name, g))
			continue
		}
		if !slices.Equal(def.ParamTypes(), want.params) || !slices.Equal(def.ResultTypes(), want.results) {
			errs = append(errs, fmt.Errorf("%w: %s.%s has signature %s; envoy provides %s",
				ErrImportNotProvided, mod, name, sigString(def.ParamTypes(), def.ResultTypes()), sigString(want.params, want.results)))
		}
	}
	for _, def := range cm.ImportedMemories() {
		mod, name, _ := def.Import()
		errs = append(errs, fmt.Errorf("%w: memory %s.%s; envoy provides no memory import", ErrImportNotProvided, mod, name))
	}

	exports := cm.ExportedFunctions()
	if _, ok := exports[exportABIVersion]; !ok {
		var other []string
		for n := range exports {
			if strings.HasPrefix(n, "proxy_abi_version_") {
				other = append(other, n)
			}
		}
		if len(other) > 0 {
			errs = append(errs, fmt.Errorf("%w: module declares %v; the harness implements %s only", ErrABIVersion, other, exportABIVersion))
		} else {
			errs = append(errs, fmt.Errorf("%w: export %s not found", ErrABIVersion, exportABIVersion))
		}
	}
	_, hasMalloc := exports[exportMalloc]
	_, hasAlloc := exports[exportAllocate]
	if !hasMalloc && !hasAlloc {
		errs = append(errs, fmt.Errorf("%w: %s (or malloc)", ErrMissingExport, exportAllocate))
	}
	if _, ok := exports[exportContextCreate]; !ok {
		errs = append(errs, fmt.Errorf("%w: %s", ErrMissingExport, exportContextCreate))
	}
	if _, ok := cm.ExportedMemories()[exportMemory]; !ok {
		errs = append(errs, fmt.Errorf("%w: memory %q", ErrMissingExport, exportMemory))
	}
	return errors.Join(errs...)
}

func sigString(params, results []api.ValueType) string {
	name := func(ts []api.ValueType) string {
		s := make([]string, len(ts))
		for i, t := range ts {
			s[i] = api.ValueTypeName(t)
		}
		return strings.Join(s, ",")
	}
	return "(" + name(params) + ")->(" + name(results) + ")"
}

// CheckModule compiles wasm and reports every reason Envoy with WASI surface g would refuse
// to load it: an import Envoy does not provide (or with another signature), or a missing
// required export. Errors wrap ErrImportNotProvided, ErrABIVersion or ErrMissingExport.
func CheckModule(ctx context.Context, wasm []byte, g WASIGeneration) error {
	r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigInterpreter())
	defer r.Close(ctx)
	cm, err := r.CompileModule(ctx, wasm)
	if err != nil {
		return fmt.Errorf("harness: compile module: %w", err)
	}
	return checkModule(cm, g)
}

// Surface is the import surface of one WASI generation as data: every function
// Envoy registers with its signature, how each WASI function answers, which
// env functions do more than answer UNIMPLEMENTED, and what the restricted
// phases allow. The harness is built from the same tables, and the V8 host
// receives this value at start, so the two hosts cannot drift apart.
type Surface struct {
	Generation string `json:"generation"`
	// WASI are the functions registered under both wasi_snapshot_preview1 and
	// wasi_unstable.
	WASI []Import `json:"wasi"`
	// Env are the env functions; Implemented says whether the host does more
	// than answer StatusUnimplemented (12).
	Env []Import `json:"env"`
	// InitAllowed and MallocAllowed are the bare names callable during
	// _initialize and inside proxy_on_memory_allocate; anything else traps
	// ("restricted_callback").
	InitAllowed   []string `json:"init_allowed"`
	MallocAllowed []string `json:"malloc_allowed"`
}

// Import is one host function.
type Import struct {
	Name        string   `json:"name"`
	Params      []string `json:"params"`  // "i32" or "i64"
	Results     []string `json:"results"` // empty or one "i32"
	Answer      *Answer  `json:"answer,omitempty"`
	Implemented bool     `json:"implemented,omitempty"`
}

// SurfaceOf returns the surface of generation g, names sorted.
func SurfaceOf(g WASIGeneration) Surface {
	types := func(ts []api.ValueType) []string {
		out := make([]string, len(ts))
		for i, t := range ts {
			out[i] = api.ValueTypeName(t)
		}
		return out
	}
	s := Surface{Generation: g.String()}
	answers := wasiAnswers(g)
	for _, n := range wasiNames(g) {
		a := answers[n]
		s.WASI = append(s.WASI, Import{Name: n, Params: types(wasiSigs[n].params), Results: types(wasiSigs[n].results), Answer: &a})
	}
	impl := envFunctions()
	names := make([]string, 0, len(envSigs))
	for n := range envSigs {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		s.Env = append(s.Env, Import{Name: n, Params: types(envSigs[n].params), Results: types(envSigs[n].results), Implemented: impl[n] != nil})
	}
	r := newRestrictions(g)
	for _, ph := range []phase{phaseInitialize, phaseMalloc} {
		var allowed []string
		for n := range r[ph] {
			allowed = append(allowed, n)
		}
		sort.Strings(allowed)
		if ph == phaseInitialize {
			s.InitAllowed = allowed
		} else {
			s.MallocAllowed = allowed
		}
	}
	return s
}
