package v8host

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/jtiguard/jtiguard/harness"
)

// callTimeout bounds a protocol call made without a caller's context (getters).
const callTimeout = 2 * time.Minute

// Host is a running V8 host: one node process holding N worker VMs of one module and the
// process-wide state they share (shared data, metrics, logs, callouts). Methods are safe
// for concurrent use; node runs one callback at a time, as one Envoy worker does.
type Host struct {
	p        *proc
	settings harness.Settings
	starts   harness.StartTimings
	info     Info
}

// Info names the engine the host runs in.
type Info struct {
	Node  string   `json:"node"`
	V8    string   `json:"v8"`
	Flags []string `json:"flags"`
}

// New checks wasm against Envoy's import surface (harness.CheckModule: what cpp-host's
// link step refuses), starts node with V8Flags, instantiates cfg's worker VMs and starts
// each as cpp-host does. A start failure wraps harness.ErrStartFailed; a missing node
// wraps ErrNoNode. WithSharedData and WithCompilationCache do not apply across processes:
// the first is refused, the second ignored.
func New(ctx context.Context, wasm []byte, cfg harness.Config) (*Host, error) {
	s, err := cfg.Settings()
	if err != nil {
		return nil, err
	}
	if s.OwnSharedData {
		return nil, fmt.Errorf("%w: WithSharedData: the V8 host keeps shared data in the node process", harness.ErrBadConfig)
	}
	g, err := harness.ParseWASIGeneration(s.WASI)
	if err != nil {
		return nil, err
	}
	if err := harness.CheckModule(ctx, wasm, g); err != nil {
		return nil, fmt.Errorf("%w: %w", harness.ErrStartFailed, err)
	}
	p, wasmPath, err := startProc(wasm, V8Flags(s.MemoryLimitPages), s.LogOutput)
	if err != nil {
		return nil, err
	}
	h := &Host{p: p, settings: s}
	var st struct {
		CompileNS int64 `json:"compile_ns"`
		VMs       []struct {
			Instantiate int64 `json:"instantiate_ns"`
			Initialize  int64 `json:"initialize_ns"`
			Configure   int64 `json:"configure_ns"`
		} `json:"vms"`
		Info
	}
	args := map[string]any{"settings": s, "surface": harness.SurfaceOf(g), "wasm_path": wasmPath, "echo_logs": s.LogOutput != nil}
	if err := p.call(ctx, "start", args, &st); err != nil {
		h.p.stop(context.Background())
		return nil, err
	}
	h.info = st.Info
	if major, _, _ := strings.Cut(strings.TrimPrefix(st.Node, "v"), "."); atoi(major) < 18 {
		h.p.stop(context.Background())
		return nil, fmt.Errorf("%w: %s; want 18 or later", ErrNodeTooOld, st.Node)
	}
	h.starts.Compile = time.Duration(st.CompileNS)
	for _, v := range st.VMs {
		h.starts.VMs = append(h.starts.VMs, harness.VMStartTimings{Instantiate: time.Duration(v.Instantiate),
			Initialize: time.Duration(v.Initialize), Configure: time.Duration(v.Configure)})
	}
	return h, nil
}

// Close stops timers, ends the node process and removes its files. Safe to call twice.
func (h *Host) Close(ctx context.Context) error {
	h.p.stop(ctx)
	return nil
}

// Info returns node's and V8's versions and the flags node runs with.
func (h *Host) Info() Info { return h.info }

// Workers returns the number of worker VMs.
func (h *Host) Workers() int { return h.settings.Workers }

// VMID returns the shared-data namespace (the configured vm_id).
func (h *Host) VMID() string { return h.settings.VMID }

// StartTimings returns how long compilation and each VM's start phases took in node.
func (h *Host) StartTimings() harness.StartTimings { return h.starts }

type wireRequest struct {
	VM      int           `json:"vm"`
	Headers harness.Pairs `json:"headers"`
	Chunks  [][]byte      `json:"chunks"`
}

type wireLocal struct {
	Status     uint32        `json:"status"`
	Details    string        `json:"details"`
	Body       []byte        `json:"body"`
	Headers    harness.Pairs `json:"headers"`
	GRPCStatus int32         `json:"grpc_status"`
}

// Do runs one request as harness.Harness.Do does: a new stream on r.VM (AnyVM for round
// robin), headers as Envoy presents them (harness.RequestHeadersFor), the body chunks while
// the filter lets them through, then proxy_on_done, proxy_on_log and proxy_on_delete.
func (h *Host) Do(ctx context.Context, r harness.Request) (*harness.Result, error) {
	var res struct {
		VM             int           `json:"vm"`
		ContextID      uint32        `json:"context_id"`
		Action         uint32        `json:"action"`
		RequestHeaders harness.Pairs `json:"request_headers"`
		VMFailure      string        `json:"vm_failure"`
		Local          *wireLocal    `json:"local"`
	}
	req := wireRequest{VM: r.VM, Headers: harness.RequestHeadersFor(r), Chunks: r.Chunks()}
	if err := h.p.call(ctx, "do", map[string]any{"request": req}, &res); err != nil {
		return nil, err
	}
	out := &harness.Result{VM: res.VM, ContextID: res.ContextID, Action: harness.Action(res.Action), RequestHeaders: res.RequestHeaders}
	if res.VMFailure != "" {
		out.VMFailure = fmt.Errorf("%w: %s", harness.ErrVMFailed, res.VMFailure)
	}
	if l := res.Local; l != nil {
		out.LocalResponse = &harness.LocalResponse{Status: l.Status, Details: l.Details, Body: l.Body, Headers: l.Headers, GRPCStatus: l.GRPCStatus}
	}
	return out, nil
}

// Tick calls proxy_on_tick on every VM whose tick period is set, in VM order, and returns
// how many ticked.
func (h *Host) Tick(ctx context.Context) (int, error) {
	var n int
	err := h.p.call(ctx, "tick", map[string]any{"vm": -1}, &n)
	return n, err
}

// TickVM calls proxy_on_tick on VM vm now, whatever its period.
func (h *Host) TickVM(ctx context.Context, vm int) error {
	return h.p.call(ctx, "tick", map[string]any{"vm": vm}, nil)
}

// WaitHTTPCalls blocks until every callout sent so far has been delivered or dropped.
func (h *Host) WaitHTTPCalls(ctx context.Context) error {
	return h.p.call(ctx, "wait_calls", nil, nil)
}

// HTTPCalls returns the callouts made so far, in dispatch order.
func (h *Host) HTTPCalls() ([]harness.HTTPCallRecord, error) {
	var recs []struct {
		VM             int           `json:"vm"`
		Token          uint32        `json:"token"`
		Cluster        string        `json:"cluster"`
		Address        string        `json:"address"`
		Headers        harness.Pairs `json:"headers"`
		Body           []byte        `json:"body"`
		TimeoutMS      uint32        `json:"timeout_ms"`
		ResponseStatus int           `json:"response_status"`
		Error          string        `json:"error"`
		Delivered      bool          `json:"delivered"`
	}
	if err := h.call("calls", nil, &recs); err != nil {
		return nil, err
	}
	out := make([]harness.HTTPCallRecord, len(recs))
	for i, r := range recs {
		out[i] = harness.HTTPCallRecord{VM: r.VM, Token: r.Token, Cluster: r.Cluster, Address: r.Address,
			Headers: r.Headers, Body: r.Body, Timeout: time.Duration(r.TimeoutMS) * time.Millisecond,
			ResponseStatus: r.ResponseStatus, Delivered: r.Delivered}
		if r.Error != "" {
			out[i].Err = errors.New(r.Error)
		}
	}
	return out, nil
}

// GetSharedData reads key in the host's namespace (the configured vm_id).
func (h *Host) GetSharedData(key string) ([]byte, uint32, harness.Status, error) {
	var r struct {
		Status harness.Status `json:"status"`
		Value  []byte         `json:"value"`
		CAS    uint32         `json:"cas"`
	}
	if err := h.call("shared_get", map[string]any{"vm_id": h.settings.VMID, "key": key}, &r); err != nil {
		return nil, 0, 0, err
	}
	return r.Value, r.CAS, r.Status, nil
}

// SetSharedData writes key under Envoy's CAS rules, as a VM's proxy_set_shared_data would.
func (h *Host) SetSharedData(key string, value []byte, cas uint32) (harness.Status, error) {
	var st harness.Status
	err := h.call("shared_set", map[string]any{"vm_id": h.settings.VMID, "key": key, "value": value, "cas": cas}, &st)
	return st, err
}

// Metric is one metric as the host holds it.
type Metric struct {
	Type    harness.MetricType
	Name    string
	Value   int64
	Records []uint64 // histogram samples
}

// Metrics returns every defined metric.
func (h *Host) Metrics() ([]Metric, error) {
	var ms []struct {
		Type    harness.MetricType `json:"type"`
		Name    string             `json:"name"`
		Value   string             `json:"value"`
		Records []string           `json:"records"`
	}
	if err := h.call("metrics", nil, &ms); err != nil {
		return nil, err
	}
	out := make([]Metric, len(ms))
	for i, m := range ms {
		v, err := strconv.ParseInt(m.Value, 10, 64)
		if err != nil {
			u, _ := strconv.ParseUint(m.Value, 10, 64)
			v = int64(u)
		}
		out[i] = Metric{Type: m.Type, Name: m.Name, Value: v}
		for _, r := range m.Records {
			u, _ := strconv.ParseUint(r, 10, 64)
			out[i].Records = append(out[i].Records, u)
		}
	}
	return out, nil
}

// Metric returns the value of the metric of type t named name, and whether it is defined.
func (h *Host) Metric(t harness.MetricType, name string) (int64, bool, error) {
	ms, err := h.Metrics()
	if err != nil {
		return 0, false, err
	}
	for _, m := range ms {
		if m.Type == t && m.Name == name {
			return m.Value, true, nil
		}
	}
	return 0, false, nil
}

// Logs returns every captured log entry (at or above the configured level), in order.
func (h *Host) Logs() ([]harness.LogEntry, error) {
	var es []harness.LogEntry
	var wire []struct {
		VM      int              `json:"vm"`
		Level   harness.LogLevel `json:"level"`
		Message string           `json:"message"`
	}
	if err := h.call("logs", nil, &wire); err != nil {
		return nil, err
	}
	for _, e := range wire {
		es = append(es, harness.LogEntry{VM: e.VM, Level: e.Level, Message: e.Message})
	}
	return es, nil
}

// VMs returns the state of every worker VM.
func (h *Host) VMs() ([]harness.VMState, error) {
	var ws []struct {
		Failed       string `json:"failed"`
		MemoryBytes  uint64 `json:"memory_bytes"`
		TickPeriodMS int64  `json:"tick_period_ms"`
	}
	if err := h.call("vms", nil, &ws); err != nil {
		return nil, err
	}
	out := make([]harness.VMState, len(ws))
	for i, w := range ws {
		out[i] = harness.VMState{MemoryBytes: w.MemoryBytes, TickPeriod: time.Duration(w.TickPeriodMS) * time.Millisecond}
		if w.Failed != "" {
			out[i].Failed = fmt.Errorf("%w: %s", harness.ErrVMFailed, w.Failed)
		}
	}
	return out, nil
}

// BenchSpec is a timing run inside node: N requests on VM, each a new stream whose request
// headers are HeaderSets[i % len], ended with end of stream; only proxy_on_request_headers
// (with the host's hand-over of the headers) is timed. Every request must get the answer
// WantContinue / WantStatus (0: no local reply), else Bench fails.
type BenchSpec struct {
	VM           int
	N            int
	HeaderSets   []harness.Pairs
	WantContinue bool
	WantStatus   uint32
}

// BenchResult holds one sample per request, in nanoseconds, in request order.
type BenchResult struct {
	Samples     []float64
	MemoryBytes uint64 // the VM's linear memory after the run
}

// Bench runs spec inside node, timing each request with process.hrtime.bigint().
func (h *Host) Bench(ctx context.Context, spec BenchSpec) (BenchResult, error) {
	var r struct {
		Samples     string `json:"samples_ns"`
		MemoryBytes uint64 `json:"memory_bytes"`
	}
	args := map[string]any{"vm": spec.VM, "n": spec.N, "header_sets": spec.HeaderSets,
		"want_continue": spec.WantContinue, "want_status": spec.WantStatus}
	if err := h.p.call(ctx, "bench", args, &r); err != nil {
		return BenchResult{}, err
	}
	raw, err := base64.StdEncoding.DecodeString(r.Samples)
	if err != nil || len(raw) != 8*spec.N {
		return BenchResult{}, fmt.Errorf("%w: bench samples: %d bytes for %d requests (%v)", ErrHostExited, len(raw), spec.N, err)
	}
	out := BenchResult{Samples: make([]float64, spec.N), MemoryBytes: r.MemoryBytes}
	for i := range out.Samples {
		out.Samples[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	return out, nil
}

// BenchExport calls export name with args per times in each of n batches, inside node, and
// returns each batch's mean per call in nanoseconds: the floor under a callback, for
// measurements of method (docs/benchmarks.md).
func (h *Host) BenchExport(ctx context.Context, vm int, name string, args []uint32, n, per int) ([]float64, error) {
	var r struct {
		Samples string `json:"samples_ns"`
	}
	if err := h.p.call(ctx, "bench_export", map[string]any{"vm": vm, "name": name, "args": args, "n": n, "per": per}, &r); err != nil {
		return nil, err
	}
	raw, err := base64.StdEncoding.DecodeString(r.Samples)
	if err != nil || len(raw) != 8*n {
		return nil, fmt.Errorf("%w: bench_export samples: %d bytes for %d batches (%v)", ErrHostExited, len(raw), n, err)
	}
	out := make([]float64, n)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	return out, nil
}

func (h *Host) call(op string, args, out any) error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	return h.p.call(ctx, op, args, out)
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0
	}
	return n
}
