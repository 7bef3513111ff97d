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
	"os"
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

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/internal/moduletest"
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
	var out []namedModule
	for _, p := range strings.Split(list, ",") {
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
	mu    sync.Mutex
	start map[string]time.Time
	total map[string]time.Duration
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
	p.mu.Unlock()
}

func (p *phaseTimer) After(_ context.Context, _ api.Module, def api.FunctionDefinition, _ []uint64) {
	p.mu.Lock()
	name := def.ExportNames()[0]
	p.total[name] += time.Since(p.start[name])
	p.mu.Unlock()
}

func (p *phaseTimer) Abort(context.Context, api.Module, api.FunctionDefinition, error) {}

func (p *phaseTimer) reset() {
	p.start, p.total = map[string]time.Time{}, map[string]time.Duration{}
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
// each module's median is reported as <name>-compile-ms.
func BenchmarkCompile(b *testing.B) {
	if runtime.GOOS == "wasip1" {
		b.Skip("compiles wasm natively")
	}
	ctx := context.Background()
	mods := benchModules(b)
	samples := make([][]time.Duration, len(mods))
	for b.Loop() {
		for i, m := range mods {
			r := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler())
			t0 := time.Now()
			if _, err := r.CompileModule(ctx, m.wasm); err != nil {
				b.Fatal(err)
			}
			samples[i] = append(samples[i], time.Since(t0))
			_ = r.Close(ctx)
		}
	}
	for i, m := range mods {
		b.ReportMetric(median(samples[i], time.Millisecond), m.name+"-compile-ms")
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
}

func newVMStarter(b *testing.B, m namedModule, pluginConfig []byte) *vmStarter {
	v := &vmStarter{name: m.name, wasm: m.wasm, timer: &phaseTimer{}, phases: map[string][]time.Duration{}}
	v.timer.reset()
	v.ctx = experimental.WithFunctionListenerFactory(context.Background(), v.timer)
	v.cache = wazero.NewCompilationCache()
	v.cfg = harness.NewConfig().WithWorkers(1).WithWASI(harness.WASICurrent).
		WithPluginConfig(pluginConfig).WithTimers(false).WithCompilationCache(v.cache)
	v.newVM(b) // compiles into the cache
	return v
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
	v.timer.reset()
	all := v.newVM(b)
	t := v.timer.total
	exports := t["_initialize"] + t["proxy_on_context_create"] + t["proxy_on_vm_start"] + t["proxy_on_configure"]
	v.phases["load"] = append(v.phases["load"], load)
	v.phases["instantiate"] = append(v.phases["instantiate"], all-exports-load)
	v.phases["initialize"] = append(v.phases["initialize"], t["_initialize"])
	v.phases["vmstart"] = append(v.phases["vmstart"], t["proxy_on_context_create"]+t["proxy_on_vm_start"])
	v.phases["configure"] = append(v.phases["configure"], t["proxy_on_configure"])
	v.phases["total"] = append(v.phases["total"], all)
}

// BenchmarkVMStart: one VM started the way the harness (and Envoy) starts one once the module is
// compiled, by phase: load (wazero decodes and validates the module even on a compilation-cache
// hit), instantiate (memory, data segments, host modules), _initialize (the Go runtime and every
// package's init), proxy_on_context_create + proxy_on_vm_start, and proxy_on_configure (parsing
// the plugin configuration and its keys). Each iteration starts a VM of every module in turn;
// each module's medians are reported as <name>-<phase>-ms.
func BenchmarkVMStart(b *testing.B) {
	if runtime.GOOS == "wasip1" {
		b.Skip("runs wasm natively")
	}
	cfgJSON := startConfig(b)
	var starters []*vmStarter
	for _, m := range benchModules(b) {
		starters = append(starters, newVMStarter(b, m, cfgJSON))
	}
	for b.Loop() {
		for _, v := range starters {
			v.once(b)
		}
	}
	for _, v := range starters {
		for _, phase := range []string{"load", "instantiate", "initialize", "vmstart", "configure", "total"} {
			b.ReportMetric(median(v.phases[phase], time.Millisecond), v.name+"-"+phase+"-ms")
		}
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
