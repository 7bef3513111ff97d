package e2e

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/harness"
	"github.com/jtiguard/jtiguard/localproxy/localproxytest"
)

// withRules is pluginConfig(noSync) with missing_token missing and per-route rules: /public
// skips validation, /auth/refresh takes refresh tokens only.
func withRules(t testing.TB, missing string) []byte {
	var m map[string]any
	if err := json.Unmarshal(pluginConfig(cfgOpts{noSync: true}), &m); err != nil {
		t.Fatal(err)
	}
	m["missing_token"] = missing
	m["rules"] = []map[string]any{
		{"match": map[string]any{"path_prefix": "/public"}, "skip": true},
		{"match": map[string]any{"path": "/auth/refresh", "methods": []string{"POST"}}, "token_types": []string{"refresh"}},
	}
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRulesOnTheModule: per-route rules in the real module: a skipped route needs no token
// but still refuses a revoked one, a refresh-only route refuses an access token, and a path
// not in normal form is refused.
func TestRulesOnTheModule(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	h := startHarness(t, harness.NewConfig().WithWorkers(1).WithWASI(harness.WASICurrent).
		WithPluginConfig(withRules(t, "deny")).WithTimers(false))
	if err := localproxytest.Publish(localproxytest.HarnessStore{H: h}, prefix, decisionList()); err != nil {
		t.Fatal(err)
	}
	refresh := func() string {
		c := claims("rules-refresh", "user-1")
		c["type"] = "refresh"
		return localproxytest.HS256(secret, c)
	}()
	for _, tc := range []struct {
		name, method, path, token string
		want                      uint32 // 0: continue
	}{
		{"skip, no token", "GET", "/public/x", "", 0},
		{"skip, a revoked token", "GET", "/public/x", token("revoked-jti"), 401},
		{"top level, no token", "GET", "/api", "", 401},
		{"refresh route, an access token", "POST", "/auth/refresh", token("rules-access"), 422},
		{"refresh route, a refresh token", "POST", "/auth/refresh", refresh, 0},
		{"a dot segment", "GET", "/public/../api", "", 422},
	} {
		r := harness.Request{Method: tc.method, Path: tc.path}
		if tc.token != "" {
			r.Headers = bearer(tc.token)
		}
		res, err := h.Do(ctx, r)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got := uint32(0)
		if res.LocalResponse != nil {
			got = res.LocalResponse.Status
		}
		if got != tc.want {
			t.Errorf("%s: %d; want %d", tc.name, got, tc.want)
		}
	}
}
