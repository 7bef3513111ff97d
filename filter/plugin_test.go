package filter

import (
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jtiguard/jtiguard/blocklistsync"
	"github.com/jtiguard/jtiguard/internal/abi"
)

// fixture is one plugin running in the SDK's host emulator, with a clock the test moves.
type fixture struct {
	t    *testing.T
	host proxytest.HostEmulator
	now  time.Time
	gen  uint64
	// keyed marks the lists publish writes as keyed by issuer.
	keyed bool
}

func start(t *testing.T, config string) *fixture {
	t.Helper()
	f := &fixture{t: t, now: testNow}
	opt := proxytest.NewEmulatorOption().
		WithVMContext(newVMContext(func() time.Time { return f.now })).
		WithPluginConfiguration([]byte(config))
	host, reset := proxytest.NewHostEmulator(opt)
	t.Cleanup(reset)
	f.host = host
	if st := host.StartPlugin(); st != types.OnPluginStartStatusOK {
		t.Fatalf("StartPlugin = %v; critical logs: %q", st, host.GetCriticalLogs())
	}
	return f
}

// testListHasher is the hash key of the lists tests publish.
var testListHasher, _ = blocklistsync.NewHasher()

// setShared writes like a host-side writer would, honouring the emulator's CAS.
func setShared(t *testing.T, key string, value []byte) {
	t.Helper()
	_, cas, _ := abi.GetSharedData(key)
	if err := abi.SetSharedData(key, value, cas); err != nil {
		t.Fatalf("set %s: %v", key, err)
	}
}

type revokedEntry struct {
	iss, jti string
	exp      time.Time // zero: none
	// claim makes it a claim entry: every token whose claim named claim is jti.
	claim string
}

type cutoffEntry struct {
	iss, sub string
	before   time.Time
}

// publish writes a list into shared data as the syncer would, fresh as of lastSuccess.
func (f *fixture) publish(prefix string, lastSuccess time.Time, entries []revokedEntry, cutoffs []cutoffEntry) {
	f.t.Helper()
	f.gen++
	var l blocklistsync.List
	for _, e := range entries {
		var exp uint32
		if !e.exp.IsZero() {
			exp = uint32(e.exp.Unix())
		}
		if e.claim != "" {
			if err := l.AddClaim(testListHasher, e.iss, e.claim, e.jti, exp); err != nil {
				f.t.Fatal(err)
			}
			continue
		}
		l.AddToken(testListHasher, e.iss, e.jti, exp)
	}
	for _, c := range cutoffs {
		l.AddCutoff(testListHasher, c.iss, c.sub, uint32(c.before.Unix()), 0)
	}
	l.Normalize(0)
	enc, err := l.Encode(blocklistsync.Meta{Generation: f.gen, Built: lastSuccess, Hasher: testListHasher, KeyedByIssuer: f.keyed})
	if err != nil {
		f.t.Fatal(err)
	}
	keys := blocklistsync.KeysFor(prefix)
	setShared(f.t, keys.Snapshot, enc.Snapshot)
	setShared(f.t, keys.Generation, blocklistsync.Generation{Number: f.gen, LastSuccess: lastSuccess, Entries: uint32(len(l.Entries))}.MarshalBinary())
	// Requests re-read the list at most every listRecheck; a tick reads it at once.
	f.host.Tick()
}

// request runs one request's headers through the filter.
func (f *fixture) request(headers [][2]string) (types.Action, *proxytest.LocalHttpResponse) {
	id := f.host.InitializeHttpContext()
	all := [][2]string{{":method", "GET"}, {":authority", "app"}}
	if headerValue(headers, ":path") == "" {
		all = append(all, [2]string{":path", "/api"})
	}
	all = append(all, headers...)
	action := f.host.CallOnRequestHeaders(id, all, true)
	resp := f.host.GetSentLocalResponse(id)
	f.host.CompleteHttpContext(id)
	return action, resp
}

func bearer(tok string) [][2]string { return [][2]string{{"authorization", "Bearer " + tok}} }

func hsConfig(extra string) string {
	return `{"jwt":{"hmac_secrets":[{"secret":` + jsonString(string(testKeys().hs)) + `}]},"sync":{"cluster":""}` + extra + `}`
}

func TestDecisions(t *testing.T) {
	now := testNow
	valid := hs256(t, claimsAt(now, "jti-ok"))
	revokedTok := hs256(t, claimsAt(now, "jti-revoked"))
	lapsedTok := hs256(t, claimsAt(now, "jti-lapsed"))
	expired := func() string {
		c := claimsAt(now, "jti-old")
		c["exp"] = now.Add(-time.Second).Unix()
		return hs256(t, c)
	}()
	cutoffOld := func() string { // issued an hour before the cutoff
		c := claimsAt(now, "jti-c1")
		c["sub"], c["iat"], c["nbf"] = "user-cut", now.Add(-2*time.Hour).Unix(), now.Add(-2*time.Hour).Unix()
		return hs256(t, c)
	}()
	cutoffNew := func() string {
		c := claimsAt(now, "jti-c2")
		c["sub"] = "user-cut"
		return hs256(t, c)
	}()
	otherKey := sign(t, jwt.SigningMethodHS256, testKeys().hsOther, claimsAt(now, "jti-ok"), nil)
	refreshTok := func() string {
		c := claimsAt(now, "jti-refresh")
		c["type"] = "refresh"
		return hs256(t, c)
	}()
	untyped := func() string {
		c := claimsAt(now, "jti-untyped")
		delete(c, "type")
		return hs256(t, c)
	}()
	noneTok, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claimsAt(now, "x")).SignedString(jwt.UnsafeAllowNoneSignatureType)

	entries := []revokedEntry{{jti: "jti-revoked", exp: now.Add(time.Hour)}, {jti: "jti-lapsed", exp: now.Add(-time.Second)}}
	cutoffs := []cutoffEntry{{sub: "user-cut", before: now.Add(-time.Hour)}}

	type listState int
	const (
		fresh listState = iota
		none
		stale
	)
	tests := []struct {
		name       string
		extra      string // appended to the config object
		list       listState
		headers    [][2]string
		wantStatus uint32 // 0: continue
		wantBody   string
	}{
		{name: "no token passes by default", headers: nil},
		{name: "no token denied", extra: `,"missing_token":"deny"`, headers: nil, wantStatus: 401, wantBody: `{"msg":"Missing Authorization Header"}`},
		{name: "valid token passes", headers: bearer(valid)},
		{name: "revoked token", headers: bearer(revokedTok), wantStatus: 401, wantBody: `{"msg":"Token has been revoked"}`},
		{name: "revoked in a cookie", extra: `,"token":{"locations":["cookies"]}`, headers: [][2]string{{"cookie", "access_token_cookie=" + revokedTok}}, wantStatus: 401, wantBody: `{"msg":"Token has been revoked"}`},
		{name: "revoked in the query", extra: `,"token":{"locations":["query_string"]}`, headers: [][2]string{{":path", "/x?jwt=" + revokedTok}}, wantStatus: 401, wantBody: `{"msg":"Token has been revoked"}`},
		{name: "entry past its expiry no longer counts", headers: bearer(lapsedTok)},
		{name: "subject cutoff revokes older tokens", headers: bearer(cutoffOld), wantStatus: 401, wantBody: `{"msg":"Token has been revoked"}`},
		{name: "subject cutoff spares newer tokens", headers: bearer(cutoffNew)},
		{name: "fail closed before the first list", list: none, headers: bearer(valid), wantStatus: 503, wantBody: `{"msg":"Token revocation list unavailable"}`},
		{name: "fail open before the first list", extra: `,"fail_mode":"open"`, list: none, headers: bearer(valid)},
		{name: "fail closed on a stale list", list: stale, headers: bearer(valid), wantStatus: 503, wantBody: `{"msg":"Token revocation list unavailable"}`},
		{name: "no token needs no list", list: none, headers: nil},
		{name: "expired token", headers: bearer(expired), wantStatus: 401, wantBody: `{"msg":"Token has expired"}`},
		{name: "bad signature", headers: bearer(otherKey), wantStatus: 422, wantBody: `{"msg":"Signature verification failed"}`},
		{name: "alg none", headers: bearer(noneTok), wantStatus: 422, wantBody: `{"msg":"The specified alg value is not allowed"}`},
		{name: "malformed token", headers: bearer("abc.def"), wantStatus: 422, wantBody: `{"msg":"Not enough segments"}`},
		{name: "bad header shape", headers: [][2]string{{"authorization", "Bearer a b"}}, wantStatus: 422, wantBody: `{"msg":"Bad Authorization header. Expected 'Authorization: Bearer <JWT>'"}`},
		{name: "token too large", extra: `,"token":{"max_bytes":64}`, headers: bearer(valid), wantStatus: 422, wantBody: `{"msg":"Token is too large"}`},
		{name: "invalid token passes when another filter owns authentication", extra: `,"invalid_token":"allow"`, headers: bearer(otherKey)},
		{name: "refresh token where only access tokens are allowed", extra: `,"jwt":{"token_types":["access"],"hmac_secrets":[{"secret":` + jsonString(string(testKeys().hs)) + `}]}`,
			headers: bearer(refreshTok), wantStatus: 422, wantBody: `{"msg":"Only non-refresh tokens are allowed"}`},
		{name: "access token where only refresh tokens are allowed", extra: `,"jwt":{"token_types":["refresh"],"hmac_secrets":[{"secret":` + jsonString(string(testKeys().hs)) + `}]}`,
			headers: bearer(valid), wantStatus: 422, wantBody: `{"msg":"Only refresh tokens are allowed"}`},
		{name: "no type claim is an access token", extra: `,"jwt":{"token_types":["refresh"],"hmac_secrets":[{"secret":` + jsonString(string(testKeys().hs)) + `}]}`,
			headers: bearer(untyped), wantStatus: 422, wantBody: `{"msg":"Only refresh tokens are allowed"}`},
		{name: "either kind by default", headers: bearer(refreshTok)},
		{name: "custom revoked response", extra: `,"responses":{"message_key":"error","revoked":{"status":403,"message":"nope"}}`,
			headers: bearer(revokedTok), wantStatus: 403, wantBody: `{"error":"nope"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := start(t, hsConfig(tt.extra))
			switch tt.list {
			case fresh:
				f.publish("jtiguard.", now, entries, cutoffs)
			case stale:
				f.publish("jtiguard.", now.Add(-2*time.Minute), entries, cutoffs)
			}
			action, resp := f.request(tt.headers)
			if tt.wantStatus == 0 {
				if action != types.ActionContinue || resp != nil {
					t.Fatalf("got action %v, response %+v; want continue", action, resp)
				}
				return
			}
			if action != types.ActionPause || resp == nil {
				t.Fatalf("got action %v, no local response; want %d", action, tt.wantStatus)
			}
			if resp.StatusCode != tt.wantStatus || string(resp.Data) != tt.wantBody {
				t.Fatalf("response = %d %s; want %d %s", resp.StatusCode, resp.Data, tt.wantStatus, tt.wantBody)
			}
			if len(resp.Headers) != 1 || resp.Headers[0] != [2]string{"content-type", "application/json"} {
				t.Fatalf("response headers = %q; want content-type application/json", resp.Headers)
			}
		})
	}
}

// TestEntryCountsThroughTheLeeway: a token past its exp but within the leeway is still
// accepted by validation, so its blocklist entry (carrying that exp) must still count.
func TestEntryCountsThroughTheLeeway(t *testing.T) {
	f := start(t, `{"jwt":{"leeway":"30s","hmac_secrets":[{"secret":`+jsonString(string(testKeys().hs))+`}]},"sync":{"cluster":""}}`)
	exp := testNow.Add(-10 * time.Second)
	c := claimsAt(testNow, "in-leeway")
	c["exp"] = exp.Unix()
	f.publish("jtiguard.", testNow, []revokedEntry{{jti: "in-leeway", exp: exp}}, nil)
	if _, resp := f.request(bearer(hs256(t, c))); resp == nil || resp.StatusCode != 401 || string(resp.Data) != `{"msg":"Token has been revoked"}` {
		t.Fatalf("token 10s past exp with 30s leeway: %+v; want revoked", resp)
	}
}

// TestCutoffRevokesTokenWithoutIat: a token that cannot say when it was issued is treated as
// issued before any cutoff of its subject.
func TestCutoffRevokesTokenWithoutIat(t *testing.T) {
	f := start(t, hsConfig(""))
	f.publish("jtiguard.", testNow, nil, []cutoffEntry{{sub: "user-1", before: testNow.Add(-time.Hour)}})
	c := claimsAt(testNow, "no-iat")
	delete(c, "iat")
	if _, resp := f.request(bearer(hs256(t, c))); resp == nil || resp.StatusCode != 401 {
		t.Fatalf("token without iat under a cutoff: %+v; want 401", resp)
	}
}

func TestIssuerKeyedRevocation(t *testing.T) {
	cfg := `{"jwt":{"issuers":["https://a","https://b"],"hmac_secrets":[{"secret":` + jsonString(string(testKeys().hs)) + `}]},"sync":{"cluster":""}}`
	f := start(t, cfg)
	f.keyed = true
	f.publish("jtiguard.", testNow, []revokedEntry{{iss: "https://a", jti: "shared-jti"}, {jti: "any-issuer"}}, nil)
	tok := func(iss, jti string) string {
		c := claimsAt(testNow, jti)
		c["iss"] = iss
		return hs256(t, c)
	}
	tests := []struct {
		iss, jti string
		revoked  bool
	}{
		{"https://a", "shared-jti", true},
		{"https://b", "shared-jti", false},
		{"https://a", "any-issuer", true},
		{"https://b", "any-issuer", true},
	}
	for _, tt := range tests {
		_, resp := f.request(bearer(tok(tt.iss, tt.jti)))
		if got := resp != nil && resp.StatusCode == 401; got != tt.revoked {
			t.Errorf("iss %s jti %s: revoked = %v; want %v", tt.iss, tt.jti, got, tt.revoked)
		}
	}
	// A list keyed the other way (a configuration change, or two plugins sharing a prefix)
	// is never used: its keys would miss. No usable list: fail closed.
	f.keyed = false
	f.publish("jtiguard.", testNow, []revokedEntry{{iss: "https://a", jti: "shared-jti"}}, nil)
	if _, resp := f.request(bearer(tok("https://a", "shared-jti"))); resp == nil || resp.StatusCode != 503 {
		t.Fatalf("list keyed without issuers under an issuer-keyed filter: %+v; want 503", resp)
	}
}

func TestTrustUpstreamMode(t *testing.T) {
	f := start(t, `{"jwt":{"trust_upstream":{"payload_header":"x-jwt-payload"}},"sync":{"cluster":""}}`)
	f.publish("jtiguard.", testNow, []revokedEntry{{jti: "up-revoked"}}, nil)
	payload := func(jti string) string {
		tok := hs256(t, claimsAt(testNow, jti))
		return strings.Split(tok, ".")[1]
	}
	if _, resp := f.request([][2]string{{"x-jwt-payload", payload("up-revoked")}}); resp == nil || resp.StatusCode != 401 {
		t.Fatalf("revoked payload: %+v; want 401", resp)
	}
	if a, resp := f.request([][2]string{{"x-jwt-payload", payload("up-ok")}}); a != types.ActionContinue || resp != nil {
		t.Fatalf("valid payload: %v %+v; want continue", a, resp)
	}
	// Validation reads only the payload header, but revocation reads every token: a revoked
	// one in the Authorization header (jwt_authn forwarding it, or a CORS preflight it
	// bypassed) is denied.
	if _, resp := f.request(bearer(hs256(t, claimsAt(testNow, "up-revoked")))); resp == nil || resp.StatusCode != 401 {
		t.Fatalf("revoked token in the Authorization header: %+v; want 401", resp)
	}
	// A client's own payload header beside jwt_authn's: refused.
	two := [][2]string{{"x-jwt-payload", payload("forged")}, {"x-jwt-payload", payload("up-ok")}}
	if _, resp := f.request(two); resp == nil || resp.StatusCode != 422 {
		t.Fatalf("two payload headers: %+v; want 422", resp)
	}
}

func TestCacheSkipsVerificationButNotRevocation(t *testing.T) {
	f := start(t, hsConfig(""))
	f.publish("jtiguard.", testNow, nil, nil)
	tok := hs256(t, claimsAt(testNow, "cached"))
	for i := 0; i < 3; i++ {
		if a, _ := f.request(bearer(tok)); a != types.ActionContinue {
			t.Fatalf("request %d denied", i)
		}
	}
	f.host.Tick() // counters reach the host on the tick
	if hits, _ := f.host.GetCounterMetric("jtiguard.requests.cache_hits"); hits != 2 {
		t.Fatalf("cache hits = %d; want 2", hits)
	}
	// Revoked after being cached: the next request is denied.
	f.publish("jtiguard.", testNow, []revokedEntry{{jti: "cached"}}, nil)
	if _, resp := f.request(bearer(tok)); resp == nil || resp.StatusCode != 401 {
		t.Fatalf("cached token revoked later: %+v; want 401", resp)
	}
	// At its expiry the cached token is judged again: expired.
	f.now = testNow.Add(16 * time.Minute)
	f.publish("jtiguard.", f.now, nil, nil)
	if _, resp := f.request(bearer(tok)); resp == nil || string(resp.Data) != `{"msg":"Token has expired"}` {
		t.Fatalf("cached token past its expiry: %+v; want expired", resp)
	}
}

func TestBadConfigFailsStart(t *testing.T) {
	opt := proxytest.NewEmulatorOption().
		WithVMContext(NewVMContext()).
		WithPluginConfiguration([]byte(`{"fail_mode":"sometimes","jwt":{"hmac_secrets":[{"secret":"s"}]}}`))
	host, reset := proxytest.NewHostEmulator(opt)
	defer reset()
	if st := host.StartPlugin(); st != types.OnPluginStartStatusFailed {
		t.Fatalf("StartPlugin = %v; want failed", st)
	}
	logs := strings.Join(host.GetCriticalLogs(), "\n")
	if !strings.Contains(logs, "invalid plugin configuration") || !strings.Contains(logs, "fail_mode") {
		t.Fatalf("critical logs = %q; want the reason", logs)
	}
}

func TestSyncThroughTheEmulator(t *testing.T) {
	f := start(t, `{"jwt":{"hmac_secrets":[{"secret":`+jsonString(string(testKeys().hs))+`}]},"sync":{"headers":{"authorization":"Bearer feed"}}}`)
	// Start must not poll (Envoy also starts a configuration canary VM that it kills at once),
	// but it ticks fast until the first list.
	if calls := f.host.GetCalloutAttributesFromContext(proxytest.PluginContextID); len(calls) != 0 {
		t.Fatalf("callouts at start = %+v; want none", calls)
	}
	if p := f.host.GetTickPeriod(); p != 100 {
		t.Fatalf("tick period before the first list = %d ms; want 100", p)
	}
	f.host.Tick()
	calls := f.host.GetCalloutAttributesFromContext(proxytest.PluginContextID)
	if len(calls) != 1 || calls[0].Upstream != "revocation_source" {
		t.Fatalf("callouts after the first tick = %+v; want one to revocation_source", calls)
	}
	tok := hs256(t, claimsAt(testNow, "via-sync"))
	if _, resp := f.request(bearer(tok)); resp == nil || resp.StatusCode != 503 {
		t.Fatalf("before the first list: %+v; want 503", resp)
	}
	f.host.CallOnHttpCallResponse(calls[0].CalloutID, [][2]string{{":status", "200"}, {"content-type", "application/json"}}, nil,
		[]byte(`{"kind":"snapshot","version":"v1","entries":[{"jti":"via-sync"}]}`))
	f.now = f.now.Add(listRecheck) // requests see a new list within listRecheck
	if _, resp := f.request(bearer(tok)); resp == nil || resp.StatusCode != 401 {
		t.Fatalf("after the list: %+v; want 401", resp)
	}
	if ok, _ := f.host.GetCounterMetric("jtiguard.sync.successes"); ok != 1 {
		t.Fatalf("sync.successes = %d; want 1", ok)
	}
	f.host.Tick()
	// Once a list is held, the syncer's own pace: with the long poll on (the default) a tenth
	// of the 5 s interval, so a poll held back by the burst limit waits no longer than that.
	if p := f.host.GetTickPeriod(); p != 500 {
		t.Fatalf("tick period once a list is held = %d ms; want 500", p)
	}
	// A broken response later keeps the list.
	f.now = f.now.Add(6 * time.Second)
	f.host.Tick()
	calls = f.host.GetCalloutAttributesFromContext(proxytest.PluginContextID)
	f.host.CallOnHttpCallResponse(calls[len(calls)-1].CalloutID, [][2]string{{":status", "200"}, {"content-type", "application/json"}}, nil, []byte(`{"entries":[`))
	if _, resp := f.request(bearer(tok)); resp == nil || resp.StatusCode != 401 {
		t.Fatalf("after a broken response: %+v; want the old list's 401", resp)
	}
}

func TestNeverLogsTokens(t *testing.T) {
	f := start(t, hsConfig(`,"missing_token":"deny"`))
	f.publish("jtiguard.", testNow, []revokedEntry{{jti: "jti-revoked"}}, nil)
	toks := []string{hs256(t, claimsAt(testNow, "jti-revoked")), hs256(t, claimsAt(testNow, "fine")), "abc.def", "a.b.c"}
	for _, tok := range toks {
		f.request(bearer(tok))
	}
	var all []string
	for _, logs := range [][]string{f.host.GetTraceLogs(), f.host.GetDebugLogs(), f.host.GetInfoLogs(), f.host.GetWarnLogs(), f.host.GetErrorLogs(), f.host.GetCriticalLogs()} {
		all = append(all, logs...)
	}
	joined := strings.Join(all, "\n")
	for _, tok := range toks {
		if strings.Contains(joined, tok) {
			t.Fatalf("a token appears in the logs")
		}
	}
	if !strings.Contains(joined, `jti="jti-revoked"`) {
		t.Fatalf("debug log of the revoked jti missing: %q", joined)
	}
}
