package harness

import (
	"context"
	"testing"

	"github.com/jtiguard/jtiguard/internal/moduletest"
)

// BenchmarkGuestEntry measures what it costs to enter the Go runtime through a
// //go:wasmexport callback that does nearly nothing: proxy_on_tick with syncing off, which
// makes one shared-data read that finds nothing. It is the floor under every host→module call.
func BenchmarkGuestEntry(b *testing.B) {
	ctx := context.Background()
	h, err := New(ctx, moduletest.Module(b), NewConfig().WithWorkers(1).WithWASI(WASICurrent).
		WithPluginConfig([]byte(`{"jwt":{"hmac_secrets":[{"secret":"s"}]},"sync":{"cluster":""}}`)).WithTimers(false))
	if err != nil {
		b.Fatal(err)
	}
	defer h.Close(ctx)
	v := h.VM(0)
	b.ReportAllocs()
	for b.Loop() {
		v.mu.Lock()
		_, err := v.call(ctx, "proxy_on_tick", 1, 1)
		v.mu.Unlock()
		if err != nil {
			b.Fatal(err)
		}
	}
}
