package v8host

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/jtiguard/jtiguard/harness"
)

// SharedWrite is one shared-data write a mix chunk makes before its first request.
type SharedWrite struct {
	Key   string
	Value []byte
}

// MixSpec is one chunk of the mixed benchmark (e2e BenchmarkModuleMix) on VM: the Publish
// writes first (unconditional sets in the host's namespace, as the lease holder's syncer
// leaves them), then one request per entry of Seq, whose request headers are
// HeaderSets[Seq[i]], each a new stream ended with end of stream, only
// proxy_on_request_headers timed. Between requests, untimed, the host calls proxy_on_tick
// whenever the VM's own tick period has passed since its last tick (the clock runs on across
// chunks), as Envoy's dispatcher does on the worker's thread. GCCounter, if set, names a
// test-only export (e.g. jtiguard_test_gcpauses) read at both ends of the chunk and around
// each tick.
type MixSpec struct {
	VM         int
	HeaderSets []harness.Pairs
	Seq        []uint32
	Publish    []SharedWrite
	GCCounter  string
	// NoSwitches leaves the switch counters unread (SwitchesKnown false): to see what reading
	// them between requests does to the timings.
	NoSwitches bool
}

// Answer codes of MixResult.Status besides an HTTP status of a local reply.
const (
	MixContinue  = 0      // the filter let the request through
	MixPaused    = 0xfffe // paused without a local reply
	MixVMFailure = 0xffff // the VM failed
)

// Tick is one proxy_on_tick of a mix chunk: how long it took (ns) and the change of the GC
// counter across it.
type Tick struct {
	NS       float64
	GC       uint64
	Switched bool // the thread was switched out during it
}

// MixResult is one chunk's record, one entry per request in request order.
type MixResult struct {
	Samples []float64 // ns in proxy_on_request_headers
	Starts  []float64 // when each timed call started, ns on the host's monotonic clock
	Status  []uint16  // MixContinue, a local reply's status, MixPaused or MixVMFailure
	// Switches says whether the timing thread was switched out between the reads of its
	// counters that bracket the request: bit 0 involuntarily (preempted), bit 1 voluntarily
	// (it blocked), bit 2 one or the other, not told apart (node: the thread's schedstat).
	// SwitchesKnown is false where the host cannot read them.
	Switches      []uint8
	SwitchesKnown bool
	Published     float64 // when the Publish writes were made, on the clock of Starts
	Ticks         []Tick  // the proxy_on_tick calls during the chunk
	// GCInTicks and GCOutsideTicks are the changes of GCCounter during ticks and during
	// everything else (the requests' callbacks).
	GCInTicks, GCOutsideTicks uint64
	MemoryBytes               uint64
}

// Mix runs spec inside node; the switch counter is node's main thread's count of times
// scheduled onto a CPU, read from /proc/thread-self/schedstat (see host.js, readSched).
func (h *Host) Mix(ctx context.Context, spec MixSpec) (MixResult, error) {
	seq := make([]byte, 4*len(spec.Seq))
	for i, v := range spec.Seq {
		if int(v) >= len(spec.HeaderSets) {
			return MixResult{}, fmt.Errorf("%w: mix: seq[%d]=%d of %d header sets", harness.ErrBadConfig, i, v, len(spec.HeaderSets))
		}
		binary.LittleEndian.PutUint32(seq[4*i:], v)
	}
	pub := make([]map[string]any, len(spec.Publish))
	for i, w := range spec.Publish {
		pub[i] = map[string]any{"key": w.Key, "value": w.Value}
	}
	var r struct {
		Samples       string       `json:"samples_ns"`
		Starts        string       `json:"starts_ns"`
		Status        string       `json:"status"`
		Switches      string       `json:"switches"`
		SwitchesKnown bool         `json:"switches_known"`
		Published     float64      `json:"published_ns"`
		Ticks         [][3]float64 `json:"ticks"`
		GCInTicks     uint64       `json:"gc_in_ticks"`
		GCOutside     uint64       `json:"gc_outside_ticks"`
		MemoryBytes   uint64       `json:"memory_bytes"`
	}
	args := map[string]any{"vm": spec.VM, "vm_id": h.settings.VMID, "header_sets": spec.HeaderSets,
		"seq": seq, "publish": pub, "gc_counter": spec.GCCounter, "no_switches": spec.NoSwitches}
	if err := h.p.call(ctx, "mix", args, &r); err != nil {
		return MixResult{}, err
	}
	n := len(spec.Seq)
	out := MixResult{SwitchesKnown: r.SwitchesKnown, Published: r.Published,
		GCInTicks: r.GCInTicks, GCOutsideTicks: r.GCOutside, MemoryBytes: r.MemoryBytes}
	for _, t := range r.Ticks {
		out.Ticks = append(out.Ticks, Tick{NS: t[0], GC: uint64(t[1]), Switched: t[2] != 0})
	}
	var err error
	if out.Samples, err = floats(r.Samples, n); err != nil {
		return MixResult{}, err
	}
	if out.Starts, err = floats(r.Starts, n); err != nil {
		return MixResult{}, err
	}
	st, err := base64.StdEncoding.DecodeString(r.Status)
	if err != nil || len(st) != 2*n {
		return MixResult{}, fmt.Errorf("%w: mix status: %d bytes for %d requests (%v)", ErrHostExited, len(st), n, err)
	}
	out.Status = make([]uint16, n)
	for i := range out.Status {
		out.Status[i] = binary.LittleEndian.Uint16(st[2*i:])
	}
	if out.Switches, err = base64.StdEncoding.DecodeString(r.Switches); err != nil || len(out.Switches) != n {
		return MixResult{}, fmt.Errorf("%w: mix switches: %d bytes for %d requests (%v)", ErrHostExited, len(out.Switches), n, err)
	}
	return out, nil
}

// CallExport calls a test-only export of VM vm outside any context and returns its 32-bit
// result (the counters of a module built with -tags jtiguard_testexports).
func (h *Host) CallExport(ctx context.Context, vm int, name string) (uint64, error) {
	var v uint64
	err := h.p.call(ctx, "call_export", map[string]any{"vm": vm, "name": name}, &v)
	return v, err
}

func floats(b64 string, n int) ([]float64, error) {
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != 8*n {
		return nil, fmt.Errorf("%w: mix: %d bytes for %d requests (%v)", ErrHostExited, len(raw), n, err)
	}
	out := make([]float64, n)
	for i := range out {
		out[i] = math.Float64frombits(binary.LittleEndian.Uint64(raw[8*i:]))
	}
	return out, nil
}
