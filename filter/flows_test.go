package filter

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/proxytest"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// requestWithBody runs headers (not ending the stream) and then body through the filter, as
// Envoy does for a request with a body: chunks with end_of_stream on the last.
func (f *fixture) requestWithBody(headers [][2]string, chunks ...string) (headersAction, lastAction types.Action, resp *proxytest.LocalHttpResponse) {
	id := f.host.InitializeHttpContext()
	defer f.host.CompleteHttpContext(id)
	all := append([][2]string{{":method", "POST"}, {":authority", "app"}, {":path", "/api"}}, headers...)
	headersAction = f.host.CallOnRequestHeaders(id, all, false)
	if resp = f.host.GetSentLocalResponse(id); resp != nil {
		return headersAction, headersAction, resp
	}
	lastAction = headersAction
	for i, c := range chunks {
		lastAction = f.host.CallOnRequestBody(id, []byte(c), i == len(chunks)-1)
		if resp = f.host.GetSentLocalResponse(id); resp != nil {
			break
		}
	}
	return headersAction, lastAction, resp
}

func TestJSONBodyLocation(t *testing.T) {
	cfg := hsConfig(`,"token":{"locations":["headers","json"],"max_body_bytes":4096}`)
	revoked := hs256(t, claimsAt(testNow, "jti-revoked"))
	valid := hs256(t, claimsAt(testNow, "jti-ok"))
	ct := [][2]string{{"content-type", "application/json"}}
	tests := []struct {
		name        string
		headers     [][2]string
		chunks      []string
		wantHeaders types.Action // what the headers callback answers
		wantStatus  uint32       // 0: the request continues after its body
		wantBody    string
	}{
		{name: "valid token in the body", headers: ct, chunks: []string{`{"access_token":"` + valid + `"}`},
			wantHeaders: types.ActionPause},
		{name: "revoked token in the body, in two chunks", headers: ct, chunks: []string{`{"access_token":"` + revoked[:20], revoked[20:] + `"}`},
			wantHeaders: types.ActionPause, wantStatus: 401, wantBody: `{"msg":"Token has been revoked"}`},
		{name: "revoked refresh token under its own key", headers: ct, chunks: []string{`{"refresh_token":"` + revoked + `"}`},
			wantHeaders: types.ActionPause, wantStatus: 401},
		{name: "revoked token in the headers is answered before the body", headers: append(bearer(revoked), ct...),
			chunks: []string{`{}`}, wantHeaders: types.ActionPause, wantStatus: 401},
		{name: "revoked token in a body of another JSON type", headers: [][2]string{{"content-type", "application/vnd.api+json"}},
			chunks: []string{`{"data":{"token":"` + revoked + `"}}`}, wantHeaders: types.ActionPause, wantStatus: 401},
		{name: "escaped dots in a JSON body", headers: ct, chunks: []string{`{"access_token":"` + strings.ReplaceAll(revoked, ".", `\u002e`) + `"}`},
			wantHeaders: types.ActionPause, wantStatus: 401},
		{name: "oversized JSON body", headers: ct, chunks: []string{`{"pad":"` + strings.Repeat("x", 5000) + `"}`},
			wantHeaders: types.ActionPause, wantStatus: 413, wantBody: `{"msg":"Request body too large to check for a token"}`},
		{name: "malformed JSON body: no token, as flask", headers: ct, chunks: []string{`{"access_token":`},
			wantHeaders: types.ActionPause},
		{name: "a body that is not for the json location streams on", headers: [][2]string{{"content-type", "image/png"}},
			chunks: []string{"\x89PNG"}, wantHeaders: types.ActionContinue},
		{name: "duplicate JSON keys with different values", headers: ct, chunks: []string{`{"access_token":"` + valid + `","access_token":"x.y.z"}`},
			wantHeaders: types.ActionPause, wantStatus: 422, wantBody: `{"msg":"Ambiguous request: JSON key \"access_token\" given twice with different values"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := start(t, cfg)
			f.publish("jtiguard.", testNow, []revokedEntry{{jti: "jti-revoked"}}, nil)
			ha, last, resp := f.requestWithBody(tt.headers, tt.chunks...)
			if ha != tt.wantHeaders {
				t.Fatalf("headers callback = %v; want %v", ha, tt.wantHeaders)
			}
			if tt.wantStatus == 0 {
				if resp != nil || last != types.ActionContinue {
					t.Fatalf("got %v %+v; want the request to continue", last, resp)
				}
				return
			}
			if resp == nil || resp.StatusCode != tt.wantStatus || tt.wantBody != "" && string(resp.Data) != tt.wantBody {
				t.Fatalf("got %+v; want %d %s", resp, tt.wantStatus, tt.wantBody)
			}
		})
	}
}

// TestAmbiguityIsRefused: requests the application could read differently from the filter
// are answered 422 with a message that says why (and a revoked token in them, 401).
func TestAmbiguityIsRefused(t *testing.T) {
	cfg := hsConfig(`,"token":{"locations":["headers","cookies","query_string"]}`)
	valid := hs256(t, claimsAt(testNow, "jti-ok"))
	other := hs256(t, claimsAt(testNow, "jti-other"))
	revoked := hs256(t, claimsAt(testNow, "jti-revoked"))
	tests := []struct {
		name    string
		headers [][2]string
		want    string // the message; "revoked" for 401
	}{
		{"cookie twice, different values", [][2]string{{"cookie", "access_token_cookie=" + valid + "; access_token_cookie=" + other}},
			`Ambiguous request: cookie \"access_token_cookie\" given twice with different values`},
		{"cookie name with a space before '='", [][2]string{{"cookie", "access_token_cookie =" + valid}},
			`Ambiguous request: a cookie name that matches \"access_token_cookie\" only after trimming or decoding`},
		{"percent-encoded parameter name", [][2]string{{":path", "/api?%6Awt=" + valid}},
			`Ambiguous request: a query parameter name that matches \"jwt\" only after decoding, trimming or splitting on ';'`},
		{"parameter after ';'", [][2]string{{":path", "/api?a=1;jwt=" + valid}},
			`Ambiguous request: a query parameter name that matches \"jwt\" only after decoding, trimming or splitting on ';'`},
		{"scheme in another case", [][2]string{{"authorization", "bearer " + valid}},
			`Ambiguous request: a Authorization scheme that matches 'Bearer' only in another letter case`},
		{"no-break space after the scheme", [][2]string{{"authorization", "Bearer\u00a0" + valid}},
			`Ambiguous request: control or non-ASCII characters in the Authorization header`},
		{"two Authorization headers", [][2]string{{"authorization", "Bearer " + valid}, {"authorization", "Bearer " + other}},
			`Ambiguous request: more than one Authorization header`},
		{"a revoked token makes any of these 401", [][2]string{{"cookie", "access_token_cookie=" + valid + "; access_token_cookie=" + revoked}},
			"revoked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := start(t, cfg)
			f.publish("jtiguard.", testNow, []revokedEntry{{jti: "jti-revoked"}}, nil)
			_, resp := f.request(tt.headers)
			if tt.want == "revoked" {
				if resp == nil || resp.StatusCode != 401 {
					t.Fatalf("got %+v; want 401", resp)
				}
				return
			}
			if resp == nil || resp.StatusCode != 422 || string(resp.Data) != `{"msg":"`+tt.want+`"}` {
				t.Fatalf("got %+v; want 422 %s", resp, tt.want)
			}
		})
	}
}

// TestMissingMessagesAreFlasks: flask-jwt-extended 4.4's texts, several locations included.
func TestMissingMessagesAreFlasks(t *testing.T) {
	for _, tt := range []struct{ locations, want string }{
		{`["headers"]`, `Missing Authorization Header`},
		{`["cookies"]`, `Missing cookie \"access_token_cookie\"`},
		{`["query_string"]`, `Missing 'jwt' query paramater`},
		{`["headers","cookies","query_string"]`, `Missing JWT in headers, cookies or query_string (Missing Authorization Header; Missing cookie \"access_token_cookie\"; Missing 'jwt' query paramater)`},
	} {
		t.Run(tt.locations, func(t *testing.T) {
			f := start(t, hsConfig(`,"missing_token":"deny","token":{"locations":`+tt.locations+`}`))
			_, resp := f.request(nil)
			if resp == nil || string(resp.Data) != `{"msg":"`+tt.want+`"}` {
				t.Errorf("got %+v; want %s", resp, tt.want)
			}
		})
	}
}

// TestTrustUpstreamMetadata reads the claims jwt_authn wrote to dynamic metadata (which a
// client cannot forge), as Envoy serializes them: strings as bytes, numbers as doubles.
func TestTrustUpstreamMetadata(t *testing.T) {
	double := func(f float64) []byte {
		b := make([]byte, 8)
		binary.LittleEndian.PutUint64(b, math.Float64bits(f))
		return b
	}
	path := func(claim string) []string {
		return []string{"metadata", "filter_metadata", "envoy.filters.http.jwt_authn", "payload", claim}
	}
	cfg := `{"jwt":{"trust_upstream":{"payload_in_metadata":"payload"}},"sync":{"cluster":""},"missing_token":"deny"}`
	tests := []struct {
		name       string
		claims     map[string][]byte
		wantStatus uint32
	}{
		{"valid claims", map[string][]byte{"jti": []byte("m-ok"), "sub": []byte("u"), "exp": double(float64(testNow.Add(time.Hour).Unix()))}, 0},
		{"revoked jti", map[string][]byte{"jti": []byte("m-revoked"), "exp": double(float64(testNow.Add(time.Hour).Unix()))}, 401},
		{"numeric sub under a cutoff", map[string][]byte{"jti": []byte("m-2"), "sub": double(42), "iat": double(float64(testNow.Add(-2 * time.Hour).Unix()))}, 401},
		{"expired", map[string][]byte{"jti": []byte("m-3"), "exp": double(float64(testNow.Add(-time.Minute).Unix()))}, 401},
		{"revoked sid", map[string][]byte{"jti": []byte("m-4"), "sid": []byte("s-out"), "exp": double(float64(testNow.Add(time.Hour).Unix()))}, 401},
		{"numeric claim of a revoked value", map[string][]byte{"jti": []byte("m-5"), "family": double(7), "exp": double(float64(testNow.Add(time.Hour).Unix()))}, 401},
		{"a float claim against Python's str() of it", map[string][]byte{"jti": []byte("m-7"), "family": double(7.5), "exp": double(float64(testNow.Add(time.Hour).Unix()))}, 401},
		{"live sid", map[string][]byte{"jti": []byte("m-6"), "sid": []byte("s-in"), "exp": double(float64(testNow.Add(time.Hour).Unix()))}, 0},
		{"no metadata: missing", nil, 401},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fixture{t: t, now: testNow}
			opt := proxytest.NewEmulatorOption().
				WithVMContext(newVMContext(func() time.Time { return f.now })).
				WithPluginConfiguration([]byte(cfg))
			for claim, v := range tt.claims {
				opt = opt.WithProperty(path(claim), v)
			}
			host, reset := proxytest.NewHostEmulator(opt)
			defer reset()
			f.host = host
			if st := host.StartPlugin(); st != types.OnPluginStartStatusOK {
				t.Fatalf("start: %v %q", st, host.GetCriticalLogs())
			}
			f.publish("jtiguard.", testNow, []revokedEntry{{jti: "m-revoked"}, {claim: "sid", jti: "s-out"}, {claim: "family", jti: "7"}, {claim: "family", jti: "7.5"}},
				[]cutoffEntry{{sub: "42", before: testNow.Add(-time.Hour)}})
			_, resp := f.request(nil)
			switch {
			case tt.wantStatus == 0 && resp != nil:
				t.Fatalf("got %d %s; want continue", resp.StatusCode, resp.Data)
			case tt.wantStatus != 0 && (resp == nil || resp.StatusCode != tt.wantStatus):
				t.Fatalf("got %+v; want %d", resp, tt.wantStatus)
			}
		})
	}
}

// TestIntegerSubject: flask-jwt-extended's own examples issue identity=user.id, an integer
// sub. Such tokens are valid by default (cutoffs looked up by the decimal form), and refused
// with strict_sub.
func TestIntegerSubject(t *testing.T) {
	tok := func(jti string, iat time.Time) string {
		c := claimsAt(testNow, jti)
		c["sub"], c["iat"] = 42, iat.Unix()
		delete(c, "nbf")
		return hs256(t, c)
	}
	t.Run("default", func(t *testing.T) {
		f := start(t, hsConfig(""))
		f.publish("jtiguard.", testNow, nil, []cutoffEntry{{sub: "42", before: testNow.Add(-time.Hour)}})
		if _, resp := f.request(bearer(tok("int-new", testNow.Add(-time.Minute)))); resp != nil {
			t.Fatalf("integer sub, issued after the cutoff: %d %s; want continue", resp.StatusCode, resp.Data)
		}
		if _, resp := f.request(bearer(tok("int-old", testNow.Add(-2*time.Hour)))); resp == nil || resp.StatusCode != 401 {
			t.Fatalf("integer sub, issued before its cutoff: %+v; want 401", resp)
		}
	})
	t.Run("strict_sub", func(t *testing.T) {
		f := start(t, hsConfig(`,"jwt":{"strict_sub":true,"hmac_secrets":[{"secret":`+jsonString(string(testKeys().hs))+`}]}`))
		f.publish("jtiguard.", testNow, nil, nil)
		if _, resp := f.request(bearer(tok("int-strict", testNow.Add(-time.Minute)))); resp == nil || resp.StatusCode != 422 {
			t.Fatalf("integer sub with strict_sub: %+v; want 422", resp)
		}
	})
}
