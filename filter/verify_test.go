package filter

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

func mustConfig(t testing.TB, config string) *Config {
	t.Helper()
	c, err := ParseConfig([]byte(config), func(string) string { return "" })
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return c
}

func verifierFor(t testing.TB, config string) *verifier {
	return newVerifier(mustConfig(t, config), func() time.Time { return testNow })
}

func TestVerifyEveryAlgorithm(t *testing.T) {
	k := testKeys()
	rsaPEM, p256, p384, p521, ed := pemOf(t, &k.rsa.PublicKey), pemOf(t, &k.p256.PublicKey), pemOf(t, &k.p384.PublicKey), pemOf(t, &k.p521.PublicKey), pemOf(t, k.edPub)
	pem := func(algs, p string) string {
		return `{"jwt":{"algorithms":` + algs + `,"public_keys":[{"pem":` + jsonString(p) + `}]}}`
	}
	tests := []struct {
		alg    jwt.SigningMethod
		key    any
		config string
	}{
		{jwt.SigningMethodHS256, k.hs, `{"jwt":{"algorithms":["HS256"],"hmac_secrets":[{"secret":` + jsonString(string(k.hs)) + `}]}}`},
		{jwt.SigningMethodHS384, k.hs, `{"jwt":{"algorithms":["HS384"],"hmac_secrets":[{"secret_base64":"` + base64.StdEncoding.EncodeToString(k.hs) + `"}]}}`},
		{jwt.SigningMethodHS512, k.hs, `{"jwt":{"algorithms":["HS512"],"hmac_secrets":[{"secret":` + jsonString(string(k.hs)) + `}]}}`},
		{jwt.SigningMethodRS256, k.rsa, pem(`["RS256"]`, rsaPEM)},
		{jwt.SigningMethodRS384, k.rsa, pem(`["RS384"]`, rsaPEM)},
		{jwt.SigningMethodRS512, k.rsa, pem(`["RS512"]`, rsaPEM)},
		{jwt.SigningMethodPS256, k.rsa, pem(`["PS256"]`, rsaPEM)},
		{jwt.SigningMethodPS384, k.rsa, pem(`["PS384"]`, rsaPEM)},
		{jwt.SigningMethodPS512, k.rsa, pem(`["PS512"]`, rsaPEM)},
		{jwt.SigningMethodES256, k.p256, pem(`["ES256"]`, p256)},
		{jwt.SigningMethodES384, k.p384, pem(`["ES384"]`, p384)},
		{jwt.SigningMethodES512, k.p521, pem(`["ES512"]`, p521)},
		{jwt.SigningMethodEdDSA, k.ed, pem(`["EdDSA"]`, ed)},
		{jwt.SigningMethodRS256, k.rsa, `{"jwt":{"algorithms":["RS256"],"jwks":` + jwksOf(t, jwkRSA("r1", "RS256", &k.rsa.PublicKey)) + `}}`},
		{jwt.SigningMethodES256, k.p256, `{"jwt":{"algorithms":["ES256"],"jwks":` + jwksOf(t, jwkEC("e1", "", &k.p256.PublicKey)) + `}}`},
		{jwt.SigningMethodEdDSA, k.ed, `{"jwt":{"algorithms":["EdDSA"],"jwks":` + jwksOf(t, jwkEd("d1", k.edPub)) + `}}`},
	}
	for _, tt := range tests {
		t.Run(tt.alg.Alg(), func(t *testing.T) {
			v := verifierFor(t, tt.config)
			token := sign(t, tt.alg, tt.key, claimsAt(testNow, "jti-1"), nil)
			info, rej := v.verify(token)
			if rej != nil {
				t.Fatalf("verify(%s) rejected: %s", tt.alg.Alg(), rej.message)
			}
			h := testListHasher
			info.setKeys(h, v.byIssuer)
			if info.jti != "jti-1" || info.tokenKey != h.TokenKey("", "jti-1") || info.subKey != h.SubjectKey("", "user-1") || !info.hasIat {
				t.Fatalf("info = %+v", info)
			}
			// A token signed with another key of the same kind fails.
			other := map[string]any{"HS": k.hsOther, "RS": k.rsa2, "PS": k.rsa2}[tt.alg.Alg()[:2]]
			if other != nil {
				bad := sign(t, tt.alg, other, claimsAt(testNow, "jti-1"), nil)
				if _, rej := v.verify(bad); rej == nil || rej.message != "Signature verification failed" {
					t.Fatalf("wrong key: rejection = %+v; want signature failure", rej)
				}
			}
		})
	}
}

func TestVerifyRejections(t *testing.T) {
	k := testKeys()
	hsCfg := `{"jwt":{"hmac_secrets":[{"secret":` + jsonString(string(k.hs)) + `}]}}`
	rsaPEM := pemOf(t, &k.rsa.PublicKey)
	rsaOnly := `{"jwt":{"algorithms":["RS256"],"public_keys":[{"pem":` + jsonString(rsaPEM) + `}]}}`
	rsaAndHS := `{"jwt":{"algorithms":["RS256","HS256"],"public_keys":[{"pem":` + jsonString(rsaPEM) + `}],"hmac_secrets":[{"secret":` + jsonString(string(k.hs)) + `}]}}`
	with := func(mut func(jwt.MapClaims)) jwt.MapClaims {
		c := claimsAt(testNow, "j")
		mut(c)
		return c
	}
	noneToken := func() string {
		s, _ := jwt.NewWithClaims(jwt.SigningMethodNone, claimsAt(testNow, "j")).SignedString(jwt.UnsafeAllowNoneSignatureType)
		return s
	}()
	tests := []struct {
		name, config, token string
		wantKind            rejectKind
		wantMsg             string
	}{
		{"alg none", hsCfg, noneToken, rejectInvalid, "The specified alg value is not allowed"},
		{"HS256 signed with the RSA public key (confusion)", rsaOnly, sign(t, jwt.SigningMethodHS256, []byte(rsaPEM), claimsAt(testNow, "j"), nil), rejectInvalid, "The specified alg value is not allowed"},
		{"HS256 signed with the RSA public key, HS256 allowed", rsaAndHS, sign(t, jwt.SigningMethodHS256, []byte(rsaPEM), claimsAt(testNow, "j"), nil), rejectInvalid, "Signature verification failed"},
		{"RS256 token when only HS256 allowed", hsCfg, sign(t, jwt.SigningMethodRS256, k.rsa, claimsAt(testNow, "j"), nil), rejectInvalid, "The specified alg value is not allowed"},
		{"expired", hsCfg, hs256(t, with(func(c jwt.MapClaims) { c["exp"] = testNow.Add(-time.Second).Unix() })), rejectExpired, "Token has expired"},
		{"not yet valid", hsCfg, hs256(t, with(func(c jwt.MapClaims) { c["nbf"] = testNow.Add(time.Minute).Unix() })), rejectInvalid, "The token is not yet valid (nbf)"},
		{"issued in the future", hsCfg, hs256(t, with(func(c jwt.MapClaims) { c["iat"] = testNow.Add(time.Minute).Unix(); delete(c, "nbf") })), rejectInvalid, "The token is not yet valid (iat)"},
		{"missing jti", hsCfg, hs256(t, with(func(c jwt.MapClaims) { delete(c, "jti") })), rejectInvalid, "Missing claim: jti"},
		{"jti too long", hsCfg, hs256(t, with(func(c jwt.MapClaims) { c["jti"] = strings.Repeat("j", 300) })), rejectInvalid, "Invalid claim: jti is too long"},
		{"refresh where access only", `{"jwt":{"token_types":["access"],"hmac_secrets":[{"secret":` + jsonString(string(k.hs)) + `}]}}`,
			hs256(t, with(func(c jwt.MapClaims) { c["type"] = "refresh" })), rejectInvalid, "Only non-refresh tokens are allowed"},
		{"access where refresh only", `{"jwt":{"token_types":["refresh"],"hmac_secrets":[{"secret":` + jsonString(string(k.hs)) + `}]}}`,
			hs256(t, claimsAt(testNow, "j")), rejectInvalid, "Only refresh tokens are allowed"},
		{"no type claim is access", `{"jwt":{"token_types":["refresh"],"hmac_secrets":[{"secret":` + jsonString(string(k.hs)) + `}]}}`,
			hs256(t, with(func(c jwt.MapClaims) { delete(c, "type") })), rejectInvalid, "Only refresh tokens are allowed"},
		{"wrong issuer", `{"jwt":{"issuers":["https://good"],"hmac_secrets":[{"secret":` + jsonString(string(k.hs)) + `}]}}`,
			hs256(t, with(func(c jwt.MapClaims) { c["iss"] = "https://evil" })), rejectInvalid, "Invalid issuer"},
		{"wrong audience", `{"jwt":{"audiences":["api"],"hmac_secrets":[{"secret":` + jsonString(string(k.hs)) + `}]}}`,
			hs256(t, with(func(c jwt.MapClaims) { c["aud"] = "other" })), rejectInvalid, "Audience doesn't match"},
		{"two segments", hsCfg, "abc.def", rejectInvalid, "Not enough segments"},
		{"four segments", hsCfg, "a.b.c.d", rejectInvalid, "Not enough segments"},
		{"garbage header", hsCfg, "!!!.e30.sig", rejectInvalid, "Invalid token"},
		{"unknown kid", `{"jwt":{"algorithms":["RS256"],"jwks":` + jwksOf(t, jwkRSA("k1", "", &k.rsa.PublicKey)) + `}}`,
			sign(t, jwt.SigningMethodRS256, k.rsa, claimsAt(testNow, "j"), map[string]any{"kid": "k9"}), rejectInvalid, "Signature verification failed"},
		{"kid names another key", `{"jwt":{"algorithms":["RS256"],"jwks":` + jwksOf(t, jwkRSA("k1", "", &k.rsa.PublicKey), jwkRSA("k2", "", &k.rsa2.PublicKey)) + `}}`,
			sign(t, jwt.SigningMethodRS256, k.rsa, claimsAt(testNow, "j"), map[string]any{"kid": "k2"}), rejectInvalid, "Signature verification failed"},
		{"jwk alg pins the algorithm", `{"jwt":{"algorithms":["RS256","PS256"],"jwks":` + jwksOf(t, jwkRSA("k1", "RS256", &k.rsa.PublicKey)) + `}}`,
			sign(t, jwt.SigningMethodPS256, k.rsa, claimsAt(testNow, "j"), map[string]any{"kid": "k1"}), rejectInvalid, "Signature verification failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, rej := verifierFor(t, tt.config).verify(tt.token)
			if rej == nil {
				t.Fatal("verify accepted the token")
			}
			if rej.kind != tt.wantKind || rej.message != tt.wantMsg {
				t.Fatalf("rejection = %d %q; want %d %q", rej.kind, rej.message, tt.wantKind, tt.wantMsg)
			}
		})
	}
}

func TestVerifyLeewayAndKid(t *testing.T) {
	k := testKeys()
	c := claimsAt(testNow, "j")
	c["exp"] = testNow.Add(-20 * time.Second).Unix()
	token := hs256(t, c)
	if _, rej := verifierFor(t, `{"jwt":{"leeway":"30s","hmac_secrets":[{"secret":`+jsonString(string(k.hs))+`}]}}`).verify(token); rej != nil {
		t.Fatalf("token expired 20s ago rejected with 30s leeway: %s", rej.message)
	}
	if _, rej := verifierFor(t, `{"jwt":{"leeway":"10s","hmac_secrets":[{"secret":`+jsonString(string(k.hs))+`}]}}`).verify(token); rej == nil || rej.kind != rejectExpired {
		t.Fatalf("token expired 20s ago accepted with 10s leeway: %+v", rej)
	}
	// With kids, the named key is used; keys without a kid serve tokens with unknown kids.
	cfg := `{"jwt":{"algorithms":["RS256"],"jwks":` + jwksOf(t, jwkRSA("k1", "", &k.rsa2.PublicKey), jwkRSA("k2", "", &k.rsa.PublicKey)) + `}}`
	good := sign(t, jwt.SigningMethodRS256, k.rsa, claimsAt(testNow, "j"), map[string]any{"kid": "k2"})
	if _, rej := verifierFor(t, cfg).verify(good); rej != nil {
		t.Fatalf("kid k2: %s", rej.message)
	}
	noKid := sign(t, jwt.SigningMethodRS256, k.rsa, claimsAt(testNow, "j"), nil)
	if _, rej := verifierFor(t, cfg).verify(noKid); rej != nil {
		t.Fatalf("no kid, two keys: %s", rej.message)
	}
}

func TestVerifyIssuerKeys(t *testing.T) {
	k := testKeys()
	v := verifierFor(t, `{"jwt":{"issuers":["https://a","https://b"],"hmac_secrets":[{"secret":`+jsonString(string(k.hs))+`}]}}`)
	c := claimsAt(testNow, "same")
	c["iss"] = "https://b"
	info, rej := v.verify(hs256(t, c))
	if rej != nil {
		t.Fatal(rej.message)
	}
	h := testListHasher
	info.setKeys(h, v.byIssuer)
	if info.tokenKey != h.TokenKey("https://b", "same") || info.anyKey != h.TokenKey("", "same") ||
		info.subKey != h.SubjectKey("https://b", "user-1") || info.anySubKey != h.SubjectKey("", "user-1") {
		t.Fatalf("keys = %+v", info)
	}
}

func TestVerifyPayloadTrustUpstream(t *testing.T) {
	v := verifierFor(t, `{"jwt":{"trust_upstream":{"payload_header":"x-jwt-payload"}}}`)
	enc := func(c jwt.MapClaims) string {
		b, _ := json.Marshal(c)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	info, rej := v.verifyPayload(enc(claimsAt(testNow, "up-1")))
	if rej != nil || info.jti != "up-1" {
		t.Fatalf("verifyPayload = %+v, %+v", info, rej)
	}
	expired := claimsAt(testNow, "up-2")
	expired["exp"] = testNow.Add(-time.Minute).Unix()
	if _, rej := v.verifyPayload(enc(expired)); rej == nil || rej.kind != rejectExpired {
		t.Fatalf("expired payload: %+v", rej)
	}
	if _, rej := v.verifyPayload("%%%"); rej == nil {
		t.Fatal("garbage payload accepted")
	}
	if _, rej := v.verifyPayload(base64.RawURLEncoding.EncodeToString([]byte("[1,2]"))); rej == nil {
		t.Fatal("non-object payload accepted")
	}
}
