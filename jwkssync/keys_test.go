package jwkssync

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jtiguard/jtiguard/jwtverify"
)

// TestAcceptKeyByKey: each key of a fetched JWKS meets the checks of an inline key, alone;
// a key that fails is skipped with its reason, the others are used.
func TestAcceptKeyByKey(t *testing.T) {
	k := testKeys()
	ecWith := func(f func(map[string]string)) map[string]string {
		m := jwkEC("bad", "ES256", &k.ec3.PublicKey)
		f(m)
		return m
	}
	_, edPriv, _ := ed25519.GenerateKey(rand.Reader)
	cases := []struct {
		name string
		key  any
		want string // the skip reason; "" means accepted, "-" skipped silently
	}{
		{"EC P-256", jwkEC("ok", "ES256", &k.ec2.PublicKey), ""},
		{"EC P-256 without alg", jwkEC("ok", "", &k.ec2.PublicKey), ""},
		{"RSA 2048", jwkRSA("ok", "RS256", &k.rsa.PublicKey), ""},
		{"RSA use sig", func() map[string]string { m := jwkRSA("ok", "", &k.rsa.PublicKey); m["use"] = "sig"; return m }(), ""},
		{"encryption key", func() map[string]string { m := jwkRSA("enc", "", &k.rsa.PublicKey); m["use"] = "enc"; return m }(), "-"},
		{"RSA 1024", jwkRSA("bad", "RS256", &k.weakRSA.PublicKey), "RSA key of 1024 bits: at least 2048 are required"},
		{"RSA even exponent", func() map[string]string {
			m := jwkRSA("bad", "", &k.rsa.PublicKey)
			m["e"] = b64u([]byte{1, 0, 0})
			return m
		}(), "RSA public exponent 65536"},
		{"point off the curve", ecWith(func(m map[string]string) { m["y"] = m["x"] }), "point is not on the curve"},
		{"short coordinate", ecWith(func(m map[string]string) { m["x"] = m["x"][:10] }), "coordinates must be 32 bytes"},
		{"private part", ecWith(func(m map[string]string) { m["d"] = b64u(k.ec3.D.Bytes()) }), `holds a private key ("d")`},
		{"alg of another family", ecWith(func(m map[string]string) { m["alg"] = "RS256" }), `alg "RS256" is not one of jwt.algorithms for an EC P-256 key`},
		{"alg none", ecWith(func(m map[string]string) { m["alg"] = "none" }), `alg "none" is not one of jwt.algorithms`},
		{"family not allowed (P-384)", jwkEC("bad", "", &k.p384.PublicKey), "an EC P-384 key, and jwt.algorithms allows no algorithm that uses one"},
		{"family not allowed (Ed25519)", map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": "bad", "x": b64u(edPriv.Public().(ed25519.PublicKey))}, "an OKP Ed25519 key, and jwt.algorithms allows no"},
		{"unknown kty", map[string]string{"kty": "XYZ", "kid": "bad"}, `unsupported key type "XYZ"`},
		{"X25519", map[string]string{"kty": "OKP", "crv": "X25519", "kid": "bad", "x": b64u(make([]byte, 32))}, `unsupported key type "OKP" (curve "X25519")`},
		{"unknown curve", ecWith(func(m map[string]string) { m["crv"] = "P-192" }), `unsupported key type "EC" (curve "P-192")`},
		{"HMAC key", map[string]string{"kty": "oct", "kid": "bad", "k": b64u([]byte("a long enough shared secret"))}, "a symmetric (oct) key in a fetched JWK Set is public"},
		{"key_ops without verify", func() map[string]any {
			m := map[string]any{}
			for k, v := range jwkRSA("enc", "", &k.rsa.PublicKey) {
				m[k] = v
			}
			m["key_ops"] = []string{"encrypt", "wrapKey"}
			return m
		}(), "-"},
		{"key_ops with verify", func() map[string]any {
			m := map[string]any{}
			for k, v := range jwkRSA("ok", "", &k.rsa.PublicKey) {
				m[k] = v
			}
			m["key_ops"] = []string{"verify"}
			return m
		}(), ""},
		{"key_ops not an array", func() map[string]any {
			m := map[string]any{}
			for k, v := range jwkRSA("bad", "", &k.rsa.PublicKey) {
				m[k] = v
			}
			m["key_ops"] = "verify"
			return m
		}(), `member "key_ops" is not an array of strings`},
		{"not an object", "a string", "not a JSON object"},
		{"member not a string", map[string]any{"kty": "EC", "crv": 256}, `member "crv" is not a string`},
		{"member names matched exactly", map[string]string{"KTY": "EC", "kid": "bad"}, `unsupported key type ""`},
	}
	b, err := NewBuilder(jwtverify.Keys{Algorithms: []string{"ES256", "RS256", "HS256"}, HMAC: []jwtverify.HMACKey{{Secret: []byte(hsSecret)}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Beside a good key, so the document as a whole is accepted.
			good := jwkEC("good", "ES256", &k.ec1.PublicKey)
			acc, err := b.Accept([]byte(jwks(good, c.key)))
			if err != nil {
				t.Fatalf("Accept: %v", err)
			}
			switch c.want {
			case "":
				if acc.Keys != 2 || len(acc.Skipped) != 0 {
					t.Fatalf("keys %d, skipped %q; want both accepted", acc.Keys, acc.Skipped)
				}
			case "-":
				if acc.Keys != 1 || len(acc.Skipped) != 0 {
					t.Fatalf("keys %d, skipped %q; want the key left out silently", acc.Keys, acc.Skipped)
				}
			default:
				if acc.Keys != 1 || len(acc.Skipped) != 1 || !strings.Contains(acc.Skipped[0], c.want) {
					t.Fatalf("keys %d, skipped %q; want one skipped for %q", acc.Keys, acc.Skipped, c.want)
				}
			}
			// The document kept holds exactly the accepted keys.
			var d struct{ Keys []json.RawMessage }
			if err := json.Unmarshal(acc.Doc, &d); err != nil || len(d.Keys) != acc.Keys {
				t.Fatalf("stored document %s: %v", acc.Doc, err)
			}
		})
	}
}

// TestAcceptRefusesWholeDocuments: what is refused whole, with its sentinel.
func TestAcceptRefusesWholeDocuments(t *testing.T) {
	k := testKeys()
	many := func(n int) string {
		keys := make([]any, n)
		for i := range keys {
			keys[i] = jwkEC(fmt.Sprint(i), "ES256", &k.ec1.PublicKey)
		}
		return jwks(keys...)
	}
	cases := []struct {
		name, doc string
		want      error
	}{
		{"empty", "", ErrMalformedJWKS},
		{"garbage", "\x00\xff<html>", ErrMalformedJWKS},
		{"array", "[]", ErrMalformedJWKS},
		{"keys not a list", `{"keys":{}}`, ErrMalformedJWKS},
		{"keys null", `{"keys":null}`, ErrMalformedJWKS},
		{"a JSON string holding a JWKS (only inline JWKS may be one)", fmt.Sprintf("%q", many(1)), ErrMalformedJWKS},
		{"trailing data", many(1) + "x", ErrMalformedJWKS},
		{"no keys", `{"keys":[]}`, ErrNoUsableKey},
		{"no usable key", jwks(jwkRSA("weak", "RS256", &k.weakRSA.PublicKey)), ErrNoUsableKey},
		{"101 keys", many(101), ErrTooManyKeys},
	}
	b, err := NewBuilder(jwtverify.Keys{Algorithms: []string{"ES256", "RS256"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		acc, err := b.Accept([]byte(c.doc))
		if !errors.Is(err, c.want) || !errors.Is(err, ErrBadJWKS) || acc != nil {
			t.Errorf("%s: %v; want %v", c.name, err, c.want)
		}
	}
	if acc, err := b.Accept([]byte(many(100))); err != nil || acc.Keys != 100 {
		t.Fatalf("100 keys: %v", err)
	}
	// Beside an inline JWKS, the bound is on the sum.
	inline, err := NewBuilder(jwtverify.Keys{Algorithms: []string{"ES256"}, JWKS: []byte(many(60))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inline.Accept([]byte(many(41))); !errors.Is(err, ErrTooManyKeys) {
		t.Fatalf("60 inline + 41 remote: %v; want ErrTooManyKeys", err)
	}
	if _, err := inline.Accept([]byte(many(40))); err != nil {
		t.Fatalf("60 inline + 40 remote: %v", err)
	}
}

// TestBuilderCombinesInlineAndRemote: the allowlist may name algorithms only remote keys
// serve; each set allows those of the families it holds keys for.
func TestBuilderCombinesInlineAndRemote(t *testing.T) {
	k := testKeys()
	b, err := NewBuilder(jwtverify.Keys{Algorithms: []string{"HS256", "ES256", "RS256"}, HMAC: []jwtverify.HMACKey{{KID: "inline", Secret: []byte(hsSecret)}}})
	if err != nil {
		t.Fatalf("inline HMAC with ES256 and RS256 allowed: %v", err)
	}
	if got := b.Inline().Algorithms(); strings.Join(got, ",") != "HS256" {
		t.Fatalf("inline set allows %v; want HS256 only", got)
	}
	acc, err := b.Accept([]byte(jwks(jwkEC("k1", "ES256", &k.ec1.PublicKey))))
	if err != nil {
		t.Fatal(err)
	}
	if got := acc.Set.Algorithms(); strings.Join(got, ",") != "HS256,ES256" {
		t.Fatalf("combined set allows %v; want HS256,ES256", got)
	}
	v, _ := jwtverify.New(acc.Set, jwtverify.Options{Now: func() time.Time { return testNow }})
	var c jwtverify.Claims
	for _, tok := range []string{hsToken(t, "inline", "a"), esToken(t, k.ec1, "k1", "b")} {
		if err := v.Verify(tok, &c); err != nil {
			t.Fatalf("combined set: %v", err)
		}
	}
	// An RS256 token is refused as not allowed (no RSA key yet), not as a bad signature.
	rs := jwt.NewWithClaims(jwt.SigningMethodRS256, claims("c"))
	rsTok, _ := rs.SignedString(k.rsa)
	if err := v.Verify(rsTok, &c); !errors.Is(err, jwtverify.ErrAlgorithmNotAllowed) {
		t.Fatalf("RS256 without an RSA key: %v", err)
	}
	// No inline key at all: the inline set is empty and refuses everything.
	empty, err := NewBuilder(jwtverify.Keys{Algorithms: []string{"RS256"}})
	if err != nil {
		t.Fatal(err)
	}
	v2, _ := jwtverify.New(empty.Inline(), jwtverify.Options{})
	if err := v2.Verify(rsTok, &c); !errors.Is(err, jwtverify.ErrAlgorithmNotAllowed) {
		t.Fatalf("empty set: %v", err)
	}
}

// TestNewBuilderRefusesBadInlineKeys: the inline keys keep their strictness with a remote
// JWKS: each problem named.
func TestNewBuilderRefusesBadInlineKeys(t *testing.T) {
	k := testKeys()
	cases := []struct {
		name string
		keys jwtverify.Keys
		want string
	}{
		{"no algorithm", jwtverify.Keys{}, "algorithms: must allow at least one algorithm"},
		{"alg none", jwtverify.Keys{Algorithms: []string{"none"}}, `algorithms: unknown or forbidden algorithm "none"`},
		{"HMAC secret without an HMAC algorithm", jwtverify.Keys{Algorithms: []string{"RS256"}, HMAC: []jwtverify.HMACKey{{Secret: []byte(hsSecret)}}},
			"a HMAC secret is configured but no algorithm that uses it is allowed"},
		{"weak PEM", jwtverify.Keys{Algorithms: []string{"RS256"}, PEM: []jwtverify.PEMKey{{PEM: pemOf(t, &k.weakRSA.PublicKey)}}}, "public_keys[0]: RSA key of 1024 bits"},
		{"inline JWKS with a bad key", jwtverify.Keys{Algorithms: []string{"ES256"}, JWKS: []byte(jwks(jwkEC("x", "ES256", &k.ec1.PublicKey), map[string]string{"kty": "EC", "crv": "P-256", "kid": "y", "x": "AA", "y": "AA"}))},
			`jwks: key "y": coordinates must be 32 bytes`},
	}
	for _, c := range cases {
		_, err := NewBuilder(c.keys)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v; want %q", c.name, err, c.want)
		}
	}
	// Good PEM and inline JWKS keys are filed by family, and their algorithms allowed.
	b, err := NewBuilder(jwtverify.Keys{Algorithms: []string{"RS256", "ES256", "ES384"},
		PEM:  []jwtverify.PEMKey{{KID: "pem", PEM: pemOf(t, &k.rsa.PublicKey)}},
		JWKS: []byte(fmt.Sprintf("%q", jwks(jwkEC("p384", "", &k.p384.PublicKey))))})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(b.Inline().Algorithms(), ","); got != "RS256,ES384" {
		t.Fatalf("inline set allows %s; want RS256,ES384", got)
	}
	if !b.KnowsKID("pem", nil) || !b.KnowsKID("p384", nil) || b.KnowsKID("other", nil) {
		t.Fatal("inline kids not known")
	}
}
