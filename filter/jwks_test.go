package filter

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

var secondP256 = sync.OnceValue(func() *ecdsa.PrivateKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	return k
})

// jwksConfig is an ES256 deployment whose keys come from a JWKS endpoint, with the test HMAC
// secret inline beside them, and no revocation sync (the test publishes the list).
func jwksConfig(extra string) string {
	return `{"jwt":{"algorithms":["HS256","ES256"],"hmac_secrets":[{"kid":"inline","secret":` + jsonString(string(testKeys().hs)) + `}],` +
		`"remote_jwks":{"cluster":"idp","authority":"idp.example","path":"/jwks.json","headers":{"authorization":"Bearer idp-secret"}}},` +
		`"sync":{"cluster":""},"max_staleness":"0s"` + extra + `}`
}

// answerJWKS answers the last callout with a JWKS.
func (f *fixture) answerJWKS(status string, doc string) {
	f.t.Helper()
	calls := f.host.GetCalloutAttributesFromContext(proxytest.PluginContextID)
	if len(calls) == 0 {
		f.t.Fatal("no callout made")
	}
	f.host.CallOnHttpCallResponse(calls[len(calls)-1].CalloutID, [][2]string{{":status", status}, {"content-type", "application/json"}}, nil, []byte(doc))
}

func (f *fixture) callouts() int {
	return len(f.host.GetCalloutAttributesFromContext(proxytest.PluginContextID))
}

// es256 signs a token valid for two hours from testNow (the tests move through refreshes).
func es256(t *testing.T, kid, jti string, key any) string {
	c := claimsAt(testNow, jti)
	c["exp"] = testNow.Add(2 * time.Hour).Unix()
	return sign(t, jwt.SigningMethodES256, key, c, map[string]any{"kid": kid})
}

// TestRemoteJWKSThroughTheEmulator: the filter compiled natively, with the SDK's host: no
// fetch at start, fail_mode closed until the first key set (inline keys verify meanwhile),
// rotation, and a token verified with a removed key forgotten by the cache.
func TestRemoteJWKSThroughTheEmulator(t *testing.T) {
	k := testKeys()
	f := start(t, jwksConfig(""))
	if f.callouts() != 0 {
		t.Fatal("fetched in OnPluginStart (Envoy's configuration canary would hold the lease)")
	}
	if p := f.host.GetTickPeriod(); p != 100 {
		t.Fatalf("tick period before the first key set = %d ms; want 100", p)
	}
	f.publish("jtiguard.", testNow, []revokedEntry{{jti: "revoked"}}, nil) // ticks: the fetch goes out
	calls := f.host.GetCalloutAttributesFromContext(proxytest.PluginContextID)
	if len(calls) != 1 || calls[0].Upstream != "idp" || headerValue(calls[0].Headers, "authorization") != "Bearer idp-secret" ||
		headerValue(calls[0].Headers, ":path") != "/jwks.json" {
		t.Fatalf("callouts after the first tick = %+v; want one to idp", calls)
	}
	old1 := es256(t, "k1", "old", k.p256)
	new2 := es256(t, "k2", "new", secondP256())
	inline := sign(t, jwt.SigningMethodHS256, k.hs, claimsAt(testNow, "inline"), map[string]any{"kid": "inline"})
	unavailable := `{"msg":"Token revocation list unavailable"}`

	if _, resp := f.request(bearer(old1)); resp == nil || resp.StatusCode != 503 || string(resp.Data) != unavailable {
		t.Fatalf("before any key set: %+v; want 503 (fail_mode closed)", resp)
	}
	if _, resp := f.request(bearer(inline)); resp != nil {
		t.Fatalf("inline HS256 before any key set: %d %s; want it through", resp.StatusCode, resp.Data)
	}
	// A revoked token is refused as revoked, keys or no keys.
	if _, resp := f.request(bearer(es256(t, "k1", "revoked", k.p256))); resp == nil || resp.StatusCode != 401 {
		t.Fatalf("revoked token before any key set: %+v; want 401", resp)
	}

	f.answerJWKS("200", jwksOf(t, jwkEC("k1", "ES256", &k.p256.PublicKey)))
	if _, resp := f.request(bearer(old1)); resp != nil {
		t.Fatalf("k1 token with k1 fetched: %d %s", resp.StatusCode, resp.Data)
	}
	f.host.Tick()
	if p := f.host.GetTickPeriod(); p != 1000 {
		t.Fatalf("tick period once the key set is held = %d ms; want 1000", p)
	}

	// Rotation: k2 appears; its first token is refused and fetches early.
	f.now = f.now.Add(time.Minute)
	if _, resp := f.request(bearer(new2)); resp == nil || resp.StatusCode != 422 {
		t.Fatalf("k2 token before it is fetched: %+v; want 422", resp)
	}
	f.host.Tick()
	if f.callouts() != 2 {
		t.Fatalf("callouts after a kid miss = %d; want 2 (an early fetch)", f.callouts())
	}
	f.answerJWKS("200", jwksOf(t, jwkEC("k1", "ES256", &k.p256.PublicKey), jwkEC("k2", "ES256", &secondP256().PublicKey)))
	for _, tok := range []string{old1, new2, inline} {
		if _, resp := f.request(bearer(tok)); resp != nil {
			t.Fatalf("in the overlap, %.20s: %d %s", tok, resp.StatusCode, resp.Data)
		}
	}
	// k1 removed: old1 was verified (and cached) before; it must stop verifying at once.
	f.now = f.now.Add(11 * time.Minute)
	f.host.Tick()
	f.answerJWKS("200", jwksOf(t, jwkEC("k2", "ES256", &secondP256().PublicKey)))
	if _, resp := f.request(bearer(old1)); resp == nil || resp.StatusCode != 422 {
		t.Fatalf("k1 token after k1 was removed: %+v; want 422", resp)
	}
	if _, resp := f.request(bearer(new2)); resp != nil {
		t.Fatalf("k2 token: %d %s", resp.StatusCode, resp.Data)
	}
	// A broken endpoint keeps the set.
	f.now = f.now.Add(11 * time.Minute)
	f.host.Tick()
	f.answerJWKS("500", "")
	if _, resp := f.request(bearer(new2)); resp != nil {
		t.Fatalf("after a 500: %d %s", resp.StatusCode, resp.Data)
	}
	f.host.Tick()
	for name, want := range map[string]uint64{"jwks.fetches": 4, "jwks.fetch_successes": 3, "jwks.fetch_failures": 1,
		"jwks.early_fetches": 1, "jwks.fail_mode_closed": 2 /* one per route kind validated */, "requests.invalid_token": 3} {
		if got, _ := f.host.GetCounterMetric("jtiguard." + name); got != want {
			t.Errorf("%s = %d; want %d", name, got, want)
		}
	}
	logs := strings.Join(append(f.host.GetInfoLogs(), f.host.GetWarnLogs()...), "\n")
	if strings.Contains(logs, "idp-secret") || strings.Contains(logs, old1) {
		t.Fatal("a log carries the endpoint's credential or a token")
	}
}

// TestRemoteJWKSFailOpen: with fail_mode open, before any key set, a token the inline keys
// cannot verify passes when its claims hold (and is counted), and is still refused for what
// its claims say; a revoked one is refused.
func TestRemoteJWKSFailOpen(t *testing.T) {
	k := testKeys()
	f := start(t, jwksConfig(`,"fail_mode":"open"`))
	f.publish("jtiguard.", testNow, []revokedEntry{{jti: "revoked"}}, nil)
	expired := func() string {
		c := claimsAt(testNow, "exp")
		c["exp"] = testNow.Add(-time.Second).Unix()
		return sign(t, jwt.SigningMethodES256, k.p256, c, map[string]any{"kid": "k1"})
	}()
	cases := []struct {
		tok    string
		status uint32
	}{
		{es256(t, "k1", "j", k.p256), 0},
		{expired, 401},
		{es256(t, "k1", "revoked", k.p256), 401},
		{"eyJhbGciOiJub25lIn0.eyJqdGkiOiJqIn0.", 422},
	}
	for i, c := range cases {
		_, resp := f.request(bearer(c.tok))
		if c.status == 0 && resp != nil || c.status != 0 && (resp == nil || resp.StatusCode != c.status) {
			t.Errorf("case %d: %+v; want %d", i, resp, c.status)
		}
	}
	f.host.Tick()
	// Counted per verification: the valid token once (then cached), the expired one for
	// each route kind it was validated for (access and refresh).
	if got, _ := f.host.GetCounterMetric("jtiguard.jwks.fail_mode_open"); got != 3 {
		t.Fatalf("fail_mode_open = %d; want 3", got)
	}
	// Once a key set arrives, the passed token (cached) is judged again by its signature.
	f.answerJWKS("200", jwksOf(t, jwkEC("k1", "ES256", &secondP256().PublicKey)))
	if _, resp := f.request(bearer(cases[0].tok)); resp == nil || resp.StatusCode != 422 {
		t.Fatalf("after the key set: %+v; want 422 (signed by another key)", resp)
	}
}

func TestRemoteJWKSConfig(t *testing.T) {
	cases := []struct{ name, cfg, want string }{
		{"remote keys only", `{"jwt":{"algorithms":["RS256"],"remote_jwks":{"cluster":"idp","authority":"idp"}}}`, ""},
		{"field errors named", `{"jwt":{"algorithms":["RS256"],"remote_jwks":{"cluster":"","authority":"idp","timeout":"0s"}}}`,
			"jwt.remote_jwks.cluster: must name"},
		{"unknown field", `{"jwt":{"algorithms":["RS256"],"remote_jwks":{"cluster":"c","authority":"a","url":"https://x"}}}`,
			`jwt.remote_jwks: json: unknown field "url"`},
		{"with trust_upstream", `{"jwt":{"trust_upstream":{"payload_in_metadata":"payload"},"remote_jwks":{"cluster":"c","authority":"a"}}}`,
			"remote_jwks must be empty"},
		{"inline keys stay strict", `{"jwt":{"algorithms":["RS256"],"hmac_secrets":[{"secret":"abcdefghijklmnopqrstuvwxyz0123456789"}],"remote_jwks":{"cluster":"c","authority":"a"}}}`,
			"a HMAC secret is configured but no algorithm that uses it is allowed"},
		{"alg none", `{"jwt":{"algorithms":["none"],"remote_jwks":{"cluster":"c","authority":"a"}}}`, `unknown or forbidden algorithm "none"`},
	}
	for _, c := range cases {
		cfg, err := ParseConfig([]byte(c.cfg), func(string) string { return "" })
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want == "" && (cfg.JWT.RemoteJWKS == nil || cfg.JWT.RemoteJWKS.RefreshInterval.D() != 10*time.Minute):
			t.Errorf("%s: remote_jwks not parsed with its defaults: %+v", c.name, cfg.JWT.RemoteJWKS)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrInvalidConfig)):
			t.Errorf("%s: %v; want %q", c.name, err, c.want)
		}
	}
	// A bad section fails the plugin's start.
	opt := proxytest.NewEmulatorOption().WithVMContext(NewVMContext()).
		WithPluginConfiguration([]byte(`{"jwt":{"algorithms":["RS256"],"remote_jwks":{"cluster":"c"}}}`))
	host, reset := proxytest.NewHostEmulator(opt)
	defer reset()
	if st := host.StartPlugin(); st != types.OnPluginStartStatusFailed {
		t.Fatalf("StartPlugin = %v; want failed", st)
	}
	if logs := strings.Join(host.GetCriticalLogs(), "\n"); !strings.Contains(logs, "jwt.remote_jwks.authority") {
		t.Fatalf("critical logs = %q; want the field named", logs)
	}
}

// TestJWKSDocConfigsParse: every JSON configuration in docs/jwks.md passes the parser.
func TestJWKSDocConfigsParse(t *testing.T) {
	doc, err := os.ReadFile("../docs/jwks.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```json\n(.*?)```").FindAllSubmatch(doc, -1)
	if len(blocks) == 0 {
		t.Fatal("no json block in docs/jwks.md")
	}
	for i, b := range blocks {
		if _, err := ParseConfig(b[1], func(string) string { return "a-secret-from-the-environment-32-bytes!" }); err != nil {
			t.Errorf("docs/jwks.md json block %d: %v", i+1, err)
		}
	}
}
