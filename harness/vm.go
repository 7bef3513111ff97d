package harness

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// AnyVM asks for the next VM in round-robin order.
const AnyVM = -1

// rootContextID is the root context id of every VM: Envoy numbers contexts
// per VM and the root context is the first one created after the VM context.
const rootContextID = 1

// VM is one worker: its own module instance and linear memory, root context,
// tick timer and lock. Envoy runs all of a worker's callbacks on one thread;
// mu gives the same guarantee here: callbacks of one VM never run
// concurrently.
type VM struct {
	h       *Harness
	index   int
	envKeys []string // environment variable names, sorted

	mu  sync.Mutex // serialises every call into the guest and guards the fields below
	mod api.Module
	fns map[string]export // cached exports; a missing name is not exported
	// closed is set by Harness.Close, under mu: the module and its memory are gone.
	closed bool
	// recent holds the exports last called, by name (see export); the caller holds mu.
	recent     [8]recentExport
	nextRecent int
	mal        api.Function // malloc or proxy_on_memory_allocate
	// malStack is mal's parameter and result (CallWithStack): no slice per allocation.
	malStack [1]uint64
	// callStack holds a callback's parameters and result (CallWithStack), and callCtx the
	// context that carries v to the host functions, made once per caller's context: a callback
	// allocates nothing in the host, as in cpp-host, so the harness's own garbage collection
	// and allocations stay out of what the benchmarks time.
	callStack  [8]uint64
	inCall     bool // callStack is in use
	callParent context.Context
	callCtx    context.Context

	failed    error // non-nil once the VM trapped
	ph        phase
	cur       uint32 // context id of the running callback
	effective uint32 // proxy_set_effective_context, reset per callback
	nextCtxID uint32
	streams   map[uint32]*Stream

	vmConfigReadable     bool          // inside proxy_on_vm_start
	pluginConfigReadable bool          // inside proxy_on_configure
	callout              *calloutReply // inside proxy_on_http_call_response
	nextCallID           uint32
	metricIDs            map[uint32]metricRef
	nextMetric           [3]uint32

	startTimes VMStartTimings // written by New and start only

	timerMu  sync.Mutex // guards period, timerGen, timerStop
	period   time.Duration
	timerGen uint64
	timerStp chan struct{}
}

func newVM(h *Harness, index int, envKeys []string) *VM {
	return &VM{h: h, index: index, envKeys: envKeys, nextCtxID: rootContextID + 1,
		streams: map[uint32]*Stream{}, nextCallID: 1}
}

func (v *VM) bind(mod api.Module) {
	v.mod = mod
	v.fns = map[string]export{}
	for name, def := range mod.ExportedFunctionDefinitions() {
		v.fns[name] = export{mod.ExportedFunction(name), len(def.ResultTypes())}
	}
	if f := v.fns[exportMalloc].fn; f != nil {
		v.mal = f
	} else {
		v.mal = v.fns[exportAllocate].fn
	}
}

// export is an exported function with its result count, read once: a callback's call then
// asks wazero for nothing but the call.
type export struct {
	fn      api.Function
	results int
}

// export returns the export name. The callbacks of a request are called by the same few
// names, constants whose bytes are compared in place (the same pointer), which costs less than
// hashing them for the map: the recent names are looked up first.
func (v *VM) export(name string) export {
	for i := range v.recent {
		if v.recent[i].name == name {
			return v.recent[i].ex
		}
	}
	ex := v.fns[name]
	v.recent[v.nextRecent] = recentExport{name, ex}
	v.nextRecent = (v.nextRecent + 1) % len(v.recent)
	return ex
}

type recentExport struct {
	name string
	ex   export
}

// Index returns the VM's worker index.
func (v *VM) Index() int { return v.index }

// Failed returns the trap that failed the VM, or nil.
func (v *VM) Failed() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.failed
}

// MemoryBytes returns the size of the VM's linear memory (pages × 64 KiB).
// Go's heap never returns memory, so a soak test bounds this.
func (v *VM) MemoryBytes() uint64 {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.mod == nil || v.mod.Memory() == nil {
		return 0
	}
	return uint64(v.mod.Memory().Size())
}

// VMState is a worker VM's state as a test sees it, the same for every host.
type VMState struct {
	Failed      error         // the trap that failed the VM, or nil
	MemoryBytes uint64        // linear memory size
	TickPeriod  time.Duration // last proxy_set_tick_period_milliseconds
}

// State returns the VM's state; Failed wraps ErrVMFailed.
func (v *VM) State() VMState {
	st := VMState{MemoryBytes: v.MemoryBytes(), TickPeriod: v.TickPeriod()}
	if err := v.Failed(); err != nil {
		st.Failed = fmt.Errorf("%w: %w", ErrVMFailed, err)
	}
	return st
}

// MemoryPages returns MemoryBytes in 64 KiB pages.
func (v *VM) MemoryPages() uint32 { return uint32(v.MemoryBytes() / 65536) }

// Tick calls proxy_on_tick on the VM's root context now, whatever the tick
// period, for deterministic tests.
func (v *VM) Tick(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.failed != nil {
		return fmt.Errorf("%w: %v", ErrVMFailed, v.failed)
	}
	_, err := v.call(ctx, "proxy_on_tick", rootContextID, rootContextID)
	return err
}

// TickPeriod returns the period last set with proxy_set_tick_period_milliseconds.
func (v *VM) TickPeriod() time.Duration { return v.tickPeriod() }

func (v *VM) tickPeriod() time.Duration {
	v.timerMu.Lock()
	defer v.timerMu.Unlock()
	return v.period
}

// BenchExport calls export name with args per times in each of n batches on the root
// context, and returns each batch's mean per call in nanoseconds: the floor under a
// callback, for measurements of method (docs/benchmarks.md).
func (v *VM) BenchExport(ctx context.Context, name string, args []uint64, n, per int) ([]float64, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	out := make([]float64, n)
	for i := range out {
		t0 := time.Now()
		for range per {
			if _, err := v.call(ctx, name, rootContextID, args...); err != nil {
				return nil, err
			}
		}
		out[i] = float64(time.Since(t0).Nanoseconds()) / float64(per)
	}
	return out, nil
}

type vmKey struct{}

// vmFrom returns the VM whose callback is running; host functions use it to
// find their state (the same env module serves every VM).
func vmFrom(ctx context.Context) *VM {
	v, _ := ctx.Value(vmKey{}).(*VM)
	return v
}

// call invokes export name on context ctxID. The caller holds v.mu. A missing
// optional export returns (0, errNotExported). A trap fails the VM.
func (v *VM) call(ctx context.Context, name string, ctxID uint32, args ...uint64) (uint64, error) {
	if v.closed {
		return 0, fmt.Errorf("%w: %s", ErrClosed, name)
	}
	if v.failed != nil {
		return 0, fmt.Errorf("%w: %v", ErrVMFailed, v.failed)
	}
	ex := v.export(name)
	if ex.fn == nil {
		return 0, errNotExported
	}
	if ctx != v.callParent {
		v.callParent, v.callCtx = ctx, context.WithValue(ctx, vmKey{}, v)
	}
	// A call made while another is running (a host function calling back into the module)
	// gets a stack of its own.
	results := ex.results
	var stack []uint64
	if n := max(len(args), results); n <= len(v.callStack) && !v.inCall {
		stack = v.callStack[:n]
		v.inCall = true
		defer func() { v.inCall = false }()
	} else {
		stack = make([]uint64, n)
	}
	copy(stack, args)
	prevCur, prevEff := v.cur, v.effective
	v.cur, v.effective = ctxID, 0
	err := ex.fn.CallWithStack(v.callCtx, stack)
	v.cur, v.effective = prevCur, prevEff
	if err != nil {
		v.fail(fmt.Errorf("%s: %w", name, err))
		return 0, fmt.Errorf("%w: %v", ErrVMFailed, v.failed)
	}
	if results == 0 {
		return 0, nil
	}
	return stack[0], nil
}

var errNotExported = errors.New("not exported")

// fail marks the VM failed, as Envoy does after a trap: no more callbacks,
// streams get 503 wasm_fail_stream (or pass, with fail-open).
func (v *VM) fail(err error) {
	if v.failed == nil {
		v.failed = err
		v.h.hostLog(v.index, LogCritical, "wasm vm failed: %v", err)
	}
	v.stopTimer()
}

// start runs the VM start sequence of proxy-wasm-cpp-host (WasmBase::startVm,
// start, configure).
func (v *VM) start(ctx context.Context) error {
	v.mu.Lock()
	defer v.mu.Unlock()

	startErr := func(what string, err error) error {
		return fmt.Errorf("%w: vm %d: %s: %w", ErrStartFailed, v.index, what, err)
	}

	t0 := time.Now()
	defer func() { v.startTimes.Configure = time.Since(t0) - v.startTimes.Initialize }()
	v.ph = phaseInitialize
	for _, name := range v.initFunctions() {
		if _, err := v.call(ctx, name, 0, v.initArgs(name)...); err != nil {
			v.ph = phaseNormal
			return startErr(name, err)
		}
	}
	v.ph = phaseNormal
	v.startTimes.Initialize = time.Since(t0)

	if _, err := v.call(ctx, exportContextCreate, rootContextID, rootContextID, 0); err != nil {
		return startErr(exportContextCreate, err)
	}

	v.vmConfigReadable = true
	ok, err := v.call(ctx, "proxy_on_vm_start", rootContextID, rootContextID, uint64(len(v.h.cfg.vmConfig)))
	v.vmConfigReadable = false
	if err != nil && !errors.Is(err, errNotExported) {
		return startErr("proxy_on_vm_start", err)
	}
	if err == nil && uint32(ok) == 0 {
		return startErr("proxy_on_vm_start", errors.New("returned false"))
	}

	v.pluginConfigReadable = true
	ok, err = v.call(ctx, "proxy_on_configure", rootContextID, rootContextID, uint64(len(v.h.cfg.pluginConfig)))
	v.pluginConfigReadable = false
	if err != nil && !errors.Is(err, errNotExported) {
		return startErr("proxy_on_configure", err)
	}
	if err == nil && uint32(ok) == 0 {
		return startErr("proxy_on_configure", errors.New("returned false (configuration rejected)"))
	}
	return nil
}

// initFunctions mirrors WasmBase::getFunctions/startVm: a reactor's
// _initialize followed by main or __main_void if exported, else a command's
// _start.
func (v *VM) initFunctions() []string {
	if v.fns["_initialize"].fn != nil {
		out := []string{"_initialize"}
		if v.fns["main"].fn != nil {
			out = append(out, "main")
		} else if v.fns["__main_void"].fn != nil {
			out = append(out, "__main_void")
		}
		return out
	}
	if v.fns["_start"].fn != nil {
		return []string{"_start"}
	}
	return nil
}

func (v *VM) initArgs(name string) []uint64 {
	if name == "main" {
		return []uint64{0, 0}
	}
	return nil
}

// alloc calls the guest allocator under Envoy's malloc restrictions. A trap
// in the allocator panics so that it propagates out of the host function and
// fails the callback that needed the memory.
func (v *VM) alloc(ctx context.Context, size uint32) uint32 {
	prev := v.ph
	v.ph = phaseMalloc
	// One stack per VM, reused: the allocator cannot re-enter alloc (its phase refuses
	// every host call that would).
	v.malStack[0] = uint64(size)
	err := v.mal.CallWithStack(ctx, v.malStack[:])
	v.ph = prev
	if err != nil {
		panic(fmt.Errorf("proxy_on_memory_allocate(%d): %w", size, err))
	}
	return uint32(v.malStack[0])
}

// setTick implements proxy_set_tick_period_milliseconds: (re)arms a real
// timer goroutine for this VM, or stops it for 0. Called with v.mu held, so
// it never waits for the timer goroutine (which may be waiting for v.mu).
func (v *VM) setTick(d time.Duration) {
	v.timerMu.Lock()
	defer v.timerMu.Unlock()
	v.period = d
	v.timerGen++
	if v.timerStp != nil {
		close(v.timerStp)
		v.timerStp = nil
	}
	if d <= 0 || !v.h.cfg.timers || v.h.closed.Load() {
		return
	}
	stop := make(chan struct{})
	v.timerStp = stop
	gen := v.timerGen
	v.h.bg.Add(1)
	go func() {
		defer v.h.bg.Done()
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-v.h.bgCtx.Done():
				return
			case <-t.C:
				v.timerTick(gen)
			}
		}
	}()
}

func (v *VM) timerTick(gen uint64) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.timerMu.Lock()
	current := gen == v.timerGen
	v.timerMu.Unlock()
	if !current || v.failed != nil || v.h.closed.Load() {
		return
	}
	_, _ = v.call(v.h.bgCtx, "proxy_on_tick", rootContextID, rootContextID)
}

func (v *VM) stopTimer() {
	v.timerMu.Lock()
	defer v.timerMu.Unlock()
	v.timerGen++
	if v.timerStp != nil {
		close(v.timerStp)
		v.timerStp = nil
	}
}

// contextExists reports whether id names the root context or a live stream.
func (v *VM) contextExists(id uint32) bool {
	return id == rootContextID || v.streams[id] != nil
}

// current returns the context host functions act on: the effective context
// if one was set and still exists, else the running callback's.
func (v *VM) current() (uint32, *Stream) {
	id := v.cur
	if v.effective != 0 && v.contextExists(v.effective) {
		id = v.effective
	}
	return id, v.streams[id]
}

// CallExport calls an export of the module by name, outside any context (for test-only
// exports, such as the allocation counters of a module built with -tags jtiguard_testexports).
func (v *VM) CallExport(ctx context.Context, name string, args ...uint64) (uint64, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	res, err := v.call(ctx, name, 0, args...)
	if errors.Is(err, errNotExported) {
		return 0, fmt.Errorf("%s: %w", name, err)
	}
	return res, err
}
