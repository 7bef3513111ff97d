package jwtverify_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jtiguard/jtiguard/jwtverify"
)

// testNow is the injected clock of every test that does not need the real time.
var testNow = time.Date(2026, 11, 1, 12, 0, 0, 500_000_000, time.UTC)

type keyMaterial struct {
	hs, hsOther      []byte
	rsa, rsa2        *rsa.PrivateKey
	p256, p384, p521 *ecdsa.PrivateKey
	p256b            *ecdsa.PrivateKey
	ed, ed2          ed25519.PrivateKey
}

var testKeys = sync.OnceValue(func() *keyMaterial {
	must := func(err error) {
		if err != nil {
			panic(err)
		}
	}
	k := &keyMaterial{hs: []byte("a shared secret of 32 bytes!!!!!"), hsOther: []byte("another shared secret, 32 bytes.")}
	var err error
	k.rsa, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	k.rsa2, err = rsa.GenerateKey(rand.Reader, 2048)
	must(err)
	for _, p := range []struct {
		dst   **ecdsa.PrivateKey
		curve elliptic.Curve
	}{{&k.p256, elliptic.P256()}, {&k.p256b, elliptic.P256()}, {&k.p384, elliptic.P384()}, {&k.p521, elliptic.P521()}} {
		*p.dst, err = ecdsa.GenerateKey(p.curve, rand.Reader)
		must(err)
	}
	_, k.ed, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	_, k.ed2, err = ed25519.GenerateKey(rand.Reader)
	must(err)
	return k
})

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// method is golang-jwt's signing method of an algorithm.
func method(alg string) jwt.SigningMethod { return jwt.GetSigningMethod(alg) }

// signRaw signs header and payload bytes as given (any JSON, or none) with golang-jwt's
// signing methods.
func signRaw(t testing.TB, alg string, key any, header, payload string) string {
	t.Helper()
	input := b64([]byte(header)) + "." + b64([]byte(payload))
	sig, err := method(alg).Sign(input, key)
	if err != nil {
		t.Fatalf("sign %s: %v", alg, err)
	}
	return input + "." + b64(sig)
}

// sign signs claims with a header {"alg", "typ"} plus extra members.
func sign(t testing.TB, alg string, key any, claims map[string]any, extraHeader map[string]any) string {
	t.Helper()
	h := map[string]any{"alg": alg, "typ": "JWT"}
	for k, v := range extraHeader {
		h[k] = v
	}
	return signRaw(t, alg, key, mustJSON(t, h), mustJSON(t, claims))
}

func mustJSON(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// claimsAt are a flask-jwt-extended access token's claims, issued at now.
func claimsAt(now time.Time, jti string) map[string]any {
	return map[string]any{
		"fresh": false, "iat": now.Unix(), "jti": jti, "type": "access", "sub": "user-1",
		"nbf": now.Unix(), "csrf": "c", "exp": now.Add(15 * time.Minute).Unix(),
	}
}

func pemOf(t testing.TB, pub any) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
}

func jwkRSA(kid, alg string, k *rsa.PublicKey) map[string]string {
	return map[string]string{"kty": "RSA", "kid": kid, "alg": alg, "n": b64(k.N.Bytes()), "e": b64(big.NewInt(int64(k.E)).Bytes())}
}

func jwkEC(kid, alg string, k *ecdsa.PublicKey) map[string]string {
	size := (k.Curve.Params().BitSize + 7) / 8
	x, y := make([]byte, size), make([]byte, size)
	k.X.FillBytes(x)
	k.Y.FillBytes(y)
	return map[string]string{"kty": "EC", "kid": kid, "alg": alg, "crv": k.Curve.Params().Name, "x": b64(x), "y": b64(y)}
}

func jwkEd(kid string, k ed25519.PublicKey) map[string]string {
	return map[string]string{"kty": "OKP", "kid": kid, "crv": "Ed25519", "x": b64(k)}
}

func jwkOct(kid string, secret []byte) map[string]string {
	return map[string]string{"kty": "oct", "kid": kid, "k": b64(secret)}
}

func jwks(t testing.TB, keys ...map[string]string) []byte {
	t.Helper()
	for _, k := range keys {
		for name, v := range k {
			if v == "" {
				delete(k, name)
			}
		}
	}
	return []byte(mustJSON(t, map[string]any{"keys": keys}))
}

func newVerifier(t testing.TB, keys jwtverify.Keys, opts jwtverify.Options) *jwtverify.Verifier {
	t.Helper()
	ks, err := jwtverify.NewKeySet(keys)
	if err != nil {
		t.Fatalf("NewKeySet: %v", err)
	}
	if opts.Now == nil {
		opts.Now = func() time.Time { return testNow }
	}
	v, err := jwtverify.New(ks, opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return v
}

func hsVerifier(t testing.TB, opts jwtverify.Options) *jwtverify.Verifier {
	return newVerifier(t, jwtverify.Keys{Algorithms: []string{"HS256"}, HMAC: []jwtverify.HMACKey{{Secret: testKeys().hs}}}, opts)
}
