package harness

import (
	"context"
	"crypto/rand"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/experimental"
)

// Harness is a running proxy-wasm host: one compiled module, N worker VMs,
// and the process-wide state those VMs share (shared data, metrics, logs).
type Harness struct {
	cfg        Config
	rt         wazero.Runtime
	vms        []*VM
	shared     *SharedData
	metrics    *Metrics
	logs       *Logs
	restr      restrictions
	props      map[string][]byte
	client     *http.Client
	monoBase   time.Time // origin of the WASI monotonic clock
	rr         atomic.Uint64
	closed     atomic.Bool
	bgCtx      context.Context // cancelled by Close: callouts and timers
	bgCancel   context.CancelFunc
	bg         sync.WaitGroup // timer and callout goroutines
	inflight   atomic.Int64   // callouts sent and not yet delivered
	callsMu    sync.Mutex     // guards calls
	calls      []HTTPCallRecord
	closeOnce  sync.Once
	closeError error
	compileDur time.Duration
}

// StartTimings says how long a host took to start its VMs: the compilation of
// the module (once per host; near zero from a warm compilation cache) and,
// per VM, the phases of proxy-wasm-cpp-host's start sequence.
type StartTimings struct {
	Compile time.Duration    `json:"compile_ns"`
	VMs     []VMStartTimings `json:"vms"`
}

// VMStartTimings are one VM's start phases.
type VMStartTimings struct {
	Instantiate time.Duration `json:"instantiate_ns"` // linking and instantiation
	Initialize  time.Duration `json:"initialize_ns"`  // _initialize (Go's runtime and init functions)
	Configure   time.Duration `json:"configure_ns"`   // root context create, proxy_on_vm_start, proxy_on_configure
}

// StartTimings returns how long New took, phase by phase.
func (h *Harness) StartTimings() StartTimings {
	st := StartTimings{Compile: h.compileDur}
	for _, v := range h.vms {
		st.VMs = append(st.VMs, v.startTimes)
	}
	return st
}

// New compiles wasm, checks it against Envoy's import surface and required
// exports, instantiates the configured number of worker VMs and starts each
// like Envoy does: _initialize (restricted), then proxy_on_context_create(1, 0),
// proxy_on_vm_start and proxy_on_configure. A start failure on any VM fails
// New with an error wrapping ErrStartFailed.
func New(ctx context.Context, wasm []byte, cfg Config) (*Harness, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	rc := wazero.NewRuntimeConfig().
		WithMemoryLimitPages(cfg.memoryLimitPages).
		WithCloseOnContextDone(cfg.deadlines)
	if cfg.cache != nil {
		rc = rc.WithCompilationCache(cfg.cache)
	}
	rt := wazero.NewRuntimeWithConfig(ctx, rc)
	h := &Harness{
		cfg:      cfg,
		rt:       rt,
		shared:   cfg.sharedData,
		metrics:  newMetrics(),
		logs:     newLogs(cfg.logLevel, cfg.logOut),
		restr:    newRestrictions(cfg.wasi),
		monoBase: time.Now(),
		client: &http.Client{
			Transport: &http.Transport{
				Proxy:               nil, // callouts go straight to the cluster address
				DisableCompression:  true,
				MaxIdleConnsPerHost: 16,
			},
			// Envoy does not follow redirects for callouts.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
	}
	if h.shared == nil {
		h.shared = NewSharedData()
	}
	h.props = cfg.propertyValues()
	h.bgCtx, h.bgCancel = context.WithCancel(context.Background())

	fail := func(err error) (*Harness, error) {
		_ = h.Close(ctx)
		return nil, err
	}
	t0 := time.Now()
	compiled, err := rt.CompileModule(ctx, wasm)
	h.compileDur = time.Since(t0)
	if err != nil {
		return fail(fmt.Errorf("%w: compile: %v", ErrStartFailed, err))
	}
	if err := checkModule(compiled, cfg.wasi); err != nil {
		return fail(fmt.Errorf("%w: %w", ErrStartFailed, err))
	}
	if err := h.instantiateHostModules(ctx); err != nil {
		return fail(err)
	}
	envKeys := make([]string, 0, len(cfg.env))
	for k := range cfg.env {
		envKeys = append(envKeys, k)
	}
	sort.Strings(envKeys)
	for i := 0; i < cfg.workers; i++ {
		mc := wazero.NewModuleConfig().
			WithName(fmt.Sprintf("vm%d", i)).
			WithStartFunctions(). // _initialize is called by start, under restrictions
			WithSysWalltime().
			WithSysNanotime().
			WithRandSource(rand.Reader)
		for _, k := range envKeys {
			mc = mc.WithEnv(k, cfg.env[k])
		}
		v := newVM(h, i, envKeys)
		t0 := time.Now()
		mod, err := rt.InstantiateModule(experimental.WithMemoryAllocator(ctx, memoryAllocator), compiled, mc)
		v.startTimes.Instantiate = time.Since(t0)
		if err != nil {
			return fail(fmt.Errorf("%w: instantiate vm %d: %v", ErrStartFailed, i, err))
		}
		v.bind(mod)
		h.vms = append(h.vms, v)
		if err := v.start(ctx); err != nil {
			return fail(err)
		}
	}
	return h, nil
}

// Close stops timers, cancels callouts in flight, waits for their goroutines
// and for a callback in flight on each VM, and releases the runtime. A VM's
// memory is unmapped with it, so every call made afterwards (a stream ended
// late, a tick) returns ErrClosed instead of running. It is safe to call more
// than once.
func (h *Harness) Close(ctx context.Context) error {
	h.closeOnce.Do(func() {
		h.closed.Store(true)
		h.bgCancel()
		for _, v := range h.vms {
			v.stopTimer()
		}
		h.bg.Wait()
		for _, v := range h.vms {
			v.mu.Lock()
			v.closed = true
			v.mu.Unlock()
		}
		h.closeError = h.rt.Close(ctx)
	})
	return h.closeError
}

// Workers returns the number of worker VMs.
func (h *Harness) Workers() int { return len(h.vms) }

// VM returns worker VM i (0-based).
func (h *Harness) VM(i int) *VM { return h.vms[i] }

// SharedData returns the store the VMs share.
func (h *Harness) SharedData() *SharedData { return h.shared }

// VMID returns the shared data namespace (the configured vm_id).
func (h *Harness) VMID() string { return h.cfg.vmID }

// Metrics returns the stats store the VMs share.
func (h *Harness) Metrics() *Metrics { return h.metrics }

// Logs returns what the VMs logged.
func (h *Harness) Logs() *Logs { return h.logs }

// Tick calls proxy_on_tick on every VM whose tick period is set, in VM
// order, as each worker's timer would. It returns how many VMs ticked.
func (h *Harness) Tick(ctx context.Context) int {
	n := 0
	for _, v := range h.vms {
		if v.tickPeriod() > 0 && v.Tick(ctx) == nil {
			n++
		}
	}
	return n
}

// WaitHTTPCalls blocks until every callout sent so far has been delivered
// (or dropped because its VM failed), or ctx ends.
func (h *Harness) WaitHTTPCalls(ctx context.Context) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for h.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %d callouts: %w", h.inflight.Load(), ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

// HTTPCalls returns a copy of the callouts made so far, in dispatch order.
func (h *Harness) HTTPCalls() []HTTPCallRecord {
	h.callsMu.Lock()
	defer h.callsMu.Unlock()
	out := make([]HTTPCallRecord, len(h.calls))
	copy(out, h.calls)
	return out
}

func (h *Harness) pickVM(i int) (*VM, error) {
	if h.closed.Load() {
		return nil, ErrClosed
	}
	if i == AnyVM {
		i = int(h.rr.Add(1)-1) % len(h.vms)
	}
	if i < 0 || i >= len(h.vms) {
		return nil, fmt.Errorf("%w: vm %d of %d", ErrBadConfig, i, len(h.vms))
	}
	return h.vms[i], nil
}

// hostLog records a message the harness itself emits on behalf of Envoy
// (for example "wasi_unstable proc_exit"); it goes to the same capture.
func (h *Harness) hostLog(vm int, level LogLevel, format string, args ...any) {
	h.logs.add(vm, level, fmt.Sprintf(format, args...))
}

// trimNewline removes one trailing newline, as Envoy does for fd_write.
func trimNewline(s string) string { return strings.TrimSuffix(s, "\n") }
