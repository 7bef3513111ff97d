package jwtverify_test

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/jwtverify"
)

// everyAlgorithm is a signed-token setup per algorithm: the key to sign with, another key of
// the same kind (which must fail), and key configurations by PEM and by JWKS.
type algCase struct {
	alg        string
	key, other any
	pem        string
	jwk        map[string]string
}

func everyAlgorithm(t testing.TB) []algCase {
	k := testKeys()
	rsaPEM := pemOf(t, &k.rsa.PublicKey)
	var out []algCase
	for _, a := range []string{"HS256", "HS384", "HS512"} {
		out = append(out, algCase{alg: a, key: k.hs, other: k.hsOther, jwk: jwkOct("", k.hs)})
	}
	for _, a := range []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"} {
		out = append(out, algCase{alg: a, key: k.rsa, other: k.rsa2, pem: rsaPEM, jwk: jwkRSA("", "", &k.rsa.PublicKey)})
	}
	out = append(out,
		algCase{alg: "ES256", key: k.p256, other: k.p256b, pem: pemOf(t, &k.p256.PublicKey), jwk: jwkEC("", "", &k.p256.PublicKey)},
		algCase{alg: "ES384", key: k.p384, pem: pemOf(t, &k.p384.PublicKey), jwk: jwkEC("", "", &k.p384.PublicKey)},
		algCase{alg: "ES512", key: k.p521, pem: pemOf(t, &k.p521.PublicKey), jwk: jwkEC("", "", &k.p521.PublicKey)},
		algCase{alg: "EdDSA", key: k.ed, other: k.ed2, pem: pemOf(t, k.ed.Public()), jwk: jwkEd("", k.ed.Public().(ed25519.PublicKey))},
	)
	return out
}

func (a algCase) keys(t testing.TB, byJWKS bool) jwtverify.Keys {
	keys := jwtverify.Keys{Algorithms: []string{a.alg}}
	switch {
	case byJWKS:
		keys.JWKS = jwks(t, a.jwk)
	case a.pem == "":
		keys.HMAC = []jwtverify.HMACKey{{Secret: a.key.([]byte)}}
	default:
		keys.PEM = []jwtverify.PEMKey{{PEM: a.pem}}
	}
	return keys
}

func TestVerifyEveryAlgorithm(t *testing.T) {
	for _, a := range everyAlgorithm(t) {
		for _, byJWKS := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/jwks=%v", a.alg, byJWKS), func(t *testing.T) {
				v := newVerifier(t, a.keys(t, byJWKS), jwtverify.Options{})
				var c jwtverify.Claims
				token := sign(t, a.alg, a.key, claimsAt(testNow, "jti-1"), nil)
				if err := v.Verify(token, &c); err != nil {
					t.Fatalf("Verify(%s) = %v", a.alg, err)
				}
				if c.Alg != a.alg || string(c.JTI) != "jti-1" || string(c.Sub) != "user-1" || c.IsRefresh() || !c.HasIat || c.Iat != testNow.Unix() {
					t.Fatalf("claims = %+v", c)
				}
				if a.other != nil {
					bad := sign(t, a.alg, a.other, claimsAt(testNow, "jti-1"), nil)
					if err := v.Verify(bad, &c); !errors.Is(err, jwtverify.ErrTokenSignatureInvalid) || err.Error() != "Signature verification failed" {
						t.Fatalf("other key: Verify = %v; want Signature verification failed", err)
					}
				}
				// A signature bit flipped fails.
				parts := strings.Split(token, ".")
				sig := []byte(parts[2])
				sig[len(sig)/2] ^= 'A' ^ 'B'
				if sig[len(sig)/2] == parts[2][len(sig)/2] {
					t.Fatal("no flip")
				}
				if err := v.Verify(parts[0]+"."+parts[1]+"."+string(sig), &c); err == nil {
					t.Fatal("flipped signature accepted")
				}
			})
		}
	}
}

// An algorithm missing from the allowlist is refused even when its family has keys: RS256
// allowed, a PS256 token signed by the same RSA key.
func TestAlgorithmAllowlist(t *testing.T) {
	k := testKeys()
	v := newVerifier(t, jwtverify.Keys{Algorithms: []string{"RS256"}, PEM: []jwtverify.PEMKey{{PEM: pemOf(t, &k.rsa.PublicKey)}}}, jwtverify.Options{})
	var c jwtverify.Claims
	for _, tc := range []struct{ name, token string }{
		{"PS256", sign(t, "PS256", k.rsa, claimsAt(testNow, "j"), nil)},
		{"none", b64([]byte(`{"alg":"none"}`)) + "." + b64([]byte(`{"jti":"j"}`)) + "."},
		{"missing alg", b64([]byte(`{"typ":"JWT"}`)) + "." + b64([]byte(`{"jti":"j"}`)) + ".c2ln"},
		{"alg not a string", b64([]byte(`{"alg":["RS256"]}`)) + "." + b64([]byte(`{"jti":"j"}`)) + ".c2ln"},
		{"alg case", b64([]byte(`{"alg":"rs256"}`)) + "." + b64([]byte(`{"jti":"j"}`)) + ".c2ln"},
	} {
		err := v.Verify(tc.token, &c)
		if !errors.Is(err, jwtverify.ErrAlgorithmNotAllowed) || err.Error() != "The specified alg value is not allowed" {
			t.Errorf("%s: Verify = %v; want alg not allowed", tc.name, err)
		}
	}
}

// Algorithm confusion: with HS256 and RS256 both allowed, an HS256 token whose "secret" is
// the RSA public key's PEM never meets that key.
func TestAlgorithmConfusionImpossible(t *testing.T) {
	k := testKeys()
	pubPEM := pemOf(t, &k.rsa.PublicKey)
	v := newVerifier(t, jwtverify.Keys{
		Algorithms: []string{"HS256", "RS256"},
		HMAC:       []jwtverify.HMACKey{{Secret: k.hs}},
		PEM:        []jwtverify.PEMKey{{PEM: pubPEM}},
	}, jwtverify.Options{})
	var c jwtverify.Claims
	forged := sign(t, "HS256", []byte(pubPEM), claimsAt(testNow, "j"), nil)
	if err := v.Verify(forged, &c); !errors.Is(err, jwtverify.ErrTokenSignatureInvalid) {
		t.Fatalf("HS256 signed with the RSA public key: Verify = %v; want a signature failure", err)
	}
	// And the PEM text cannot be configured as an HMAC secret (PyJWT refuses it too).
	_, err := jwtverify.NewKeySet(jwtverify.Keys{Algorithms: []string{"HS256"}, HMAC: []jwtverify.HMACKey{{Secret: []byte(pubPEM)}}})
	if err == nil || !strings.Contains(err.Error(), "hmac_secrets[0]: secret is a PEM key") {
		t.Fatalf("PEM as HMAC secret: err = %v", err)
	}
}

// kid selection is the filter's keyFunc: keys of the family not pinned to another
// algorithm; with a kid, the keys of that kid, else the keys without a kid.
func TestKIDSelection(t *testing.T) {
	k := testKeys()
	a, b, c := []byte("secret-a-secret-a"), []byte("secret-b-secret-b"), []byte("secret-c-secret-c")
	keys := jwtverify.Keys{
		Algorithms: []string{"HS256", "HS384"},
		HMAC:       []jwtverify.HMACKey{{KID: "a", Secret: a}, {KID: "b", Secret: b}, {Secret: c}},
		JWKS:       jwks(t, map[string]string{"kty": "oct", "kid": "p", "alg": "HS384", "k": b64(k.hs)}),
	}
	v := newVerifier(t, keys, jwtverify.Options{})
	tests := []struct {
		name   string
		alg    string
		key    []byte
		header map[string]any
		ok     bool
	}{
		{"kid a with a", "HS256", a, map[string]any{"kid": "a"}, true},
		{"kid a with b", "HS256", b, map[string]any{"kid": "a"}, false},
		{"no kid: any key", "HS256", b, nil, true},
		{"no kid: unnamed key", "HS256", c, nil, true},
		{"empty kid is no kid", "HS256", a, map[string]any{"kid": ""}, true},
		{"unknown kid: unnamed keys", "HS256", c, map[string]any{"kid": "zzz"}, true},
		{"unknown kid: not a named key", "HS256", a, map[string]any{"kid": "zzz"}, false},
		{"pinned to HS384", "HS384", k.hs, map[string]any{"kid": "p"}, true},
		{"pinned key refuses HS256", "HS256", k.hs, map[string]any{"kid": "p"}, false},
		{"kid is case-sensitive", "HS256", a, map[string]any{"kid": "A"}, false},
	}
	var cl jwtverify.Claims
	for _, tt := range tests {
		token := sign(t, tt.alg, tt.key, claimsAt(testNow, "j"), tt.header)
		err := v.Verify(token, &cl)
		if (err == nil) != tt.ok {
			t.Errorf("%s: Verify = %v; want ok=%v", tt.name, err, tt.ok)
		}
		if err != nil && err.Error() != "Signature verification failed" {
			t.Errorf("%s: message %q", tt.name, err)
		}
		if kid, _ := tt.header["kid"].(string); err == nil && string(cl.KID) != kid {
			t.Errorf("%s: KID = %q; want %q", tt.name, cl.KID, kid)
		}
	}
}

// Time checks are golang-jwt's with WithLeeway and WithIssuedAt, to the nanosecond.
func TestTimeChecks(t *testing.T) {
	now := testNow // 12:00:00.5
	sec := now.Unix()
	leeway := 1500 * time.Millisecond
	tests := []struct {
		name   string
		claims string
		want   error
	}{
		{"exp in the future", fmt.Sprintf(`{"exp":%d}`, sec+1), nil},
		{"exp now, within leeway", fmt.Sprintf(`{"exp":%d}`, sec), nil},
		{"exp 1s ago: 11:59:59 + 1.5s = now, expired", fmt.Sprintf(`{"exp":%d}`, sec-1), jwtverify.ErrTokenExpired},
		{"exp 0.5s ago: rounded down to 11:59:59", fmt.Sprintf(`{"exp":%d.5}`, sec-1), jwtverify.ErrTokenExpired},
		{"exp fraction rounds down", fmt.Sprintf(`{"exp":%d.999}`, sec-2), jwtverify.ErrTokenExpired},
		{"exp as exponent", `{"exp":1.7e9}`, jwtverify.ErrTokenExpired},
		{"exp far future", `{"exp":4e18}`, nil},
		{"exp beyond 2^62", `{"exp":5e18}`, jwtverify.ErrInvalidType},
		{"exp out of float range", `{"exp":1e400}`, jwtverify.ErrTokenMalformed},
		{"exp a string", `{"exp":"1"}`, jwtverify.ErrInvalidType},
		{"exp null", `{"exp":null}`, jwtverify.ErrInvalidType},
		{"exp 0", `{"exp":0}`, jwtverify.ErrTokenExpired},
		{"nbf within leeway", fmt.Sprintf(`{"nbf":%d}`, sec+1), nil},
		{"nbf 2s ahead: 12:00:02 - 1.5s = now, valid", fmt.Sprintf(`{"nbf":%d}`, sec+2), nil},
		{"nbf 3s ahead", fmt.Sprintf(`{"nbf":%d}`, sec+3), jwtverify.ErrTokenNotValidYet},
		{"nbf fraction rounds down", fmt.Sprintf(`{"nbf":%d.9}`, sec+1), nil},
		{"nbf a bool", `{"nbf":true}`, jwtverify.ErrInvalidType},
		{"iat within leeway", fmt.Sprintf(`{"iat":%d}`, sec+1), nil},
		{"iat 2s ahead: = now, valid", fmt.Sprintf(`{"iat":%d}`, sec+2), nil},
		{"iat 3s ahead", fmt.Sprintf(`{"iat":%d}`, sec+3), jwtverify.ErrTokenUsedBeforeIssued},
		{"iat negative fraction", `{"iat":-1.5}`, nil},
		{"iat an object", `{"iat":{}}`, jwtverify.ErrInvalidType},
	}
	v := hsVerifier(t, jwtverify.Options{Leeway: leeway})
	var c jwtverify.Claims
	for _, tt := range tests {
		token := signRaw(t, "HS256", testKeys().hs, `{"alg":"HS256"}`, tt.claims)
		err := v.Verify(token, &c)
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s: Verify(%s) = %v; want %v", tt.name, tt.claims, err, tt.want)
		}
	}
}

// ValidUntil is the exact instant the token stops being accepted: one nanosecond before it,
// the token passes; at it, it is expired.
func TestValidUntilIsExact(t *testing.T) {
	leeway := 2500 * time.Millisecond
	exp := testNow.Unix() + 60
	var clock time.Time
	v := hsVerifier(t, jwtverify.Options{Leeway: leeway, Now: func() time.Time { return clock }})
	token := signRaw(t, "HS256", testKeys().hs, `{"alg":"HS256"}`, fmt.Sprintf(`{"exp":%d.75,"jti":"j"}`, exp))
	var c jwtverify.Claims
	clock = testNow
	if err := v.Verify(token, &c); err != nil {
		t.Fatal(err)
	}
	want := time.Unix(exp, 0).Add(leeway)
	if !c.ValidUntil.Equal(want) || c.Exp != exp {
		t.Fatalf("ValidUntil = %v, Exp = %d; want %v, %d", c.ValidUntil, c.Exp, want, exp)
	}
	clock = want.Add(-time.Nanosecond)
	if err := v.Verify(token, &c); err != nil {
		t.Fatalf("1ns before ValidUntil: %v", err)
	}
	clock = want
	if err := v.Verify(token, &c); !errors.Is(err, jwtverify.ErrTokenExpired) {
		t.Fatalf("at ValidUntil: %v; want expired", err)
	}
}

func TestClaimsAsPyJWTReadsThem(t *testing.T) {
	tests := []struct {
		name   string
		claims string
		opts   jwtverify.Options
		check  func(c *jwtverify.Claims) bool
		want   error
	}{
		{"integer sub kept as decimal text", `{"sub":12345678901234567890}`, jwtverify.Options{},
			func(c *jwtverify.Claims) bool { return string(c.Sub) == "12345678901234567890" && c.SubIsNumber }, nil},
		{"-0 sub is 0, as str(int) gives", `{"sub":-0}`, jwtverify.Options{},
			func(c *jwtverify.Claims) bool { return string(c.Sub) == "0" && c.SubIsNumber }, nil},
		{"float sub refused", `{"sub":1.5}`, jwtverify.Options{}, nil, jwtverify.ErrInvalidType},
		{"exponent sub refused (Python reads a float)", `{"sub":1e3}`, jwtverify.Options{}, nil, jwtverify.ErrInvalidType},
		{"bool sub refused", `{"sub":true}`, jwtverify.Options{}, nil, jwtverify.ErrInvalidType},
		{"integer sub refused when strict", `{"sub":42}`, jwtverify.Options{StrictSubject: true}, nil, jwtverify.ErrInvalidType},
		{"string sub", `{"sub":"u\u00e9"}`, jwtverify.Options{StrictSubject: true},
			func(c *jwtverify.Claims) bool { return string(c.Sub) == "ué" && !c.SubIsNumber }, nil},
		{"escapes unescaped", `{"jti":"a\"b\\c\/d\u00e9\ud83d\ude00\n"}`, jwtverify.Options{},
			func(c *jwtverify.Claims) bool { return string(c.JTI) == "a\"b\\c/dé😀\n" }, nil},
		{"escaped member name is that name", `{"\u006a\u0074\u0069":"x"}`, jwtverify.Options{},
			func(c *jwtverify.Claims) bool { return string(c.JTI) == "x" }, nil},
		{"names are case-sensitive", `{"JTI":"x","Sub":"y","EXP":1}`, jwtverify.Options{},
			func(c *jwtverify.Claims) bool { return !c.HasJTI && !c.HasSub && !c.HasExp }, nil},
		{"empty jti is present", `{"jti":""}`, jwtverify.Options{},
			func(c *jwtverify.Claims) bool { return c.HasJTI && len(c.JTI) == 0 }, nil},
		{"jti of 256 bytes", `{"jti":"` + strings.Repeat("j", 256) + `"}`, jwtverify.Options{},
			func(c *jwtverify.Claims) bool { return len(c.JTI) == 256 }, nil},
		{"jti of 257 bytes", `{"jti":"` + strings.Repeat("j", 257) + `"}`, jwtverify.Options{}, nil, jwtverify.ErrInvalidType},
		{"jti a number", `{"jti":7}`, jwtverify.Options{}, nil, jwtverify.ErrInvalidType},
		{"jti null", `{"jti":null}`, jwtverify.Options{}, nil, jwtverify.ErrInvalidType},
		{"type refresh", `{"type":"refresh"}`, jwtverify.Options{},
			func(c *jwtverify.Claims) bool { return c.IsRefresh() }, nil},
		{"type not a string is access", `{"type":1}`, jwtverify.Options{},
			func(c *jwtverify.Claims) bool { return !c.IsRefresh() && !c.HasType }, nil},
		{"aud string", `{"aud":"x"}`, jwtverify.Options{},
			func(c *jwtverify.Claims) bool { return c.HasAud && len(c.Aud) == 1 && string(c.Aud[0]) == "x" }, nil},
		{"aud array", `{"aud":["x","y\u00e9"]}`, jwtverify.Options{},
			func(c *jwtverify.Claims) bool { return c.HasAud && len(c.Aud) == 2 && string(c.Aud[1]) == "yé" }, nil},
		{"aud of any type when not checked", `{"aud":[1,{"a":[]}]}`, jwtverify.Options{},
			func(c *jwtverify.Claims) bool { return !c.HasAud && len(c.Aud) == 0 }, nil},
		{"aud matches one", `{"aud":["x","api"]}`, jwtverify.Options{Audiences: []string{"api", "web"}}, nil, nil},
		{"aud matches none", `{"aud":["x"]}`, jwtverify.Options{Audiences: []string{"api"}}, nil, jwtverify.ErrTokenInvalidAudience},
		{"aud missing", `{}`, jwtverify.Options{Audiences: []string{"api"}}, nil, jwtverify.ErrTokenRequiredClaimMissing},
		{"aud empty", `{"aud":[]}`, jwtverify.Options{Audiences: []string{"api"}}, nil, jwtverify.ErrTokenRequiredClaimMissing},
		{"aud with a number", `{"aud":["api",1]}`, jwtverify.Options{Audiences: []string{"api"}}, nil, jwtverify.ErrTokenInvalidAudience},
		{"aud a number", `{"aud":5}`, jwtverify.Options{Audiences: []string{"api"}}, nil, jwtverify.ErrTokenInvalidAudience},
		{"iss allowed", `{"iss":"https://a"}`, jwtverify.Options{Issuers: []string{"https://b", "https://a"}},
			func(c *jwtverify.Claims) bool { return string(c.Iss) == "https://a" }, nil},
		{"iss not allowed", `{"iss":"https://c"}`, jwtverify.Options{Issuers: []string{"https://a"}}, nil, jwtverify.ErrTokenInvalidIssuer},
		{"iss missing", `{}`, jwtverify.Options{Issuers: []string{"https://a"}}, nil, jwtverify.ErrTokenRequiredClaimMissing},
		{"iss not a string", `{"iss":1}`, jwtverify.Options{Issuers: []string{"1"}}, nil, jwtverify.ErrTokenInvalidIssuer},
		{"other members skipped", `{"a":[1,{"b":[true,false,null,"\u0000"]}],"c":-1.5e-3,"jti":"j"}`, jwtverify.Options{},
			func(c *jwtverify.Claims) bool { return string(c.JTI) == "j" }, nil},
		{"duplicate jti refused", `{"jti":"a","jti":"b"}`, jwtverify.Options{}, nil, jwtverify.ErrTokenMalformed},
		{"duplicate by escape refused", `{"jti":"a","j\u0074i":"b"}`, jwtverify.Options{}, nil, jwtverify.ErrTokenMalformed},
		{"duplicate unread member allowed", `{"x":1,"x":2,"jti":"a"}`, jwtverify.Options{}, nil, nil},
		{"lone surrogate in jti refused", `{"jti":"\ud800"}`, jwtverify.Options{}, nil, jwtverify.ErrTokenMalformed},
		{"lone surrogate elsewhere allowed", `{"x":"\ud800","jti":"a"}`, jwtverify.Options{}, nil, nil},
		{"payload not an object", `[]`, jwtverify.Options{}, nil, jwtverify.ErrTokenMalformed},
		{"payload null", `null`, jwtverify.Options{}, nil, jwtverify.ErrTokenMalformed},
		{"nested 255 deep", `{"a":` + strings.Repeat("[", 255) + strings.Repeat("]", 255) + `}`, jwtverify.Options{}, nil, nil},
		{"nested 256 deep", `{"a":` + strings.Repeat("[", 256) + strings.Repeat("]", 256) + `}`, jwtverify.Options{}, nil, jwtverify.ErrTokenMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := hsVerifier(t, tt.opts)
			token := signRaw(t, "HS256", testKeys().hs, `{"alg":"HS256"}`, tt.claims)
			var c jwtverify.Claims
			err := v.Verify(token, &c)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("Verify(%s) = %v; want %v", tt.claims, err, tt.want)
			}
			if tt.check != nil && !tt.check(&c) {
				t.Fatalf("Verify(%s): claims %+v", tt.claims, c)
			}
		})
	}
}

// Every malformed shape is refused with its sentinel and PyJWT's message (pyjwt_test.go
// compares the messages with PyJWT itself).
func TestMalformed(t *testing.T) {
	v := hsVerifier(t, jwtverify.Options{MaxTokenBytes: 4096})
	good := sign(t, "HS256", testKeys().hs, claimsAt(testNow, "j"), nil)
	p := strings.Split(good, ".")
	hdr := func(h string) string { return b64([]byte(h)) + "." + p[1] + "." + p[2] }
	pay := func(c string) string { return p[0] + "." + b64([]byte(c)) + "." + p[2] }
	tests := []struct {
		token, msg string
		want       error
	}{
		{"", "Not enough segments", jwtverify.ErrTokenMalformed},
		{"abc", "Not enough segments", jwtverify.ErrTokenMalformed},
		{p[0] + "." + p[1], "Not enough segments", jwtverify.ErrTokenMalformed},
		{good + ".x", "Invalid payload padding", jwtverify.ErrTokenMalformed},
		{"*" + good, "Invalid header padding", jwtverify.ErrTokenMalformed},
		{p[0] + "=." + p[1] + "." + p[2], "Invalid header padding", jwtverify.ErrTokenMalformed},
		{p[0] + "." + p[1] + "=." + p[2], "Invalid payload padding", jwtverify.ErrTokenMalformed},
		{p[0] + "." + p[1] + "." + p[2] + "=", "Invalid crypto padding", jwtverify.ErrTokenMalformed},
		{p[0] + "." + p[1] + "." + p[2] + "!", "Invalid crypto padding", jwtverify.ErrTokenMalformed},
		{hdr(`{"alg":"HS256"`), "Invalid header string: not valid JSON", jwtverify.ErrTokenMalformed},
		{hdr(`["HS256"]`), "Invalid header string: must be a json object", jwtverify.ErrTokenMalformed},
		{hdr("{\"alg\":\"HS256\",\"x\":\"\xff\"}"), "Invalid header string: not valid UTF-8", jwtverify.ErrTokenMalformed},
		{hdr(`{"alg":"HS256","alg":"HS256"}`), `Invalid header string: duplicate member "alg"`, jwtverify.ErrTokenMalformed},
		{hdr(`{"alg":"HS256","kid":1}`), "Key ID header parameter must be a string", jwtverify.ErrTokenUnverifiable},
		{hdr(`{"alg":"HS256","crit":[]}`), "Invalid 'crit' header: must be a non-empty list", jwtverify.ErrTokenUnverifiable},
		{hdr(`{"alg":"HS256","crit":"exp"}`), "Invalid 'crit' header: must be a non-empty list", jwtverify.ErrTokenUnverifiable},
		{hdr(`{"alg":"HS256","crit":[1]}`), "Invalid 'crit' header: values must be strings", jwtverify.ErrTokenUnverifiable},
		{hdr(`{"alg":"HS256","crit":["exp"],"exp":1}`), "Unsupported critical extension: exp", jwtverify.ErrTokenUnverifiable},
		{hdr(`{"alg":"HS256","crit":["b64"]}`), "Critical extension 'b64' is missing from headers", jwtverify.ErrTokenUnverifiable},
		{hdr(`{"alg":"HS256","b64":false}`), `It is required that you pass in a value for the "detached_payload" argument to decode a message having the b64 header set to false.`, jwtverify.ErrTokenUnverifiable},
		{pay(`{"jti":`), "Invalid payload string: not valid JSON", jwtverify.ErrTokenMalformed},
		{pay(`"jti"`), "Invalid payload string: must be a json object", jwtverify.ErrTokenMalformed},
		{pay(`{"jti":"j"} x`), "Invalid payload string: not valid JSON", jwtverify.ErrTokenMalformed},
		{pay(`{"a":1e999}`), "Invalid payload string: a number is out of the range of a 64-bit float", jwtverify.ErrTokenMalformed},
		{pay(`{"a":NaN}`), "Invalid payload string: not valid JSON", jwtverify.ErrTokenMalformed},
		{pay("\xef\xbb\xbf{}"), "Invalid payload string: not valid JSON", jwtverify.ErrTokenMalformed},
		{pay(`{"jti":"j"}`), "Signature verification failed", jwtverify.ErrTokenSignatureInvalid},
		{good + strings.Repeat("A", 4096), "Token is too large", jwtverify.ErrTokenMalformed},
	}
	var c jwtverify.Claims
	for _, tt := range tests {
		err := v.Verify(tt.token, &c)
		if !errors.Is(err, tt.want) || err.Error() != tt.msg {
			t.Errorf("Verify(%.60q) = %v; want %q (%v)", tt.token, err, tt.msg, tt.want)
		}
	}
}

// The checks run in flask-jwt-extended's order, so a token with several problems gets the
// message the app would give.
func TestCheckOrder(t *testing.T) {
	k := testKeys()
	v := hsVerifier(t, jwtverify.Options{Audiences: []string{"api"}})
	sec := testNow.Unix()
	tests := []struct {
		name, header, claims string
		key                  []byte
		want                 string
	}{
		{"payload JSON before alg", `{"alg":"none"}`, `{`, k.hs, "Invalid payload string: not valid JSON"},
		{"payload JSON before signature", `{"alg":"HS256"}`, `[]`, k.hsOther, "Invalid payload string: must be a json object"},
		{"kid before crit", `{"alg":"HS256","kid":1,"crit":[]}`, `{}`, k.hs, "Key ID header parameter must be a string"},
		{"alg before signature", `{"alg":"HS512"}`, `{}`, k.hsOther, "The specified alg value is not allowed"},
		{"signature before claims", `{"alg":"HS256"}`, `{"exp":"x"}`, k.hsOther, "Signature verification failed"},
		{"iat before nbf", `{"alg":"HS256"}`, fmt.Sprintf(`{"iat":%d,"nbf":"x"}`, sec+100), k.hs, "The token is not yet valid (iat)"},
		{"nbf before exp type", `{"alg":"HS256"}`, fmt.Sprintf(`{"nbf":%d,"exp":"x"}`, sec+100), k.hs, "The token is not yet valid (nbf)"},
		{"aud before expiry", `{"alg":"HS256"}`, fmt.Sprintf(`{"exp":%d,"aud":"web"}`, sec-100), k.hs, "Invalid audience"},
		{"sub type before expiry", `{"alg":"HS256"}`, fmt.Sprintf(`{"exp":%d,"aud":"api","sub":[]}`, sec-100), k.hs, "Subject must be a string"},
		{"expiry last", `{"alg":"HS256"}`, fmt.Sprintf(`{"exp":%d,"aud":"api","sub":"u","jti":"j"}`, sec-100), k.hs, "Signature has expired"},
	}
	var c jwtverify.Claims
	for _, tt := range tests {
		err := v.Verify(signRaw(t, "HS256", tt.key, tt.header, tt.claims), &c)
		if err == nil || err.Error() != tt.want {
			t.Errorf("%s: Verify = %v; want %q", tt.name, err, tt.want)
		}
	}
}

// A verification allocates nothing once the Claims buffer has grown, for an accepted HS256
// token and on the error paths that hostile input reaches most.
func TestZeroAllocations(t *testing.T) {
	k := testKeys()
	v := hsVerifier(t, jwtverify.Options{Audiences: []string{"api"}})
	claims := claimsAt(testNow, "2b5c0d1e-3f4a-4b6c-8d7e-9f0a1b2c3d4e")
	claims["aud"] = []string{"web", "api"}
	claims["sub"] = 42
	good := sign(t, "HS256", k.hs, claims, map[string]any{"kid": "k"})
	p := strings.Split(good, ".")
	cases := map[string]string{
		"valid":            good,
		"segments":         "abc.def",
		"header base64":    "!" + good,
		"header JSON":      b64([]byte(`{"alg":`)) + "." + p[1] + "." + p[2],
		"payload base64":   p[0] + ".!" + p[1] + "." + p[2],
		"signature base64": good + "!",
		"payload JSON":     p[0] + "." + b64([]byte(`{"jti":`)) + "." + p[2],
		"duplicate":        p[0] + "." + b64([]byte(`{"jti":"a","jti":"b"}`)) + "." + p[2],
		"alg":              b64([]byte(`{"alg":"none"}`)) + "." + p[1] + ".",
		"signature":        p[0] + "." + p[1] + "." + b64(make([]byte, 32)),
		"expired":          sign(t, "HS256", k.hs, map[string]any{"exp": testNow.Unix() - 10}, nil),
	}
	var c jwtverify.Claims
	_ = v.Verify(good+strings.Repeat("A", 200), &c) // grow the buffer
	for name, token := range cases {
		if n := testing.AllocsPerRun(200, func() { _ = v.Verify(token, &c) }); n != 0 {
			t.Errorf("%s: %v allocations per Verify; want 0", name, n)
		}
	}
	if err := v.Verify(good, &c); err != nil || string(c.Sub) != "42" || len(c.Aud) != 2 {
		t.Fatalf("Verify = %v, %+v", err, c)
	}
}

// The verifier is used from many goroutines in native tests: each with its own Claims,
// sharing keys (and their HMAC states). Run with -race.
func TestConcurrentUse(t *testing.T) {
	k := testKeys()
	v := newVerifier(t, jwtverify.Keys{
		Algorithms: []string{"HS256", "HS512", "ES256", "EdDSA"},
		HMAC:       []jwtverify.HMACKey{{Secret: k.hs}},
		PEM:        []jwtverify.PEMKey{{PEM: pemOf(t, &k.p256.PublicKey)}, {PEM: pemOf(t, k.ed.Public())}},
	}, jwtverify.Options{})
	tokens := []string{
		sign(t, "HS256", k.hs, claimsAt(testNow, "a"), nil),
		sign(t, "HS512", k.hs, claimsAt(testNow, "b"), nil),
		sign(t, "ES256", k.p256, claimsAt(testNow, "c"), nil),
		sign(t, "EdDSA", k.ed, claimsAt(testNow, "d"), nil),
		sign(t, "HS256", k.hsOther, claimsAt(testNow, "e"), nil),
	}
	const goroutines, loops = 8, 200
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c jwtverify.Claims
			for i := range loops {
				tok := tokens[(g+i)%len(tokens)]
				err := v.Verify(tok, &c)
				wantOK := (g+i)%len(tokens) != 4
				if (err == nil) != wantOK || wantOK && string(c.JTI) != string(rune('a'+(g+i)%len(tokens))) {
					errs <- fmt.Errorf("goroutine %d loop %d: err %v jti %q", g, i, err, c.JTI)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// SetKeys swaps the key set whole: a token signed by the new key passes from then on, and
// one signed by the old key no longer does.
func TestSetKeys(t *testing.T) {
	k := testKeys()
	v := hsVerifier(t, jwtverify.Options{})
	next, err := jwtverify.NewKeySet(jwtverify.Keys{Algorithms: []string{"HS256"}, HMAC: []jwtverify.HMACKey{{Secret: k.hsOther}}})
	if err != nil {
		t.Fatal(err)
	}
	oldTok := sign(t, "HS256", k.hs, claimsAt(testNow, "j"), nil)
	newTok := sign(t, "HS256", k.hsOther, claimsAt(testNow, "j"), nil)
	var c jwtverify.Claims
	if v.Verify(oldTok, &c) != nil || v.Verify(newTok, &c) == nil {
		t.Fatal("before SetKeys")
	}
	v.SetKeys(next)
	if v.Keys() != next || v.Verify(oldTok, &c) == nil || v.Verify(newTok, &c) != nil {
		t.Fatal("after SetKeys")
	}
}

func TestNewOptions(t *testing.T) {
	ks, err := jwtverify.NewKeySet(jwtverify.Keys{Algorithms: []string{"HS256"}, HMAC: []jwtverify.HMACKey{{Secret: []byte("s")}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jwtverify.New(ks, jwtverify.Options{Leeway: -time.Second}); err == nil {
		t.Error("negative leeway accepted")
	}
	if _, err := jwtverify.New(nil, jwtverify.Options{}); err == nil {
		t.Error("nil key set accepted")
	}
}

// VerifyPayload checks claims alone (jwt_authn's forwarded payload), with Verify's checks.
func TestVerifyPayload(t *testing.T) {
	v := hsVerifier(t, jwtverify.Options{Audiences: []string{"api"}})
	var c jwtverify.Claims
	payload := b64([]byte(fmt.Sprintf(`{"jti":"j","sub":7,"aud":"api","exp":%d}`, testNow.Unix()+60)))
	for _, p := range []string{payload, payload + strings.Repeat("=", (4-len(payload)%4)%4)} {
		if err := v.VerifyPayload(p, &c); err != nil || string(c.JTI) != "j" || string(c.Sub) != "7" || c.Alg != "" {
			t.Fatalf("VerifyPayload(%q) = %v, %+v", p, err, c)
		}
	}
	for _, tt := range []struct{ payload, msg string }{
		{"!!", "Invalid payload padding"},
		{b64([]byte(`{"jti":"j"`)), "Invalid payload string: not valid JSON"},
		{b64([]byte(`{"jti":"j","aud":"web"}`)), "Invalid audience"},
		{b64([]byte(fmt.Sprintf(`{"jti":"j","aud":"api","exp":%d}`, testNow.Unix()-60))), "Signature has expired"},
	} {
		if err := v.VerifyPayload(tt.payload, &c); err == nil || err.Error() != tt.msg {
			t.Errorf("VerifyPayload(%q) = %v; want %q", tt.payload, err, tt.msg)
		}
	}
	if n := testing.AllocsPerRun(100, func() { _ = v.VerifyPayload(payload, &c) }); n != 0 {
		t.Errorf("VerifyPayload: %v allocations; want 0", n)
	}
}
