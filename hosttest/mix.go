package hosttest

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/v8host"
)

// The mixed benchmark's chunk and record are v8host's: the wazero host runs the same loop in
// Go (see v8host.MixSpec for what a chunk does).
type (
	MixSpec     = v8host.MixSpec
	MixResult   = v8host.MixResult
	SharedWrite = v8host.SharedWrite
	Tick        = v8host.Tick
)

// The answer codes of MixResult.Status.
const (
	MixContinue  = v8host.MixContinue
	MixPaused    = v8host.MixPaused
	MixVMFailure = v8host.MixVMFailure
)

// ErrNoMix: the host does not run the mixed benchmark.
var ErrNoMix = errors.New("hosttest: host cannot run the mix")

// Mix runs one chunk of the mixed benchmark in h's own process (see v8host.MixSpec).
func Mix(ctx context.Context, h Host, spec MixSpec) (MixResult, error) {
	switch h := h.(type) {
	case *wazeroHost:
		return h.mix(ctx, spec)
	case *v8Host:
		return h.Mix(ctx, spec)
	}
	return MixResult{}, fmt.Errorf("%w: %s", ErrNoMix, h.Engine())
}

// CallExport calls a test-only export of VM vm (a counter of a module built with -tags
// jtiguard_testexports) outside any context.
func CallExport(ctx context.Context, h Host, vm int, name string) (uint64, error) {
	switch h := h.(type) {
	case *wazeroHost:
		if vm < 0 || vm >= h.h.Workers() {
			return 0, fmt.Errorf("%w: vm %d of %d", harness.ErrBadConfig, vm, h.h.Workers())
		}
		return h.h.VM(vm).CallExport(ctx, name)
	case *v8Host:
		return h.CallExport(ctx, vm, name)
	}
	return 0, fmt.Errorf("%w: %s", ErrNoMix, h.Engine())
}

// MonoBase is the origin of the wazero host's MixResult clock (Starts, Published).
var MonoBase = time.Now()

// mix is host.js's mix in Go, on a goroutine locked to its thread so that the thread's
// context switches (ThreadSwitches) are the timing's.
func (w *wazeroHost) mix(ctx context.Context, spec MixSpec) (MixResult, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if spec.VM < 0 || spec.VM >= w.h.Workers() {
		return MixResult{}, fmt.Errorf("%w: vm %d of %d", harness.ErrBadConfig, spec.VM, w.h.Workers())
	}
	vm := w.h.VM(spec.VM)
	n := len(spec.Seq)
	out := MixResult{Samples: make([]float64, n), Starts: make([]float64, n), Status: make([]uint16, n),
		Switches: make([]uint8, n), SwitchesKnown: true}
	for i, v := range spec.Seq {
		if int(v) >= len(spec.HeaderSets) {
			return MixResult{}, fmt.Errorf("%w: mix: seq[%d]=%d of %d header sets", harness.ErrBadConfig, i, v, len(spec.HeaderSets))
		}
	}
	gc := func() (uint64, error) {
		if spec.GCCounter == "" {
			return 0, nil
		}
		return vm.CallExport(ctx, spec.GCCounter)
	}
	gcStart, err := gc()
	if err != nil {
		return MixResult{}, err
	}
	published := time.Now()
	for _, pw := range spec.Publish {
		if st := w.h.SharedData().Set(w.h.VMID(), pw.Key, pw.Value, 0); st != harness.StatusOK {
			return MixResult{}, fmt.Errorf("%w: publish %s: status %d", ErrShared, pw.Key, st)
		}
	}
	out.Published = float64(published.Sub(MonoBase).Nanoseconds())
	if w.mixLastTick.IsZero() {
		w.mixLastTick = published
	}
	for i := range n {
		if p := vm.TickPeriod(); p > 0 && time.Since(w.mixLastTick) >= p {
			g0, err := gc()
			if err != nil {
				return MixResult{}, err
			}
			tv, ti, _ := ThreadSwitches()
			t0 := time.Now()
			if err := vm.Tick(ctx); err != nil {
				return MixResult{}, err
			}
			t1 := time.Now()
			tv1, ti1, _ := ThreadSwitches()
			g1, err := gc()
			if err != nil {
				return MixResult{}, err
			}
			out.GCInTicks += g1 - g0
			w.mixLastTick = t1
			out.Ticks = append(out.Ticks, Tick{NS: float64(t1.Sub(t0).Nanoseconds()), GC: g1 - g0, Switched: tv1 != tv || ti1 != ti})
		}
		s, err := w.h.NewStream(ctx, spec.VM)
		if err != nil {
			return MixResult{}, err
		}
		hs := spec.HeaderSets[spec.Seq[i]]
		var v0, i0, v1, i1 int64
		ok := false
		if !spec.NoSwitches {
			v0, i0, ok = ThreadSwitches()
		}
		out.SwitchesKnown = out.SwitchesKnown && ok
		t0 := time.Now()
		act, err := s.RequestHeaders(ctx, hs, true)
		t1 := time.Now()
		if !spec.NoSwitches {
			v1, i1, _ = ThreadSwitches()
		}
		if err != nil {
			return MixResult{}, err
		}
		out.Samples[i] = float64(t1.Sub(t0).Nanoseconds())
		out.Starts[i] = float64(t0.Sub(MonoBase).Nanoseconds())
		if i1 != i0 {
			out.Switches[i] |= 1
		}
		if v1 != v0 {
			out.Switches[i] |= 2
		}
		switch lr := s.LocalResponse(); {
		case s.VMFailure() != nil:
			out.Status[i] = MixVMFailure
		case lr != nil:
			out.Status[i] = uint16(lr.Status)
		case act == harness.ActionContinue:
			out.Status[i] = MixContinue
		default:
			out.Status[i] = MixPaused
		}
		if err := s.End(ctx); err != nil {
			return MixResult{}, err
		}
		if f := vm.Failed(); f != nil {
			return MixResult{}, f
		}
	}
	gcEnd, err := gc()
	if err != nil {
		return MixResult{}, err
	}
	out.GCOutsideTicks = gcEnd - gcStart - out.GCInTicks
	out.MemoryBytes = vm.MemoryBytes()
	return out, nil
}
