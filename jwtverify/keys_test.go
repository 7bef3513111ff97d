package jwtverify_test

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/jwtverify"
)

// selfSigned makes a certificate for pub with crypto/x509, signed by an unrelated key (no
// chain is checked, so any issuer will do).
func selfSigned(t testing.TB, pub any) string {
	t.Helper()
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		Subject:      pkix.Name{CommonName: "issuer.example"},
		DNSNames:     []string{"issuer.example"},
		NotBefore:    time.Unix(0, 0),
		NotAfter:     time.Unix(1<<32, 0),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, testKeys().p384)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

// Each PEM form crypto/x509 writes is read into the same key x509 reads from it, and that key
// verifies a token.
func TestPEMMatchesX509(t *testing.T) {
	k := testKeys()
	pubs := map[string]any{
		"RS256": &k.rsa.PublicKey, "ES256": &k.p256.PublicKey, "ES384": &k.p384.PublicKey,
		"ES512": &k.p521.PublicKey, "EdDSA": k.ed.Public(),
	}
	privs := map[string]any{"RS256": k.rsa, "ES256": k.p256, "ES384": k.p384, "ES512": k.p521, "EdDSA": k.ed}
	for alg, pub := range pubs {
		forms := map[string]string{"PKIX": pemOf(t, pub), "CERTIFICATE": selfSigned(t, pub)}
		if rk, ok := pub.(*rsa.PublicKey); ok {
			forms["PKCS1"] = string(pem.EncodeToMemory(&pem.Block{Type: "RSA PUBLIC KEY", Bytes: x509.MarshalPKCS1PublicKey(rk)}))
		}
		for form, text := range forms {
			block, _ := pem.Decode([]byte(text))
			var want any
			var err error
			switch form {
			case "PKIX":
				want, err = x509.ParsePKIXPublicKey(block.Bytes)
			case "PKCS1":
				want, err = x509.ParsePKCS1PublicKey(block.Bytes)
			default:
				var cert *x509.Certificate
				if cert, err = x509.ParseCertificate(block.Bytes); err == nil {
					want = cert.PublicKey
				}
			}
			if err != nil {
				t.Fatalf("%s %s: x509: %v", alg, form, err)
			}
			got, err := jwtverify.ParsePublicKeyPEM(text)
			if err != nil {
				t.Fatalf("%s %s: %v", alg, form, err)
			}
			if !got.(interface{ Equal(crypto.PublicKey) bool }).Equal(want) {
				t.Fatalf("%s %s: key differs from x509's", alg, form)
			}
			v := newVerifier(t, jwtverify.Keys{Algorithms: []string{alg}, PEM: []jwtverify.PEMKey{{PEM: "\n  " + text + "\n"}}}, jwtverify.Options{})
			var c jwtverify.Claims
			if err := v.Verify(sign(t, alg, privs[alg], claimsAt(testNow, "j"), nil), &c); err != nil {
				t.Fatalf("%s %s: Verify = %v", alg, form, err)
			}
		}
	}
}

// FuzzPKIXMatchesX509: on any DER, our SubjectPublicKeyInfo reader and x509's agree on every
// key type we support: same key, or both refuse.
func FuzzPKIXMatchesX509(f *testing.F) {
	k := testKeys()
	for _, pub := range []any{&k.rsa.PublicKey, &k.p256.PublicKey, &k.p384.PublicKey, &k.p521.PublicKey, k.ed.Public()} {
		der, err := x509.MarshalPKIXPublicKey(pub)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(der, false)
		f.Add(x509.MarshalPKCS1PublicKey(&k.rsa.PublicKey), true)
	}
	f.Fuzz(func(t *testing.T, der []byte, pkcs1 bool) {
		var want any
		var werr error
		var got any
		var gerr error
		if pkcs1 {
			want, werr = x509.ParsePKCS1PublicKey(der)
			got, gerr = jwtverify.ParsePKCS1(der)
		} else {
			want, werr = x509.ParsePKIXPublicKey(der)
			got, gerr = jwtverify.ParsePKIX(der)
		}
		switch want.(type) {
		case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		default:
			if werr == nil {
				return // a key type we do not support (DSA, X25519, P-224): refused by NewKeySet
			}
		}
		if (werr == nil) != (gerr == nil) {
			t.Fatalf("x509 err %v; ours %v", werr, gerr)
		}
		if werr == nil && !got.(interface{ Equal(crypto.PublicKey) bool }).Equal(want) {
			t.Fatalf("keys differ")
		}
	})
}

func TestNewKeySetErrors(t *testing.T) {
	k := testKeys()
	weak, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	x25519, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	privDER, err := x509.MarshalPKCS8PrivateKey(k.p256)
	if err != nil {
		t.Fatal(err)
	}
	privPEM := string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: privDER}))
	offCurve := jwkEC("off", "", &k.p256.PublicKey)
	offCurve["y"] = offCurve["x"]
	rsaPEM, edPEM := pemOf(t, &k.rsa.PublicKey), pemOf(t, k.ed.Public())
	tooMany := make([]map[string]string, jwtverify.MaxJWKSKeys+1)
	for i := range tooMany {
		tooMany[i] = jwkOct("", k.hs)
	}
	tests := []struct {
		name string
		keys jwtverify.Keys
		want []string // each must appear in the error; nil means success
	}{
		{"no algorithms", jwtverify.Keys{}, []string{"algorithms: must allow at least one algorithm"}},
		{"none", jwtverify.Keys{Algorithms: []string{"none"}}, []string{`algorithms: unknown or forbidden algorithm "none"`}},
		{"algorithm without key", jwtverify.Keys{Algorithms: []string{"HS256", "RS256", "PS384"}, HMAC: []jwtverify.HMACKey{{Secret: k.hs}}},
			[]string{"algorithms: RS256, PS384 allowed but no RSA public key is configured"}},
		{"key without algorithm", jwtverify.Keys{Algorithms: []string{"HS256"}, HMAC: []jwtverify.HMACKey{{Secret: k.hs}}, PEM: []jwtverify.PEMKey{{PEM: edPEM}}},
			[]string{"a Ed25519 public key is configured but no algorithm that uses it is allowed"}},
		{"empty secret", jwtverify.Keys{Algorithms: []string{"HS256"}, HMAC: []jwtverify.HMACKey{{Secret: k.hs}, {Secret: nil}}},
			[]string{"hmac_secrets[1]: secret is empty"}},
		{"ssh key as secret", jwtverify.Keys{Algorithms: []string{"HS256"}, HMAC: []jwtverify.HMACKey{{Secret: []byte("ssh-ed25519 AAAAC3Nz user@host")}}},
			[]string{"hmac_secrets[0]: secret is an SSH public key"}},
		{"weak RSA", jwtverify.Keys{Algorithms: []string{"RS256"}, PEM: []jwtverify.PEMKey{{PEM: rsaPEM}, {PEM: pemOf(t, &weak.PublicKey)}}},
			[]string{"public_keys[1]: RSA key of 1024 bits: at least 2048 are required"}},
		{"P-224", jwtverify.Keys{Algorithms: []string{"ES256"}, PEM: []jwtverify.PEMKey{{PEM: pemOf(t, &p224.PublicKey)}}},
			[]string{"public_keys[0]: unsupported elliptic curve 1.3.132.0.33"}},
		{"X25519", jwtverify.Keys{Algorithms: []string{"EdDSA"}, PEM: []jwtverify.PEMKey{{PEM: pemOf(t, x25519.PublicKey())}}},
			[]string{"public_keys[0]: unsupported public key algorithm 1.3.101.110"}},
		{"private key", jwtverify.Keys{Algorithms: []string{"ES256"}, PEM: []jwtverify.PEMKey{{PEM: privPEM}}},
			[]string{`public_keys[0]: PEM block "PRIVATE KEY" is not a public key`}},
		{"not PEM", jwtverify.Keys{Algorithms: []string{"ES256"}, PEM: []jwtverify.PEMKey{{PEM: "hello"}}},
			[]string{"public_keys[0]: no PEM block found"}},
		{"two blocks", jwtverify.Keys{Algorithms: []string{"RS256"}, PEM: []jwtverify.PEMKey{{PEM: rsaPEM + rsaPEM}}},
			[]string{"public_keys[0]: more than one PEM block"}},
		{"garbage DER", jwtverify.Keys{Algorithms: []string{"RS256"}, PEM: []jwtverify.PEMKey{{PEM: string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{0x30, 0x03, 1, 2}}))}}},
			[]string{"public_keys[0]: not a PKIX public key"}},
		{"off-curve JWK", jwtverify.Keys{Algorithms: []string{"ES256"}, JWKS: jwks(t, offCurve)},
			[]string{`jwks: key "off": point is not on the curve`}},
		{"JWK alg mismatch", jwtverify.Keys{Algorithms: []string{"ES256", "RS256"}, JWKS: jwks(t, jwkEC("e", "RS256", &k.p256.PublicKey), jwkRSA("r", "", &k.rsa.PublicKey))},
			[]string{`jwks: key "e": declares alg "RS256", which its key type cannot serve`}},
		{"JWK unknown alg", jwtverify.Keys{Algorithms: []string{"RS256"}, JWKS: jwks(t, jwkRSA("r", "RSA-OAEP", &k.rsa.PublicKey))},
			[]string{`jwks: key "r": unknown alg "RSA-OAEP"`}},
		{"JWK private", jwtverify.Keys{Algorithms: []string{"EdDSA"}, JWKS: jwks(t, map[string]string{"kty": "OKP", "crv": "Ed25519", "x": b64(k.ed.Public().(ed25519.PublicKey)), "d": b64(k.ed.Seed())})},
			[]string{`jwks: keys[0]: holds a private key ("d")`}},
		{"JWK weak RSA", jwtverify.Keys{Algorithms: []string{"RS256"}, JWKS: jwks(t, jwkRSA("w", "", &weak.PublicKey))},
			[]string{`jwks: key "w": RSA key of 1024 bits`}},
		{"JWK even exponent", jwtverify.Keys{Algorithms: []string{"RS256"}, JWKS: jwks(t, map[string]string{"kty": "RSA", "n": b64(k.rsa.N.Bytes()), "e": b64([]byte{1, 0, 0})})},
			[]string{`jwks: keys[0]: RSA public exponent 65536 is not an odd number`}},
		{"JWK unknown kty", jwtverify.Keys{Algorithms: []string{"RS256"}, JWKS: jwks(t, map[string]string{"kty": "DSA"}, jwkRSA("", "", &k.rsa.PublicKey))},
			[]string{`jwks: keys[0]: unsupported kty "DSA"`}},
		{"JWK member not a string", jwtverify.Keys{Algorithms: []string{"RS256"}, JWKS: []byte(`{"keys":[{"kty":"RSA","n":1}]}`)},
			[]string{`jwks: keys[0]: member "n" is not a string`}},
		{"JWKS names are case-sensitive", jwtverify.Keys{Algorithms: []string{"HS256"}, JWKS: []byte(`{"KEYS":[{"kty":"oct","k":"c2VjcmV0"}]}`)},
			[]string{`jwks: not a JWKS document`}},
		{"too many JWKs", jwtverify.Keys{Algorithms: []string{"HS256"}, JWKS: jwks(t, tooMany...)},
			[]string{"jwks: must hold 1 to 100 keys, has 101"}},
		{"not JSON", jwtverify.Keys{Algorithms: []string{"HS256"}, JWKS: []byte(`{"keys":`)}, []string{"jwks: not a JWKS document"}},
		{"every problem at once", jwtverify.Keys{Algorithms: []string{"HS256", "XX"}, HMAC: []jwtverify.HMACKey{{}}, PEM: []jwtverify.PEMKey{{PEM: "x"}}},
			[]string{`unknown or forbidden algorithm "XX"`, "hmac_secrets[0]: secret is empty", "public_keys[0]: no PEM block found", "HS256 allowed but no HMAC secret"}},
		{"use enc skipped, the rest kept", jwtverify.Keys{Algorithms: []string{"RS256"}, JWKS: jwks(t,
			map[string]string{"kty": "RSA", "use": "enc", "n": "AQ", "e": "AQ"}, jwkRSA("r", "RS256", &k.rsa.PublicKey))}, nil},
		{"JWKS as a JSON string", jwtverify.Keys{Algorithms: []string{"HS256"}, JWKS: []byte(mustJSON(t, string(jwks(t, jwkOct("o", k.hs)))))}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ks, err := jwtverify.NewKeySet(tt.keys)
			if tt.want == nil {
				if err != nil || ks == nil {
					t.Fatalf("NewKeySet = %v", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("NewKeySet accepted; want %q", tt.want)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("NewKeySet error %q lacks %q", err, w)
				}
			}
			if _, joined := err.(interface{ Unwrap() []error }); !joined && len(tt.want) > 1 {
				t.Errorf("problems not joined")
			}
		})
	}
}

// Only keys with use "sig" (or none) are used.
func TestJWKSUseSkipped(t *testing.T) {
	k := testKeys()
	enc := jwkRSA("r", "", &k.rsa.PublicKey)
	enc["use"] = "enc"
	_, err := jwtverify.NewKeySet(jwtverify.Keys{Algorithms: []string{"RS256"}, JWKS: jwks(t, enc)})
	if err == nil || !strings.Contains(err.Error(), "RS256 allowed but no RSA public key") {
		t.Fatalf("only an encryption key: err = %v", err)
	}
}

// A key whose key_ops (RFC 7517 4.3) do not include verify is left out, as one with use enc;
// key_ops must be an array of strings.
func TestJWKSKeyOps(t *testing.T) {
	k := testKeys()
	doc := func(ops string) []byte {
		return []byte(strings.Replace(string(jwks(t, jwkRSA("r", "", &k.rsa.PublicKey))), `"kty"`, `"key_ops":`+ops+`,"kty"`, 1))
	}
	if _, err := jwtverify.NewKeySet(jwtverify.Keys{Algorithms: []string{"RS256"}, JWKS: doc(`["encrypt","wrapKey"]`)}); err == nil ||
		!strings.Contains(err.Error(), "RS256 allowed but no RSA public key") {
		t.Errorf("only a key for encrypt and wrapKey: err = %v; want it left out", err)
	}
	if _, err := jwtverify.NewKeySet(jwtverify.Keys{Algorithms: []string{"RS256"}, JWKS: doc(`["verify"]`)}); err != nil {
		t.Errorf("a key for verify: %v", err)
	}
	if _, err := jwtverify.NewKeySet(jwtverify.Keys{Algorithms: []string{"RS256"}, JWKS: doc(`"verify"`)}); err == nil ||
		!strings.Contains(err.Error(), `member "key_ops" is not an array of strings`) {
		t.Errorf("key_ops not an array: err = %v", err)
	}
}
