package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/internal/moduletest"
	"github.com/jtiguard/jtiguard/internal/wasmstub"
)

// The VM start of docs/module-size.md: what a proxy pays for each VM of the module, in wazero
// (the harness, which starts a VM as proxy-wasm-cpp-host does). The module is moduletest's
// (JTIGUARD_WASM names another one); WASM_SIZE_MODULES, a comma-separated list of files, runs
// each as a sub-benchmark instead, so that variants are compared in the same run and load.

type namedModule struct {
	name string
	wasm []byte
}

func benchModules(b *testing.B) []namedModule {
	list := os.Getenv("WASM_SIZE_MODULES")
	if list == "" {
		b.Logf("module: %s", moduletest.Info(b))
		return []namedModule{{"module", moduletest.Module(b)}}
	}
	root, err := moduletest.RepoRoot()
	if err != nil {
		b.Fatal(err)
	}
	var out []namedModule
	for _, p := range strings.Split(list, ",") {
		if !filepath.IsAbs(p) {
			p = filepath.Join(root, p) // relative to the repository root, where the docs run it
		}
		w, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		out = append(out, namedModule{strings.TrimSuffix(filepath.Base(p), ".wasm"), w})
	}
	return out
}

// startConfig is a plugin configuration with keys of every family, so proxy_on_configure parses
// an HMAC secret, an RSA and an EC public key, as a deployment with several issuers does.
func startConfig(tb testing.TB) []byte {
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		tb.Fatal(err)
	}
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	pemOf := func(pub any) string {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			tb.Fatal(err)
		}
		return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	}
	cfg := map[string]any{
		"prefix": "jtiguard.",
		"jwt": map[string]any{
			"algorithms":   []string{"HS256", "RS256", "ES256"},
			"hmac_secrets": []map[string]string{{"kid": "h", "secret": "start-benchmark-secret-of-at-least-32-bytes"}},
			"public_keys": []map[string]string{
				{"kid": "r", "pem": pemOf(&rk.PublicKey)},
				{"kid": "e", "pem": pemOf(&ek.PublicKey)},
			},
		},
		"sync": map[string]any{"cluster": ""},
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// phaseTimer is a wazero function listener on the start exports: it times each call of them.
type phaseTimer struct {
	mu       sync.Mutex
	start    map[string]time.Time
	total    map[string]time.Duration
	cpuStart map[string]time.Duration
	cpu      map[string]time.Duration // thread CPU time, when the caller locked its OS thread
}

var startExports = map[string]bool{
	"_initialize": true, "proxy_on_context_create": true, "proxy_on_vm_start": true, "proxy_on_configure": true,
}

func (p *phaseTimer) NewFunctionListener(def api.FunctionDefinition) experimental.FunctionListener {
	for _, name := range def.ExportNames() {
		if startExports[name] {
			return p
		}
	}
	return nil
}

func (p *phaseTimer) Before(_ context.Context, _ api.Module, def api.FunctionDefinition, _ []uint64, _ experimental.StackIterator) {
	p.mu.Lock()
	p.start[def.ExportNames()[0]] = time.Now()
	p.cpuStart[def.ExportNames()[0]] = threadCPU()
	p.mu.Unlock()
}

func (p *phaseTimer) After(_ context.Context, _ api.Module, def api.FunctionDefinition, _ []uint64) {
	p.mu.Lock()
	name := def.ExportNames()[0]
	p.total[name] += time.Since(p.start[name])
	p.cpu[name] += threadCPU() - p.cpuStart[name]
	p.mu.Unlock()
}

func (p *phaseTimer) Abort(context.Context, api.Module, api.FunctionDefinition, error) {}

func (p *phaseTimer) reset() {
	p.start, p.total = map[string]time.Time{}, map[string]time.Duration{}
	p.cpuStart, p.cpu = map[string]time.Duration{}, map[string]time.Duration{}
}

// median of a sample, in the unit given.
func median(d []time.Duration, unit time.Duration) float64 {
	s := slices.Clone(d)
	slices.Sort(s)
	return float64(s[len(s)/2]) / float64(unit)
}

// BenchmarkCompile: wazero's compiler on the module, the part of a VM's start that a proxy pays
// once per module (V8 compiles once and clones VMs; wazero's compilation cache does the same).
// Each iteration compiles every module once, in turn, so that variants share the machine's load;
// each module's median is reported as <name>-compile-ms (wall) and <name>-compile-cpu-ms (the
// CPU time of the compiling thread, which a loaded machine disturbs less).
func BenchmarkCompile(b *testing.B) {
	if runtime.GOOS == "wasip1" {
		b.Skip("compiles wasm natively")
	}
	runtime.LockOSThread() // wazero compiles on the calling goroutine: its thread's CPU time
	defer runtime.UnlockOSThread()
	ctx := context.Background()
	mods := benchModules(b)
	samples := make([][]time.Duration, len(mods))
	cpu := make([][]time.Duration, len(mods))
	for iter := 0; b.Loop(); iter++ {
		for k := range mods {
			i := (k + iter) % len(mods) // each in each position in turn: no order bias
			m := mods[i]
			r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
			c0, t0 := threadCPU(), time.Now()
			if _, err := r.CompileModule(ctx, m.wasm); err != nil {
				b.Fatal(err)
			}
			samples[i] = append(samples[i], time.Since(t0))
			cpu[i] = append(cpu[i], threadCPU()-c0)
			_ = r.Close(ctx)
		}
	}
	for i, m := range mods {
		b.ReportMetric(median(samples[i], time.Millisecond), m.name+"-compile-ms")
		b.ReportMetric(median(cpu[i], time.Millisecond), m.name+"-compile-cpu-ms")
	}
}

// vmStarter starts VMs of one module in the harness, the compilation cached, and keeps the
// duration of each phase of each start.
type vmStarter struct {
	name   string
	wasm   []byte
	cfg    harness.Config
	ctx    context.Context
	timer  *phaseTimer
	cache  wazero.CompilationCache
	phases map[string][]time.Duration
	// A runtime of its own with the module compiled and its imports provided (WASI, and env
	// functions that do nothing), to time instantiation alone.
	rt       wazero.Runtime
	compiled wazero.CompiledModule
	seq      int
}

func newVMStarter(b *testing.B, m namedModule, pluginConfig []byte) *vmStarter {
	v := &vmStarter{name: m.name, wasm: m.wasm, timer: &phaseTimer{}, phases: map[string][]time.Duration{}}
	v.timer.reset()
	v.ctx = experimental.WithFunctionListenerFactory(context.Background(), v.timer)
	v.cache = wazero.NewCompilationCache()
	v.cfg = harness.NewConfig().WithWorkers(1).WithWASI(harness.WASICurrent).
		WithPluginConfig(pluginConfig).WithTimers(false).WithCompilationCache(v.cache)
	v.newVM(b) // compiles into the cache
	ctx := context.Background()
	v.rt = wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfig().WithCompilationCache(v.cache))
	var err error
	if v.compiled, err = v.rt.CompileModule(ctx, v.wasm); err != nil {
		b.Fatal(err)
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, v.rt); err != nil {
		b.Fatal(err)
	}
	env := v.rt.NewHostModuleBuilder("env")
	for _, d := range v.compiled.ImportedFunctions() {
		if mod, name, _ := d.Import(); mod == "env" {
			nres := len(d.ResultTypes())
			env.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(_ context.Context, _ api.Module, stack []uint64) {
				clear(stack[:nres])
			}), d.ParamTypes(), d.ResultTypes()).Export(name)
		}
	}
	if _, err := env.Instantiate(ctx); err != nil {
		b.Fatal(err)
	}
	return v
}

// instantiate times InstantiateModule alone: memory, data segments, the start function if any.
func (v *vmStarter) instantiate(b *testing.B) time.Duration {
	ctx := context.Background()
	v.seq++
	c0, t0 := threadCPU(), time.Now()
	mod, err := v.rt.InstantiateModule(ctx, v.compiled, wazero.NewModuleConfig().
		WithName(fmt.Sprintf("vm%d", v.seq)).WithStartFunctions())
	d, c := time.Since(t0), threadCPU()-c0
	if err != nil {
		b.Fatal(err)
	}
	_ = mod.Close(ctx)
	v.phases["instantiate-cpu"] = append(v.phases["instantiate-cpu"], c)
	return d
}

func (v *vmStarter) newVM(b *testing.B) time.Duration {
	t0 := time.Now()
	h, err := harness.New(v.ctx, v.wasm, v.cfg)
	d := time.Since(t0)
	if err != nil {
		b.Fatal(err)
	}
	if err := h.Close(v.ctx); err != nil {
		b.Fatal(err)
	}
	return d
}

// load is what CompileModule costs on a cache hit: decoding and validating the module again,
// which the harness does inside harness.New.
func (v *vmStarter) load(b *testing.B) time.Duration {
	// The harness's runtime configuration, or the cache would not hit.
	r := wazero.NewRuntimeWithConfig(v.ctx, wazero.NewRuntimeConfig().WithMemoryLimitPages(16384).
		WithCloseOnContextDone(true).WithCompilationCache(v.cache))
	defer r.Close(v.ctx)
	t0 := time.Now()
	if _, err := r.CompileModule(v.ctx, v.wasm); err != nil {
		b.Fatal(err)
	}
	return time.Since(t0)
}

func (v *vmStarter) once(b *testing.B) {
	load := v.load(b)
	inst := v.instantiate(b)
	v.timer.reset()
	v.newVM(b)
	t := v.timer.total
	vmstart := t["proxy_on_context_create"] + t["proxy_on_vm_start"]
	v.phases["load"] = append(v.phases["load"], load)
	v.phases["instantiate"] = append(v.phases["instantiate"], inst)
	v.phases["initialize"] = append(v.phases["initialize"], t["_initialize"])
	v.phases["vmstart"] = append(v.phases["vmstart"], vmstart)
	v.phases["configure"] = append(v.phases["configure"], t["proxy_on_configure"])
	// A VM of an already loaded module: what a host that shares the compiled module pays.
	v.phases["vm"] = append(v.phases["vm"], inst+t["_initialize"]+vmstart+t["proxy_on_configure"])
	c := v.timer.cpu
	v.phases["initialize-cpu"] = append(v.phases["initialize-cpu"], c["_initialize"])
	v.phases["configure-cpu"] = append(v.phases["configure-cpu"], c["proxy_on_configure"])
	v.phases["vm-cpu"] = append(v.phases["vm-cpu"], v.phases["instantiate-cpu"][len(v.phases["instantiate-cpu"])-1]+
		c["_initialize"]+c["proxy_on_context_create"]+c["proxy_on_vm_start"]+c["proxy_on_configure"])
}

// BenchmarkVMStart: one VM started the way the harness (and Envoy) starts one once the module is
// compiled, by phase: load (wazero decodes and validates the module again even on a
// compilation-cache hit, as the harness does for every harness.New), instantiate (memory, data
// segments and the start function, timed alone), _initialize (the Go runtime and every
// package's init), proxy_on_context_create + proxy_on_vm_start, and proxy_on_configure (parsing
// the plugin configuration and its keys); vm is instantiate through configure, what a host that
// shares one compiled module between its VMs pays per VM. Each iteration starts a VM of every
// module in turn; each module's medians are reported as <name>-<phase>-ms, and the CPU time of
// the benchmark's thread for the phases that run on it as <name>-<phase>-cpu-ms (a loaded
// machine disturbs these less).
func BenchmarkVMStart(b *testing.B) {
	if runtime.GOOS == "wasip1" {
		b.Skip("runs wasm natively")
	}
	runtime.LockOSThread() // the CPU-time metrics read this thread's clock
	defer runtime.UnlockOSThread()
	cfgJSON := startConfig(b)
	var starters []*vmStarter
	for _, m := range benchModules(b) {
		starters = append(starters, newVMStarter(b, m, cfgJSON))
	}
	for iter := 0; b.Loop(); iter++ {
		for k := range starters {
			starters[(k+iter)%len(starters)].once(b) // each in each position in turn: no order bias
		}
	}
	for _, v := range starters {
		for _, phase := range []string{"load", "instantiate", "initialize", "vmstart", "configure", "vm",
			"instantiate-cpu", "initialize-cpu", "configure-cpu", "vm-cpu"} {
			b.ReportMetric(median(v.phases[phase], time.Millisecond), v.name+"-"+phase+"-ms")
		}
		_ = v.rt.Close(v.ctx)
		_ = v.cache.Close(v.ctx)
	}
}

// TestVMStartPhasesTimed checks that the listener sees every start export, so that
// BenchmarkVMStart cannot report zero for a phase it failed to observe.
func TestVMStartPhasesTimed(t *testing.T) {
	timer := &phaseTimer{}
	timer.reset()
	ctx := experimental.WithFunctionListenerFactory(context.Background(), timer)
	h, err := harness.New(ctx, moduletest.Module(t), harness.NewConfig().WithWorkers(1).
		WithWASI(harness.WASICurrent).WithPluginConfig(startConfig(t)).WithTimers(false))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(ctx)
	for name := range startExports {
		if timer.total[name] <= 0 {
			t.Errorf("%s not timed (%v)", name, timer.total)
		}
	}
}

// BenchmarkV8Start: the same start sequence in V8 (Node's, with --no-liftoff as
// proxy-wasm-cpp-host sets it), by testdata/v8start.js. Each iteration is a fresh node process
// starting 4 VMs of every module: the first VM is cold (V8 compiles each function with
// TurboFan the first time it runs, which in Envoy the first VM of a module pays), the others warm
// (Envoy's worker VMs are clones). Medians of <name>-cold-<phase>-ms (wall time; -cpu: the CPU
// time of all node's threads, which a loaded machine disturbs less) and <name>-warm-total-ms.
func BenchmarkV8Start(b *testing.B) {
	node, err := exec.LookPath("node")
	if err != nil {
		b.Skip("SKIPPED: no node on PATH; V8 start not measured")
	}
	dir := b.TempDir()
	cfgPath := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgPath, startConfig(b), 0o644); err != nil {
		b.Fatal(err)
	}
	const vms = 4
	type phases map[string]float64
	mods := benchModules(b)
	cold := make([][]phases, len(mods))
	warm := make([][]float64, len(mods))
	for b.Loop() {
		for i, m := range mods {
			path := filepath.Join(dir, m.name+".wasm")
			if err := os.WriteFile(path, m.wasm, 0o644); err != nil {
				b.Fatal(err)
			}
			cmd := exec.Command(node, "--no-liftoff", "--no-warnings", "testdata/v8start.js", path, cfgPath, fmt.Sprint(vms))
			out, err := cmd.Output()
			if err != nil {
				b.Fatalf("%s: node: %v\n%s", m.name, err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			if len(lines) != vms {
				b.Fatalf("%s: node printed %q", m.name, out)
			}
			for k, line := range lines {
				var p phases
				if err := json.Unmarshal([]byte(line), &p); err != nil {
					b.Fatalf("%s: %q: %v", m.name, line, err)
				}
				if k == 0 {
					cold[i] = append(cold[i], p)
				} else {
					warm[i] = append(warm[i], p["total"])
				}
			}
		}
	}
	med := func(xs []float64) float64 {
		s := slices.Clone(xs)
		slices.Sort(s)
		return s[len(s)/2]
	}
	for i, m := range mods {
		for _, phase := range []string{"compile", "instantiate", "initialize", "configure", "total", "total_cpu",
			"initialize_cpu", "configure_cpu"} {
			var xs []float64
			for _, p := range cold[i] {
				xs = append(xs, p[phase])
			}
			b.ReportMetric(med(xs), m.name+"-cold-"+strings.ReplaceAll(phase, "_", "-")+"-ms")
		}
		b.ReportMetric(med(warm[i]), m.name+"-warm-total-ms")
	}
}

// coverage records which functions run, per start phase, through a wazero listener on every
// function (slow: only for TestStartCodeRun).
type coverage struct {
	mu    sync.Mutex
	phase string
	ran   map[string]map[uint32]bool
}

func (c *coverage) NewFunctionListener(api.FunctionDefinition) experimental.FunctionListener {
	return c
}

func (c *coverage) Before(_ context.Context, _ api.Module, def api.FunctionDefinition, _ []uint64, _ experimental.StackIterator) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if names := def.ExportNames(); len(names) > 0 && startExports[names[0]] {
		c.phase = names[0]
	}
	if c.phase == "" {
		return
	}
	if c.ran[c.phase] == nil {
		c.ran[c.phase] = map[uint32]bool{}
	}
	c.ran[c.phase][def.Index()] = true
}

func (c *coverage) After(context.Context, api.Module, api.FunctionDefinition, []uint64) {}

func (c *coverage) Abort(context.Context, api.Module, api.FunctionDefinition, error) {}

// TestStartCodeRun reports how much of the module's code a VM's start runs, by phase and
// package: what V8, which compiles each function the first time it runs, compiles for the first
// VM. docs/module-size.md quotes it. It asserts only that the phases ran code.
func TestStartCodeRun(t *testing.T) {
	wasm := moduletest.Module(t)
	l, err := wasmstub.Inspect(wasm)
	if err != nil {
		t.Fatal(err)
	}
	byIndex := map[uint32]wasmstub.Func{}
	for _, f := range l.Funcs {
		byIndex[f.Index] = f
	}
	cov := &coverage{ran: map[string]map[uint32]bool{}}
	ctx := experimental.WithFunctionListenerFactory(context.Background(), cov)
	h, err := harness.New(ctx, wasm, harness.NewConfig().WithWorkers(1).
		WithWASI(harness.WASICurrent).WithPluginConfig(startConfig(t)).WithTimers(false))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(ctx)
	seen := map[uint32]bool{}
	for _, phase := range []string{"_initialize", "proxy_on_context_create", "proxy_on_vm_start", "proxy_on_configure"} {
		byPkg := map[string]int{}
		n, size := 0, 0
		for idx := range cov.ran[phase] {
			f, ok := byIndex[idx]
			if !ok || seen[idx] {
				continue // imports, or already run (and compiled) in an earlier phase
			}
			seen[idx] = true
			n++
			size += f.Size
			byPkg[goPackage(f.Name)] += f.Size
		}
		var top []Share
		for p, s := range byPkg {
			top = append(top, Share{Name: p, Bytes: s})
		}
		sortShares(top)
		var parts []string
		for _, s := range top[:min(8, len(top))] {
			parts = append(parts, fmt.Sprintf("%s %s", s.Name, num(s.Bytes)))
		}
		t.Logf("%s: %d functions first run, %s bytes of code; %s", phase, n, num(size), strings.Join(parts, ", "))
		if phase == "_initialize" || phase == "proxy_on_configure" {
			if n == 0 {
				t.Errorf("%s ran no code of the module", phase)
			}
		}
	}
	total := 0
	for idx := range seen {
		total += byIndex[idx].Size
	}
	t.Logf("start runs %d of %d functions, %s of %s bytes of code", len(seen), len(l.Funcs), num(total), num(l.Section("code")))
}
