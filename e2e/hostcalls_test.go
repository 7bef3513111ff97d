package e2e

import (
	"context"
	"maps"
	"testing"
	"time"

	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/experimental"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/internal/moduletest"
	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
)

// TestRequestPathHostCalls counts, in the real module, the host calls each steady-state
// request makes and the module's entries (callbacks, and the allocator the host re-enters
// while it hands over a header map): the floor under the request path is paid per call
// (docs/benchmarks.md, "The floor under a request"), so a change that adds one shows here.
// The generation record read (at most every 100 ms, listRecheck) is the one call that may
// come and go; it is bounded by the time the requests took.
func TestRequestPathHostCalls(t *testing.T) {
	var counting bool
	counts := map[string]int{}
	ctx := experimental.WithFunctionListenerFactory(context.Background(), callCounter{on: &counting, counts: counts})
	h, err := harness.New(ctx, moduletest.Module(t), harness.NewConfig().WithWorkers(1).WithWASI(harness.WASICurrent).
		WithPluginConfig(pluginConfig(cfgOpts{noSync: true})).WithTimers(false))
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close(ctx)
	if err := localproxytest.Publish(localproxytest.HarnessStore{H: h}, prefix, decisionList()); err != nil {
		t.Fatal(err)
	}
	floor := map[string]int{
		"proxy_on_request_headers":   1, // the callback
		"proxy_get_header_map_pairs": 1, // the headers, in one call
		"proxy_on_memory_allocate":   1, // the host re-entering for the headers' memory
	}
	with := func(extra ...string) map[string]int {
		m := maps.Clone(floor)
		for _, e := range extra {
			m[e]++
		}
		return m
	}
	const clock = "proxy_get_current_time_nanoseconds"
	for _, c := range []struct {
		name  string
		token string
		want  outcome
		calls map[string]int
	}{
		{"no token", "", allowed, floor}, // no clock, no list
		{"cache hit", token("calls-valid"), allowed, with(clock)},
		{"revoked", token("revoked-jti"), revoked, with(clock, "proxy_send_local_response")},
	} {
		for range 3 { // warm up: the token cached, buffers grown
			do(t, h, 0, c.token)
		}
		const n = 200
		clear(counts)
		start := time.Now()
		for range n {
			s, err := h.NewStream(ctx, 0)
			if err != nil {
				t.Fatal(err)
			}
			hs := harness.RequestHeadersFor(harness.Request{Path: "/api"})
			if c.token != "" {
				hs = append(hs, bearer(c.token)...)
			}
			counting = true
			_, err = s.RequestHeaders(ctx, hs, true)
			counting = false
			if err != nil {
				t.Fatal(err)
			}
			var got outcome
			if lr := s.LocalResponse(); lr != nil {
				got = outcome{Status: lr.Status, Body: string(lr.Body)}
			} else {
				got = allowed
			}
			if got != c.want {
				t.Fatalf("%s: %v; want %v", c.name, got, c.want)
			}
			if err := s.End(ctx); err != nil {
				t.Fatal(err)
			}
		}
		elapsed := time.Since(start)
		// Reads of the generation record, each with its view's allocation: at most one per
		// listRecheck (100 ms) of the run, and one more for the start.
		rereads := counts["proxy_get_shared_data"]
		if limit := int(elapsed/(100*time.Millisecond)) + 1; rereads > limit {
			t.Errorf("%s: %d generation record reads in %v; want at most %d", c.name, rereads, elapsed, limit)
		}
		delete(counts, "proxy_get_shared_data")
		counts["proxy_on_memory_allocate"] -= rereads
		want := map[string]int{}
		for k, v := range c.calls {
			want[k] = v * n
		}
		if !maps.Equal(counts, want) {
			t.Errorf("%s: %d requests made %v; want %v (%v each)", c.name, n, counts, want, c.calls)
		}
	}
}

// callCounter counts the calls into and out of the module (the host's functions and the
// module's exports) while *on.
type callCounter struct {
	on     *bool
	counts map[string]int
}

func (f callCounter) NewFunctionListener(def api.FunctionDefinition) experimental.FunctionListener {
	if _, name, ok := def.Import(); ok {
		return callListener{f, name}
	}
	if names := def.ExportNames(); len(names) > 0 {
		return callListener{f, names[0]}
	}
	if def.ModuleName() != "" && def.GoFunction() != nil {
		return callListener{f, def.Name()} // a host module's function
	}
	return nil
}

type callListener struct {
	f    callCounter
	name string
}

func (l callListener) Before(context.Context, api.Module, api.FunctionDefinition, []uint64, experimental.StackIterator) {
	if *l.f.on {
		l.f.counts[l.name]++
	}
}
func (callListener) After(context.Context, api.Module, api.FunctionDefinition, []uint64) {}
func (callListener) Abort(context.Context, api.Module, api.FunctionDefinition, error)    {}
