package e2e

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
)

// TestEnvoy133LargeListUpdatesKeepVMsAlive publishes 100k-entry lists one after another
// (as the syncer does when the list changes) and sends requests in between, on both WASI
// surfaces. Each request makes every VM read the new snapshot from shared data: the host
// asks the module for a 1.2 MB buffer through proxy_on_memory_allocate.
//
// It guards the fix for a trap found here: a GC cycle (often started inside
// proxy_on_memory_allocate) makes the Go runtime call poll_oneoff, which Envoy 1.33 answers
// with ENOSYS (fatal to the runtime) and forbids inside proxy_on_memory_allocate, so the VM
// trapped and its worker answered 503 wasm_fail_stream from then on. `make build` now answers
// poll_oneoff inside the module (wasmstub.EnvoyStubs); a module without that stub fails here.
func TestEnvoy133LargeListUpdatesKeepVMsAlive(t *testing.T) {
	t.Parallel() // no timing asserted, heavy on the CPU (doc.go)
	t.Run("feed", testEnvoy133FeedUpdates)
	for _, g := range []harness.WASIGeneration{harness.WASICurrent, harness.WASIEnvoy133} {
		t.Run(g.String(), func(t *testing.T) {
			h := startHarness(t, harness.NewConfig().WithWorkers(2).WithWASI(g).
				WithPluginConfig(pluginConfig(cfgOpts{noSync: true})).WithTimers(false).
				WithEnv(map[string]string{"GOGC": "50"}))
			tok := token("e2e-large-ok")
			for round := range 12 {
				l := localproxytest.List{JTIs: make([]string, 100_000)}
				for i := range l.JTIs {
					l.JTIs[i] = fmt.Sprintf("r%d-%d", round, i)
				}
				l.JTIs[0] = "e2e-large-revoked"
				if err := localproxytest.Publish(localproxytest.HarnessStore{H: h}, prefix, l); err != nil {
					t.Fatal(err)
				}
				for vm := range h.Workers() {
					if err := h.VM(vm).Failed(); err != nil {
						t.Fatalf("round %d: VM %d failed: %v%s", round, vm, err, envoy133Hint(g))
					}
					if got := do(t, h, vm, tok); got != allowed {
						t.Fatalf("round %d, VM %d: %v; want continue", round, vm, got)
					}
					if got := do(t, h, vm, token("e2e-large-revoked")); got != revoked {
						t.Fatalf("round %d, VM %d: revoked token: %v", round, vm, got)
					}
				}
			}
		})
	}
}

// testEnvoy133FeedUpdates drives the same growth through the syncer: the lease holder parses
// each feed response (deltas and 100k snapshots), publishes the new snapshot and reads it back
// from shared data in the callout's callback, which is where the soak first trapped. On the
// current surface only: on envoy-1.33 the soak (TestSoakEnvoy133, make test-long) drives this
// very growth through the same syncer, with a million requests beside it.
func testEnvoy133FeedUpdates(t *testing.T) {
	for _, g := range []harness.WASIGeneration{harness.WASICurrent} {
		t.Run(g.String(), func(t *testing.T) {
			feed := newGrowingFeed(t)
			h := startHarness(t, harness.NewConfig().WithWorkers(2).WithWASI(g).
				WithPluginConfig(pluginConfig(cfgOpts{})).WithTimers(false).
				WithCluster(cluster, strings.TrimPrefix(feed.URL, "http://")).
				WithEnv(map[string]string{"GOGC": "50"}))
			tok := token("e2e-feed-ok")
			for round := range 3 * soakListTarget / soakGrowth {
				tickRound(t, h, interval)
				for vm := range h.Workers() {
					if err := h.VM(vm).Failed(); err != nil {
						t.Fatalf("round %d (list %d entries): VM %d failed: %v%s", round, feed.size(), vm, err, envoy133Hint(g))
					}
					if got := do(t, h, vm, tok); got != allowed {
						t.Fatalf("round %d, VM %d: %v; want continue", round, vm, got)
					}
				}
			}
			if n := gauge(h, "blocklist.entries"); n != soakListTarget {
				t.Fatalf("list holds %d entries; want %d", n, soakListTarget)
			}
		})
	}
}

// envoy133Hint names the known cause when a VM fails on the envoy-1.33 surface, so the
// failure says why without reading the test's source.
func envoy133Hint(g harness.WASIGeneration) string {
	if g != harness.WASIEnvoy133 {
		return ""
	}
	return "\non envoy-1.33 a VM trap usually means the module still imports poll_oneoff: a Go GC cycle" +
		" calls it, Envoy 1.33 answers ENOSYS (runtime.throw) and forbids it inside proxy_on_memory_allocate;" +
		" is the module stubbed with wasmstub.EnvoyStubs, as `make build` does? (see docs/local-proxy.md)"
}
