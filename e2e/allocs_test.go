package e2e

import (
	"context"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/internal/moduletest"
	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
)

// TestRequestPathAllocatesNothingInTheModule counts the Go heap allocations and collections
// inside the real module (built with -tags jtiguard_testexports, which adds two counters
// and nothing else) over many requests of each steady-state kind: no token, a token seen
// before, a revoked token. None may allocate, so no garbage collection can start inside a
// request callback.
func TestRequestPathAllocatesNothingInTheModule(t *testing.T) {
	for _, cfg := range []struct {
		name   string
		config []byte
	}{
		{"no rules", pluginConfig(cfgOpts{noSync: true})},
		// The requests go to /api, which no rule matches: every rule is tried, the path
		// checked for normal form.
		{"with rules", withRules(t, "allow")},
	} {
		t.Run(cfg.name, func(t *testing.T) { requestPathAllocatesNothing(t, cfg.config) })
	}
}

func requestPathAllocatesNothing(t *testing.T, config []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	wasm := moduletest.Build(t, "jtiguard_testexports")
	h, err := harness.New(ctx, wasm, harness.NewConfig().WithWorkers(1).WithWASI(harness.WASICurrent).
		WithPluginConfig(config).WithTimers(false))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(ctx)
	if err := localproxytest.Publish(localproxytest.HarnessStore{H: h}, prefix, decisionList()); err != nil {
		t.Fatal(err)
	}
	vm := h.VM(0)
	counter := func(name string) uint64 {
		v, err := vm.CallExport(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	valid, revokedTok := token("alloc-valid"), token("revoked-jti")
	for _, c := range []struct {
		name  string
		token string
		want  outcome
	}{
		{"no token", "", allowed},
		{"cache hit", valid, allowed},
		{"revoked", revokedTok, revoked},
	} {
		for i := 0; i < 50; i++ { // warm up: caches filled, buffers grown
			do(t, h, 0, c.token)
		}
		const n = 2000
		m0, g0 := counter("jtiguard_test_mallocs"), counter("jtiguard_test_numgc")
		for i := 0; i < n; i++ {
			if got := do(t, h, 0, c.token); got != c.want {
				t.Fatalf("%s: %v; want %v", c.name, got, c.want)
			}
		}
		m1, g1 := counter("jtiguard_test_mallocs"), counter("jtiguard_test_numgc")
		t.Logf("%s: %d allocations and %d collections in %d requests", c.name, m1-m0, g1-g0, n)
		if m1 != m0 || g1 != g0 {
			t.Errorf("%s: %d allocations and %d collections in %d requests; want none", c.name, m1-m0, g1-g0, n)
		}
	}
}
