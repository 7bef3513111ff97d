package e2e

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/hosttest"
	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
)

// startHost starts the real module in engine e; like startHarness it fails the test, never
// skips, when the module or the engine (node, for V8) cannot be had.
func startHost(t testing.TB, e hosttest.Engine, cfg harness.Config) hosttest.Host {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	if e == hosttest.Wazero {
		cfg = cfg.WithCompilationCache(compiled())
	}
	h, err := hosttest.Start(ctx, e, localproxytest.Module(t), cfg)
	if err != nil {
		t.Fatalf("start the module in %s (%s): %v", e, localproxytest.ModuleInfo(t), err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if logs, err := h.Logs(); err == nil {
				var b strings.Builder
				for _, l := range logs {
					fmt.Fprintf(&b, "vm=%d [%s] %s\n", l.VM, l.Level, l.Message)
				}
				t.Logf("%s logs:\n%s", e, lastLines(b.String(), 60))
			}
		}
		_ = h.Close(context.Background())
	})
	return h
}

// doHost runs one request with tok (none if "") on VM vm of h and returns the decision.
func doHost(t testing.TB, h hosttest.Host, vm int, tok string) outcome {
	t.Helper()
	r := harness.Request{Path: "/api", VM: vm}
	if tok != "" {
		r.Headers = bearer(tok)
	}
	res, err := h.Do(context.Background(), r)
	if err != nil {
		t.Fatalf("%s: Do on VM %d: %v", h.Engine(), vm, err)
	}
	if res.VMFailure != nil {
		t.Fatalf("%s: VM %d failed: %v", h.Engine(), vm, res.VMFailure)
	}
	if lr := res.LocalResponse; lr != nil {
		return outcome{Status: lr.Status, Body: string(lr.Body)}
	}
	if res.Action != harness.ActionContinue {
		t.Fatalf("%s: VM %d paused without a local reply", h.Engine(), vm)
	}
	return allowed
}
