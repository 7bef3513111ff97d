// Package hosttest puts the repository's two proxy-wasm hosts, the wazero harness (package
// harness) and the V8 host (package v8host, Node.js), behind one interface, so that one test
// table or benchmark drives the real module in both engines with one harness.Config.
package hosttest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/v8host"
)

// Engine names a host.
type Engine string

// The hosts.
const (
	Wazero Engine = "wazero"
	V8     Engine = "v8"
)

// Engines lists every host, in the order tests run them.
var Engines = []Engine{Wazero, V8}

// Host is what tests do with a running proxy-wasm host: one module on Workers() worker VMs.
// Methods that may cross a process boundary return an error; on the wazero host they never
// fail that way.
type Host interface {
	Engine() Engine
	Workers() int
	// VMID is the shared-data namespace.
	VMID() string
	// Do runs one request through a new stream (see harness.Harness.Do).
	Do(ctx context.Context, r harness.Request) (*harness.Result, error)
	// Tick ticks every VM whose period is set; TickVM one VM, whatever its period.
	Tick(ctx context.Context) (int, error)
	TickVM(ctx context.Context, vm int) error
	// WaitHTTPCalls waits for every callout in flight to be delivered.
	WaitHTTPCalls(ctx context.Context) error
	HTTPCalls() ([]harness.HTTPCallRecord, error)
	// GetSharedData and SetSharedData act on the store the VMs share, with Envoy's rules.
	GetSharedData(key string) ([]byte, uint32, harness.Status, error)
	SetSharedData(key string, value []byte, cas uint32) (harness.Status, error)
	// Metric returns a metric's value by type and name, and whether it is defined.
	Metric(t harness.MetricType, name string) (int64, bool, error)
	Logs() ([]harness.LogEntry, error)
	VMs() ([]harness.VMState, error)
	StartTimings() harness.StartTimings
	// Bench times proxy_on_request_headers in the host's own process (see v8host.BenchSpec).
	Bench(ctx context.Context, spec BenchSpec) (BenchResult, error)
	Close(ctx context.Context) error
}

// BenchSpec and BenchResult are v8host's: the wazero host runs the same loop in Go.
type (
	BenchSpec   = v8host.BenchSpec
	BenchResult = v8host.BenchResult
)

// ErrUnknownEngine: Start was given an engine it does not know.
var ErrUnknownEngine = errors.New("hosttest: unknown engine")

// Start starts wasm in engine e with cfg.
func Start(ctx context.Context, e Engine, wasm []byte, cfg harness.Config) (Host, error) {
	switch e {
	case Wazero:
		h, err := harness.New(ctx, wasm, cfg)
		if err != nil {
			return nil, err
		}
		return &wazeroHost{h: h}, nil
	case V8:
		h, err := v8host.New(ctx, wasm, cfg)
		if err != nil {
			return nil, err
		}
		return &v8Host{Host: h}, nil
	}
	return nil, fmt.Errorf("%w: %q", ErrUnknownEngine, e)
}

// Harness returns the wazero harness behind h, or nil for another engine, for tests that
// need what only the harness offers (streams held open, its Go-side stores).
func Harness(h Host) *harness.Harness {
	if w, ok := h.(*wazeroHost); ok {
		return w.h
	}
	return nil
}

// Store adapts a host's shared data to the Get/SetSharedData interface that
// localproxytest.Publish and blocklistsync take.
type Store struct{ H Host }

// ErrShared: the host refused a shared-data access.
var ErrShared = errors.New("hosttest: shared data")

// GetSharedData implements the store interface.
func (s Store) GetSharedData(key string) ([]byte, uint32, error) {
	v, cas, st, err := s.H.GetSharedData(key)
	if err != nil {
		return nil, 0, err
	}
	if st != harness.StatusOK {
		return nil, 0, fmt.Errorf("%w: get %s: status %d", ErrShared, key, st)
	}
	return v, cas, nil
}

// SetSharedData implements the store interface.
func (s Store) SetSharedData(key string, value []byte, cas uint32) error {
	st, err := s.H.SetSharedData(key, value, cas)
	if err != nil {
		return err
	}
	if st != harness.StatusOK {
		return fmt.Errorf("%w: set %s: status %d", ErrShared, key, st)
	}
	return nil
}

type v8Host struct{ *v8host.Host }

func (*v8Host) Engine() Engine { return V8 }

type wazeroHost struct {
	h           *harness.Harness
	mixLastTick time.Time // the last tick of a mix chunk (mix.go)
}

func (*wazeroHost) Engine() Engine { return Wazero }
func (w *wazeroHost) Workers() int { return w.h.Workers() }
func (w *wazeroHost) VMID() string { return w.h.VMID() }
func (w *wazeroHost) Close(ctx context.Context) error {
	return w.h.Close(ctx)
}

func (w *wazeroHost) Do(ctx context.Context, r harness.Request) (*harness.Result, error) {
	return w.h.Do(ctx, r)
}

func (w *wazeroHost) Tick(ctx context.Context) (int, error) { return w.h.Tick(ctx), nil }

func (w *wazeroHost) TickVM(ctx context.Context, vm int) error {
	if vm < 0 || vm >= w.h.Workers() {
		return fmt.Errorf("%w: vm %d of %d", harness.ErrBadConfig, vm, w.h.Workers())
	}
	return w.h.VM(vm).Tick(ctx)
}

func (w *wazeroHost) WaitHTTPCalls(ctx context.Context) error { return w.h.WaitHTTPCalls(ctx) }

func (w *wazeroHost) HTTPCalls() ([]harness.HTTPCallRecord, error) { return w.h.HTTPCalls(), nil }

func (w *wazeroHost) GetSharedData(key string) ([]byte, uint32, harness.Status, error) {
	v, cas, st := w.h.SharedData().Get(w.h.VMID(), key)
	return v, cas, st, nil
}

func (w *wazeroHost) SetSharedData(key string, value []byte, cas uint32) (harness.Status, error) {
	return w.h.SharedData().Set(w.h.VMID(), key, value, cas), nil
}

func (w *wazeroHost) Metric(t harness.MetricType, name string) (int64, bool, error) {
	switch t {
	case harness.MetricCounter:
		v, ok := w.h.Metrics().Counter(name)
		return v, ok, nil
	case harness.MetricGauge:
		v, ok := w.h.Metrics().Gauge(name)
		return v, ok, nil
	}
	r, ok := w.h.Metrics().Histogram(name)
	return int64(len(r)), ok, nil
}

func (w *wazeroHost) Logs() ([]harness.LogEntry, error) { return w.h.Logs().Entries(), nil }

func (w *wazeroHost) VMs() ([]harness.VMState, error) {
	out := make([]harness.VMState, w.h.Workers())
	for i := range out {
		out[i] = w.h.VM(i).State()
	}
	return out, nil
}

func (w *wazeroHost) StartTimings() harness.StartTimings { return w.h.StartTimings() }

// Bench is v8host's bench loop in Go: a stream per request, only RequestHeaders timed.
func (w *wazeroHost) Bench(ctx context.Context, spec BenchSpec) (BenchResult, error) {
	out := BenchResult{Samples: make([]float64, spec.N)}
	for i := range spec.N {
		s, err := w.h.NewStream(ctx, spec.VM)
		if err != nil {
			return BenchResult{}, err
		}
		hs := spec.HeaderSets[i%len(spec.HeaderSets)]
		t0 := time.Now()
		act, err := s.RequestHeaders(ctx, hs, true)
		out.Samples[i] = float64(time.Since(t0).Nanoseconds())
		if err != nil {
			return BenchResult{}, err
		}
		var status uint32
		if lr := s.LocalResponse(); lr != nil {
			status = lr.Status
		}
		if f := s.VMFailure(); f != nil || (act == harness.ActionContinue) != spec.WantContinue || status != spec.WantStatus {
			return BenchResult{}, fmt.Errorf("request %d: action %v local %d vm_failure %v; want continue=%v status=%d",
				i, act, status, f, spec.WantContinue, spec.WantStatus)
		}
		if err := s.End(ctx); err != nil {
			return BenchResult{}, err
		}
	}
	out.MemoryBytes = w.h.VM(spec.VM).MemoryBytes()
	return out, nil
}
