package harness

import (
	"context"
	"fmt"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// hostFunc is the Go side of one import; stack holds the parameters on entry
// and the result (if any) in stack[0] on return, as api.GoModuleFunc.
type hostFunc func(ctx context.Context, v *VM, mod api.Module, stack []uint64)

// instantiateHostModules builds env and the two WASI module names with
// exactly the functions Envoy registers for the configured generation.
// Envoy registers the same WASI functions under wasi_snapshot_preview1 and
// wasi_unstable.
func (h *Harness) instantiateHostModules(ctx context.Context) error {
	envFns := envFunctions()
	b := h.rt.NewHostModuleBuilder(envModule)
	for name, s := range envSigs {
		fn := envFns[name]
		if fn == nil {
			fn = unimplemented
		}
		h.export(b, envModule, name, s, fn)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("%w: env host module: %v", ErrStartFailed, err)
	}
	wasiFns := wasiFunctions(h.cfg.wasi)
	for _, modName := range []string{wasiModule, wasiUnstableModule} {
		b := h.rt.NewHostModuleBuilder(modName)
		for _, name := range wasiNames(h.cfg.wasi) {
			fn := wasiFns[name]
			if fn == nil {
				return fmt.Errorf("%w: no implementation of %s.%s", ErrStartFailed, modName, name)
			}
			h.export(b, modName, name, wasiSigs[name], fn)
		}
		if _, err := b.Instantiate(ctx); err != nil {
			return fmt.Errorf("%w: %s host module: %v", ErrStartFailed, modName, err)
		}
	}
	return nil
}

// export wraps fn with Envoy's restricted-callback check: outside a normal
// callback (during _initialize or the allocator) only the allowed functions
// may run; any other traps, as V8 does with "restricted_callback".
func (h *Harness) export(b wazero.HostModuleBuilder, module, name string, s sig, fn hostFunc) {
	b.NewFunctionBuilder().
		WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, mod api.Module, stack []uint64) {
			v := vmFrom(ctx)
			if v == nil {
				panic(fmt.Errorf("%w: %s.%s called outside a host-initiated call", ErrRestrictedCallback, module, name))
			}
			if !h.restr.allowed(v.ph, name) {
				h.hostLog(v.index, LogCritical, "Attempted call to restricted capability: %s.%s during %s", module, name, v.ph)
				panic(fmt.Errorf("%w: %s.%s called during %s", ErrRestrictedCallback, module, name, v.ph))
			}
			fn(ctx, v, mod, stack)
		}), s.params, s.results).
		Export(name)
}

func u32(x uint64) uint32 { return uint32(x) }

func ret(stack []uint64, s Status) { stack[0] = uint64(s) }

// unimplemented answers StatusUnimplemented: for env functions Envoy has
// but a JWT filter has no use for (gRPC, shared queues, set_property).
func unimplemented(_ context.Context, _ *VM, _ api.Module, stack []uint64) {
	if len(stack) > 0 {
		ret(stack, StatusUnimplemented)
	}
}
