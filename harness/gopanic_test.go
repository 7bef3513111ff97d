package harness

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// buildPanicGuest compiles testdata/panicguest with the standard toolchain.
func buildPanicGuest(t *testing.T) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "panicguest.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out, "./testdata/panicguest")
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build panicguest: %v\n%s", err, b)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestGoPanicFailsVM: an unrecovered Go panic aborts with unreachable: the
// VM fails and the stream gets 503, later streams 503 wasm_fail_stream.
//
// With the current surface the panic message reaches the error log through
// fd_write (fd 2). With envoy-1.33 it does not: fatalpanic freezes the world,
// which sleeps through poll_oneoff, gets ENOSYS and throws before printing,
// so Envoy 1.33 logs a bare "runtime stack:" and the trap, without the panic
// message. The harness reproduces both.
func TestGoPanicFailsVM(t *testing.T) {
	wasm := buildPanicGuest(t)
	tests := []struct {
		gen     WASIGeneration
		wantMsg bool
	}{
		{WASIEnvoy133, false},
		{WASICurrent, true},
	}
	for _, tc := range tests {
		g := tc.gen
		t.Run(g.String(), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			h, err := New(ctx, wasm, testConfig().WithWASI(g).WithWorkers(1))
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close(ctx)
			res, err := h.Do(ctx, Request{})
			if err != nil || res.LocalResponse != nil || res.VMFailure != nil {
				t.Fatalf("healthy request: %v, %v", res, err)
			}
			res, err = h.Do(ctx, Request{Headers: Pairs{{"x-boom", "1"}}})
			if err != nil {
				t.Fatal(err)
			}
			if res.VMFailure == nil || res.LocalResponse == nil || res.LocalResponse.Status != 503 {
				t.Fatalf("panicking request: %v; want VM failure and 503", res)
			}
			if !strings.Contains(res.VMFailure.Error(), "unreachable") {
				t.Errorf("VM failure %q; want the abort trap", res.VMFailure)
			}
			if got := h.Logs().Contains(LogError, "assignment to entry in nil map"); got != tc.wantMsg {
				t.Errorf("panic message in the error log = %v; want %v\n%s", got, tc.wantMsg, h.Logs())
			}
			res, err = h.Do(ctx, Request{})
			if err != nil || res.LocalResponse == nil || res.LocalResponse.Details != "wasm_fail_stream" {
				t.Fatalf("request after the failure: %v, %v; want 503 wasm_fail_stream", res, err)
			}
		})
	}
}
