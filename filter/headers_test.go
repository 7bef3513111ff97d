package filter

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// signedPayload is an HS256 token over a payload written out by hand (duplicate members,
// exact number texts), signed with the test secret.
func signedPayload(payloadJSON string) string {
	enc := base64.RawURLEncoding
	input := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`)) + "." + enc.EncodeToString([]byte(payloadJSON))
	mac := hmac.New(sha256.New, testKeys().hs)
	mac.Write([]byte(input))
	return input + "." + enc.EncodeToString(mac.Sum(nil))
}

// upstreamRequest runs a request and returns what went upstream: its headers after the
// filter's changes (nil when the filter answered), and the local reply if any.
func (f *fixture) upstreamRequest(headers [][2]string) ([][2]string, int) {
	id := f.host.InitializeHttpContext()
	defer f.host.CompleteHttpContext(id)
	all := append([][2]string{{":method", "GET"}, {":authority", "app"}, {":path", "/api"}}, headers...)
	action := f.host.CallOnRequestHeaders(id, all, true)
	if resp := f.host.GetSentLocalResponse(id); resp != nil {
		return nil, int(resp.StatusCode)
	}
	if action != types.ActionContinue {
		f.t.Fatalf("paused without a reply")
	}
	return f.host.GetCurrentRequestHeaders(id), 0
}

// values is every value of name in headers.
func values(headers [][2]string, name string) []string {
	var out []string
	for _, h := range headers {
		if strings.EqualFold(h[0], name) {
			out = append(out, h[1])
		}
	}
	return out
}

const claimMappings = `"claims_to_headers":[{"claim":"sub","header":"X-User-Id"},{"claim":"n","header":"x-n"},
	{"claim":"admin","header":"x-admin"},{"claim":"obj","header":"x-obj"},{"claim":"ctl","header":"x-ctl"},
	{"claim":"f","header":"x-f"}]`

// claimsConfig is hsConfig with claimMappings and extra top-level keys.
func claimsConfig(extra string) string {
	return `{"jwt":{"hmac_secrets":[{"secret":` + jsonString(string(testKeys().hs)) + `}],` + claimMappings + `},"sync":{"cluster":""}` + extra + `}`
}

func TestClaimsToHeaders(t *testing.T) {
	now := testNow
	times := `"iat":` + strconv.FormatInt(now.Add(-time.Minute).Unix(), 10) + `,"exp":` + strconv.FormatInt(now.Add(time.Hour).Unix(), 10)
	tok := func(jti, rest string) string {
		return signedPayload(`{"jti":"` + jti + `","type":"access",` + times + rest + `}`)
	}
	forged := [][2]string{{"x-user-id", "admin"}, {"X-User-Id", "root"}, {"x-admin", "true"}, {"x-obj", "{}"}}
	long := strings.Repeat("a", maxForwardedValue+1)
	tests := []struct {
		name    string
		config  string // "" claimsConfig("")
		headers [][2]string
		status  int               // 0: the request goes upstream
		want    map[string]string // header → value; "" absent upstream
	}{
		{name: "string, number, boolean forwarded; object and control characters not",
			headers: append(bearer(tok("j1", `,"sub":"user-1","n":42,"admin":true,"obj":{"a":1},"ctl":"a\r\nx-evil: 1","f":-1.5e3`)), forged...),
			want:    map[string]string{"x-user-id": "user-1", "x-n": "42", "x-admin": "true", "x-obj": "", "x-ctl": "", "x-f": "-1.5e3"}},
		{name: "integer sub, false, array, null",
			headers: bearer(tok("j2", `,"sub":7,"admin":false,"n":[1],"obj":null`)),
			want:    map[string]string{"x-user-id": "7", "x-admin": "false", "x-n": "", "x-obj": ""}},
		{name: "no token: forged headers removed",
			headers: forged,
			want:    map[string]string{"x-user-id": "", "x-admin": "", "x-obj": ""}},
		{name: "invalid token let through by invalid_token allow: forged headers removed",
			config:  claimsConfig(`,"invalid_token":"allow"`),
			headers: append(bearer("a.b.c"), forged...),
			want:    map[string]string{"x-user-id": "", "x-admin": ""}},
		{name: "token signed with another key: nothing forwarded, 422",
			config:  claimsConfig(`,"invalid_token":"allow"`),
			headers: append(bearer(sign(t, jwt.SigningMethodHS256, testKeys().hsOther, claimsAt(now, "other"), nil)), forged...),
			want:    map[string]string{"x-user-id": ""}},
		{name: "revoked token: denied",
			headers: append(bearer(tok("revoked", `,"sub":"user-1"`)), forged...), status: 401},
		{name: "a claim given twice is not forwarded",
			headers: bearer(tok("j3", `,"sub":"user-1","n":1,"n":2`)),
			want:    map[string]string{"x-user-id": "user-1", "x-n": ""}},
		{name: "too long, leading space, trailing space, NUL escape: not forwarded",
			headers: bearer(tok("j4", `,"sub":"`+long+`","admin":" x","obj":"x ","ctl":"a\u0000b","f":"ok"`)),
			want:    map[string]string{"x-user-id": "", "x-admin": "", "x-obj": "", "x-ctl": "", "x-f": "ok"}},
		{name: "underscore spellings of a mapped name removed (WSGI reads x_user_id as x-user-id)",
			headers: [][2]string{{"x_user_id", "admin"}, {"X_User-Id", "root"}, {"x-admin_", "kept"}},
			want:    map[string]string{"x_user_id": "", "x_user-id": "", "x-admin_": "kept"}},
		{name: "a refresh token is let through, its claims not forwarded",
			headers: append(bearer(signedPayload(`{"jti":"j6","type":"refresh",`+times+`,"sub":"user-1"}`)), forged...),
			want:    map[string]string{"x-user-id": "", "x-admin": ""}},
		{name: "escaped member name and an empty string",
			headers: bearer(tok("j5", `,"s\u0075b":"user-2","f":""`)),
			want:    map[string]string{"x-user-id": "user-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.config
			if cfg == "" {
				cfg = claimsConfig("")
			}
			f := start(t, cfg)
			f.publish("jtiguard.", now, []revokedEntry{{jti: "revoked"}}, nil)
			up, status := f.upstreamRequest(tt.headers)
			if status != tt.status {
				t.Fatalf("status = %d; want %d", status, tt.status)
			}
			for name, want := range tt.want {
				got := values(up, name)
				switch {
				case want == "" && len(got) != 0:
					t.Errorf("%s upstream = %q; want absent", name, got)
				case want != "" && (len(got) != 1 || got[0] != want):
					t.Errorf("%s upstream = %q; want [%q]", name, got, want)
				}
			}
		})
	}
	t.Run("an empty string is forwarded as an empty header", func(t *testing.T) {
		f := start(t, claimsConfig(""))
		f.publish("jtiguard.", now, nil, nil)
		up, _ := f.upstreamRequest(bearer(tok("j6", `,"f":""`)))
		if got := values(up, "x-f"); len(got) != 1 || got[0] != "" {
			t.Fatalf("x-f = %q; want one empty value", got)
		}
	})
}

// A token seen before is not verified again, and its headers still go upstream: the values
// are kept with it in the token cache. A client's header never survives, first time or not.
func TestClaimsToHeadersOnCacheHit(t *testing.T) {
	f := start(t, claimsConfig(""))
	f.publish("jtiguard.", testNow, nil, nil)
	c := claimsAt(testNow, "cached")
	c["n"] = 5
	tok := hs256(t, c)
	for i := range 3 {
		up, status := f.upstreamRequest(append(bearer(tok), [2]string{"x-user-id", "forged"}))
		if status != 0 {
			t.Fatalf("request %d: %d", i, status)
		}
		if got := values(up, "x-user-id"); len(got) != 1 || got[0] != "user-1" {
			t.Fatalf("request %d: x-user-id = %q; want [user-1]", i, got)
		}
		if got := values(up, "x-n"); len(got) != 1 || got[0] != "5" {
			t.Fatalf("request %d: x-n = %q; want [5]", i, got)
		}
	}
	f.host.Tick()
	if hits, _ := f.host.GetCounterMetric("jtiguard.requests.cache_hits"); hits != 2 {
		t.Fatalf("cache hits = %d; want 2", hits)
	}
}

// A request held for its body (the json location) gets its headers set when it is decided,
// at the end of the body.
func TestClaimsToHeadersAfterBody(t *testing.T) {
	cfg := `{"jwt":{"hmac_secrets":[{"secret":` + jsonString(string(testKeys().hs)) + `}],` + claimMappings +
		`},"token":{"locations":["headers","json"],"max_body_bytes":4096},"sync":{"cluster":""}}`
	f := start(t, cfg)
	f.publish("jtiguard.", testNow, nil, nil)
	tok := hs256(t, claimsAt(testNow, "body"))
	id := f.host.InitializeHttpContext()
	defer f.host.CompleteHttpContext(id)
	hs := [][2]string{{":method", "POST"}, {":authority", "app"}, {":path", "/api"}, {"content-type", "application/json"}, {"x-user-id", "forged"}}
	if a := f.host.CallOnRequestHeaders(id, hs, false); a != types.ActionPause {
		t.Fatalf("headers: %v; want pause", a)
	}
	if a := f.host.CallOnRequestBody(id, []byte(`{"access_token":"`+tok+`"}`), true); a != types.ActionContinue {
		t.Fatalf("body: %v; want continue", a)
	}
	if got := values(f.host.GetCurrentRequestHeaders(id), "x-user-id"); len(got) != 1 || got[0] != "user-1" {
		t.Fatalf("x-user-id = %q; want [user-1]", got)
	}
}

// decision_property: every decision is set as a property of the stream (Envoy: filter state
// wasm.<name>), denials by their response code details.
func TestDecisionProperty(t *testing.T) {
	f := start(t, hsConfig(`,"decision_property":"jtiguard_decision"`))
	f.publish("jtiguard.", testNow, []revokedEntry{{jti: "revoked"}}, nil)
	expired := claimsAt(testNow, "old")
	expired["exp"] = testNow.Add(-time.Hour).Unix()
	for _, tt := range []struct {
		name    string
		headers [][2]string
		want    string
	}{
		{"valid", bearer(hs256(t, claimsAt(testNow, "ok"))), "jtiguard_allowed"},
		{"no token", nil, "jtiguard_allowed_missing"},
		{"revoked", bearer(hs256(t, claimsAt(testNow, "revoked"))), "jtiguard_revoked"},
		{"expired", bearer(hs256(t, expired)), "jtiguard_expired"},
		{"invalid", bearer("a.b.c"), "jtiguard_invalid"},
	} {
		f.request(tt.headers)
		got, err := f.host.GetProperty([]string{"jtiguard_decision"})
		if err != nil || string(got) != tt.want {
			t.Errorf("%s: property = %q, %v; want %q", tt.name, got, err, tt.want)
		}
	}
}

// The list unusable with fail_mode open: a valid token is allowed unchecked; an invalid one
// let through by invalid_token allow says so.
func TestDecisionPropertyFailOpen(t *testing.T) {
	g := start(t, hsConfig(`,"decision_property":"d","fail_mode":"open","invalid_token":"allow"`))
	g.request(bearer(hs256(t, claimsAt(testNow, "ok"))))
	if got, _ := g.host.GetProperty([]string{"d"}); string(got) != "jtiguard_allowed_unchecked" {
		t.Errorf("fail open: property = %q; want jtiguard_allowed_unchecked", got)
	}
	g.request(bearer("a.b.c"))
	if got, _ := g.host.GetProperty([]string{"d"}); string(got) != "jtiguard_allowed_invalid" {
		t.Errorf("invalid token, invalid_token allow: property = %q; want jtiguard_allowed_invalid", got)
	}
}

// Without decision_property nothing is set.
func TestNoDecisionPropertyByDefault(t *testing.T) {
	f := start(t, hsConfig(""))
	f.publish("jtiguard.", testNow, nil, nil)
	f.request(nil)
	if got, err := f.host.GetProperty([]string{"jtiguard_decision"}); err == nil {
		t.Fatalf("property set without decision_property: %q", got)
	}
}

func TestClaimsToHeadersConfig(t *testing.T) {
	secret := `"hmac_secrets":[{"secret":"0123456789abcdef0123456789abcdef"}]`
	cfg := func(mappings string, extra string) string {
		return `{"jwt":{` + secret + `,"claims_to_headers":[` + mappings + `]}` + extra + `}`
	}
	m := func(claim, header string) string { return `{"claim":"` + claim + `","header":"` + header + `"}` }
	many := make([]string, maxClaimHeaders+1)
	for i := range many {
		many[i] = m("c", "x-h"+strconv.Itoa(i))
	}
	tests := []struct {
		name, config, wantErr string
	}{
		{"ok, header lower-cased", cfg(m("sub", "X-User")+","+m("sub", "x-sub"), ""), ""},
		{"pseudo-header", cfg(m("sub", ":path"), ""), `claims_to_headers[0].header: must be a valid HTTP header name (no pseudo-header), got ":path"`},
		{"authorization", cfg(m("sub", "Authorization"), ""), `"Authorization" cannot be set from a claim`},
		{"cookie", cfg(m("sub", "cookie"), ""), `"cookie" cannot be set from a claim`},
		{"host", cfg(m("sub", "host"), ""), `"host" cannot be set`},
		{"hop-by-hop", cfg(m("sub", "Connection"), ""), `"Connection" cannot be set`},
		{"transfer-encoding", cfg(m("sub", "transfer-encoding"), ""), `cannot be set`},
		{"csrf header", cfg(m("csrf", "X-CSRF-TOKEN"), ""), `"X-CSRF-TOKEN" cannot be set`},
		{"the token header", cfg(m("sub", "x-token"), `,"token":{"header_name":"X-Token"}`), `claims_to_headers[0].header: "x-token" is token.header_name`},
		{"duplicate header", cfg(m("sub", "x-a")+","+m("role", "X-A"), ""), `claims_to_headers[1].header: "X-A" is mapped twice`},
		{"the token header with '_'", cfg(m("sub", "x_token"), `,"token":{"header_name":"X-Token"}`), `"x_token" is token.header_name`},
		{"csrf header with '_'", cfg(m("csrf", "X_CSRF_TOKEN"), ""), `"X_CSRF_TOKEN" cannot be set`},
		{"content-type with '_'", cfg(m("sub", "content_type"), ""), `"content_type" cannot be set`},
		{"duplicate header with '_'", cfg(m("sub", "x-a")+","+m("role", "x_a"), ""), `"x_a" is mapped twice`},
		{"empty header", cfg(m("sub", ""), ""), `claims_to_headers[0].header`},
		{"header with a space", cfg(m("sub", "x a"), ""), `must be a valid HTTP header name`},
		{"empty claim", cfg(m("", "x-a"), ""), `claims_to_headers[0].claim: must be 1-64 bytes of visible ASCII, got ""`},
		{"claim with a space", cfg(m("a b", "x-a"), ""), `claims_to_headers[0].claim`},
		{"long claim", cfg(m(strings.Repeat("c", 65), "x-a"), ""), `claims_to_headers[0].claim`},
		{"too many", cfg(strings.Join(many, ","), ""), `jwt.claims_to_headers: at most 16 mappings, got 17`},
		{"unknown key", cfg(`{"claim":"sub","header":"x-a","prefix":"p"}`, ""), `unknown field "prefix"`},
		{"with trust_upstream", `{"jwt":{"trust_upstream":{"payload_in_metadata":"p"},"claims_to_headers":[` + m("sub", "x-a") + `]}}`,
			`jwt.claims_to_headers: cannot be used with jwt.trust_upstream`},
		{"decision_property ok", `{"jwt":{` + secret + `},"decision_property":"jtiguard.decision-1"}`, ""},
		{"decision_property upper case", `{"jwt":{` + secret + `},"decision_property":"Decision"}`, `decision_property: must be 1-64 bytes`},
		{"decision_property too long", `{"jwt":{` + secret + `},"decision_property":"` + strings.Repeat("d", 65) + `"}`, `decision_property`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ParseConfig([]byte(tt.config), nil)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseConfig() = %v", err)
				}
				for _, ch := range c.JWT.ClaimsToHeaders {
					if ch.Header != strings.ToLower(ch.Header) {
						t.Errorf("header %q not lower-cased", ch.Header)
					}
				}
				return
			}
			if err == nil || !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseConfig() error = %v; want ErrInvalidConfig containing %q", err, tt.wantErr)
			}
		})
	}
}

// forwardable is the one gate between a claim and a header value: whatever the bytes, what
// it lets through cannot end a header or start another.
func FuzzForwardable(f *testing.F) {
	for _, s := range []string{"user-1", "a\r\nb: c", " x", "x ", "\x00", "é", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !forwardable(s) {
			return
		}
		if len(s) > maxForwardedValue || strings.ContainsAny(s, "\r\n\x00\t\x7f") || strings.TrimSpace(s) != s && strings.Trim(s, " ") != s {
			t.Fatalf("forwardable(%q) = true", s)
		}
	})
}

// The example in docs/envoy-istio.md ("Claims to headers, and the decision in the access log")
// is a configuration the filter accepts.
func TestClaimsToHeadersDocExample(t *testing.T) {
	doc, err := os.ReadFile("../docs/envoy-istio.md")
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "### Claims to headers, and the decision in the access log")
	if !ok {
		t.Fatal("section not found")
	}
	_, block, ok := strings.Cut(section, "```json\n")
	block, _, ok2 := strings.Cut(block, "```")
	if !ok || !ok2 {
		t.Fatal("no json block in the section")
	}
	c, err := ParseConfig([]byte(block), func(string) string { return "0123456789abcdef0123456789abcdef" })
	if err != nil {
		t.Fatalf("the doc's example: %v", err)
	}
	if len(c.JWT.ClaimsToHeaders) != 2 || c.DecisionProperty != "jtiguard_decision" {
		t.Fatalf("the doc's example parsed as %+v, %q", c.JWT.ClaimsToHeaders, c.DecisionProperty)
	}
}

// A token let through unverified (remote_jwks with no key set yet, fail_mode open) forwards
// nothing: its claims are anyone's to write. One the inline keys verify does.
func TestClaimsToHeadersNeverFromAnUnverifiedToken(t *testing.T) {
	k := testKeys()
	cfg := strings.Replace(jwksConfig(`,"fail_mode":"open"`), `"remote_jwks":`,
		`"claims_to_headers":[{"claim":"sub","header":"x-user-id"}],"remote_jwks":`, 1)
	f := start(t, cfg)
	f.publish("jtiguard.", testNow, nil, nil)
	forged := [2]string{"x-user-id", "forged"}
	up, status := f.upstreamRequest(append(bearer(es256(t, "k1", "unverified", k.p256)), forged))
	if status != 0 {
		t.Fatalf("unverified token, fail_mode open: %d; want it let through", status)
	}
	if got := values(up, "x-user-id"); len(got) != 0 {
		t.Fatalf("unverified token: x-user-id upstream = %q; want absent", got)
	}
	inline := sign(t, jwt.SigningMethodHS256, k.hs, claimsAt(testNow, "inline"), map[string]any{"kid": "inline"})
	up, status = f.upstreamRequest(append(bearer(inline), forged))
	if got := values(up, "x-user-id"); status != 0 || len(got) != 1 || got[0] != "user-1" {
		t.Fatalf("inline-verified token: %d, x-user-id upstream = %q; want [user-1]", status, got)
	}
}
