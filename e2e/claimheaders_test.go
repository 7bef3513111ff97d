package e2e

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/internal/moduletest"
	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
)

// claimHeadersConfig is pluginConfig (no sync) with jwt.claims_to_headers sub → x-user-id and
// role → x-role, and decision_property.
func claimHeadersConfig() []byte {
	var m map[string]any
	if err := json.Unmarshal(pluginConfig(cfgOpts{noSync: true}), &m); err != nil {
		panic(err)
	}
	m["jwt"].(map[string]any)["claims_to_headers"] = []map[string]string{
		{"claim": "sub", "header": "x-user-id"}, {"claim": "role", "header": "x-role"}}
	m["decision_property"] = "jtiguard_decision"
	b, _ := json.Marshal(m)
	return b
}

// upstreamValues is every value of name in the headers that went upstream.
func upstreamValues(res *harness.Result, name string) []string {
	var out []string
	for _, kv := range res.RequestHeaders {
		if kv[0] == name {
			out = append(out, kv[1])
		}
	}
	return out
}

// TestClaimsToHeadersOnTheModule: on the real module, the upstream sees the verified token's
// claims in the mapped headers, and never a client's header of those names: with a token,
// without one, and on a cache hit. The harness, like a host without proxy_set_property,
// answers Unimplemented to the decision property: logged once, and the requests go on.
func TestClaimsToHeadersOnTheModule(t *testing.T) {
	h := startHarness(t, harness.NewConfig().WithWorkers(1).WithWASI(harness.WASICurrent).
		WithPluginConfig(claimHeadersConfig()).WithTimers(false).WithLogLevel(harness.LogInfo))
	if err := localproxytest.Publish(localproxytest.HarnessStore{H: h}, prefix, decisionList()); err != nil {
		t.Fatal(err)
	}
	c := claims("claims-jti", "user-7")
	c["role"] = "admin"
	tok := localproxytest.HS256(secret, c)
	forged := harness.Pairs{{"x-user-id", "root"}, {"x-role", "superuser"}, {"x-user-id", "root2"}}
	run := func(headers harness.Pairs) *harness.Result {
		t.Helper()
		res, err := h.Do(context.Background(), harness.Request{Path: "/api", Headers: headers})
		if err != nil {
			t.Fatal(err)
		}
		if res.VMFailure != nil {
			t.Fatal(res.VMFailure)
		}
		return res
	}
	for i := range 3 { // the first verifies the token, the others hit the cache
		res := run(append(bearer(tok), forged...))
		if res.LocalResponse != nil {
			t.Fatalf("request %d: %d %s", i, res.LocalResponse.Status, res.LocalResponse.Body)
		}
		if got := upstreamValues(res, "x-user-id"); len(got) != 1 || got[0] != "user-7" {
			t.Fatalf("request %d: x-user-id upstream = %q; want [user-7]", i, got)
		}
		if got := upstreamValues(res, "x-role"); len(got) != 1 || got[0] != "admin" {
			t.Fatalf("request %d: x-role upstream = %q; want [admin]", i, got)
		}
	}
	res := run(forged)
	if res.LocalResponse != nil || len(upstreamValues(res, "x-user-id"))+len(upstreamValues(res, "x-role")) != 0 {
		t.Fatalf("no token, forged headers: %v; want them removed", res)
	}
	if res := run(append(bearer(token("revoked-jti")), forged...)); res.LocalResponse == nil || res.LocalResponse.Status != 401 {
		t.Fatalf("revoked token: %v; want 401", res)
	}
	if n := strings.Count(h.Logs().String(), "cannot set decision_property"); n != 1 {
		t.Fatalf("decision_property failure logged %d times; want once", n)
	}
}

// TestClaimsToHeadersAllocateNothingOnACacheHit: with claims_to_headers, a token seen before
// costs the header calls and no Go allocation inside the module (built with
// -tags jtiguard_testexports, as TestRequestPathAllocatesNothingInTheModule).
func TestClaimsToHeadersAllocateNothingOnACacheHit(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	wasm := moduletest.Build(t, "jtiguard_testexports")
	h, err := harness.New(ctx, wasm, harness.NewConfig().WithWorkers(1).WithWASI(harness.WASICurrent).
		WithPluginConfig(claimHeadersConfig()).WithTimers(false))
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
	c := claims("alloc-claims", "user-7")
	c["role"] = "admin"
	tok := localproxytest.HS256(secret, c)
	headers := append(bearer(tok), harness.Pairs{{"x-user-id", "forged"}}...)
	for _, tc := range []struct {
		name    string
		headers harness.Pairs
	}{{"cache hit", headers}, {"no token, forged header", harness.Pairs{{"x-user-id", "forged"}}}} {
		request := func() {
			res, err := h.Do(ctx, harness.Request{Path: "/api", Headers: tc.headers})
			if err != nil || res.VMFailure != nil || res.LocalResponse != nil {
				t.Fatalf("%s: %v %v", tc.name, err, res)
			}
			if got := upstreamValues(res, "x-user-id"); len(got) > 1 || len(got) == 1 && got[0] != "user-7" {
				t.Fatalf("%s: x-user-id upstream = %q", tc.name, got)
			}
		}
		for range 50 { // warm up
			request()
		}
		const n = 1000
		m0, g0 := counter("jtiguard_test_mallocs"), counter("jtiguard_test_numgc")
		for range n {
			request()
		}
		m1, g1 := counter("jtiguard_test_mallocs"), counter("jtiguard_test_numgc")
		t.Logf("%s: %d allocations and %d collections in %d requests", tc.name, m1-m0, g1-g0, n)
		if m1 != m0 || g1 != g0 {
			t.Errorf("%s: %d allocations and %d collections in %d requests; want none", tc.name, m1-m0, g1-g0, n)
		}
	}
}
