package harness

import (
	"context"
	"strings"
	"testing"

	"github.com/jtiguard/jtiguard/internal/moduletest"
	"github.com/jtiguard/jtiguard/internal/wasmstub"
)

// TestRealModulePanicIsAnsweredNotTrapped: a panic in the filter's request path (injected by
// a module built with -tags jtiguard_faultinject) is recovered by internal/abi, logged at
// critical level and answered with a 500; the VM keeps serving.
func TestRealModulePanicIsAnsweredNotTrapped(t *testing.T) {
	raw := moduletest.Build(t, "jtiguard_faultinject")
	wasm, err := wasmstub.StubImports(raw, wasmstub.EnvoyStubs)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range []WASIGeneration{WASICurrent, WASIEnvoy133} {
		t.Run(g.String(), func(t *testing.T) {
			ctx := context.Background()
			h, err := New(ctx, wasm, NewConfig().WithWorkers(1).WithWASI(g).WithTimers(false).
				WithPluginConfig([]byte(`{"jwt":{"hmac_secrets":[{"secret":"s"}]},"sync":{"cluster":""}}`)))
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close(ctx)
			res, err := h.Do(ctx, Request{Path: "/", Headers: Pairs{{"x-jtiguard-panic", "1"}}})
			if err != nil {
				t.Fatal(err)
			}
			if res.VMFailure != nil || res.LocalResponse == nil || res.LocalResponse.Status != 500 {
				t.Fatalf("panicking request: %v; want a local 500 and a live VM", res)
			}
			if !strings.Contains(string(res.LocalResponse.Body), "Internal error") {
				t.Fatalf("500 body = %q", res.LocalResponse.Body)
			}
			if !h.Logs().Contains(LogCritical, "panic in proxy_on_request_headers") {
				t.Fatalf("no critical log of the panic; logs:\n%s", h.Logs())
			}
			res, err = h.Do(ctx, Request{Path: "/"})
			if err != nil || res.VMFailure != nil || h.VM(0).Failed() != nil || res.Action != ActionContinue {
				t.Fatalf("request after the panic: %v, %v; want Continue on a live VM", res, err)
			}
		})
	}
}
