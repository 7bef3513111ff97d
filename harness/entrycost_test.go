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
	h := benchHarness(b)
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

// BenchmarkStreamWithoutToken runs what the harness does for one request without a token
// on the real module, as the benchmarks' wazero host does: a stream (proxy_on_context_create),
// its request headers (the seven of RequestHeadersFor), and its end (proxy_on_done, _log,
// _delete). What it adds to the module's own work is the harness's, which the wazero rows of
// docs/benchmarks.md carry and Envoy does not.
func BenchmarkStreamWithoutToken(b *testing.B) {
	ctx := context.Background()
	h := benchHarness(b)
	headers := RequestHeadersFor(Request{Path: "/bench"})
	b.ReportAllocs()
	for b.Loop() {
		s, err := h.NewStream(ctx, 0)
		if err != nil {
			b.Fatal(err)
		}
		if act, err := s.RequestHeaders(ctx, headers, true); err != nil || act != ActionContinue {
			b.Fatalf("request headers: %v %v", act, err)
		}
		if err := s.End(ctx); err != nil {
			b.Fatal(err)
		}
	}
}

// benchHarness starts the real module on one VM with syncing off, closed when b ends.
func benchHarness(b *testing.B) *Harness {
	ctx := context.Background()
	h, err := New(ctx, moduletest.Module(b), NewConfig().WithWorkers(1).WithWASI(WASICurrent).
		WithPluginConfig([]byte(`{"jwt":{"hmac_secrets":[{"secret":"s"}]},"sync":{"cluster":""}}`)).WithTimers(false))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close(ctx) })
	return h
}
