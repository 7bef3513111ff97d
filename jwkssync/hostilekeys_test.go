package jwkssync

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jtiguard/jtiguard/jwtverify"
)

// TestSmallOrderEd25519KeyRefused: an OKP key whose x is a point of small order (here
// the identity, 0x01 then 31 zero bytes) passed every check of Accept ("Ed25519" was only
// checked for its length), and with it a signature of R = identity, S = 0 verifies for every
// message: anyone can then mint any token. The RSA and EC checks exist to refuse keys that
// are unsafe; this one is the Ed25519 counterpart (RFC 8032 implementations and libsodium
// refuse small-order public keys).
func TestSmallOrderEd25519KeyRefused(t *testing.T) {
	b, err := NewBuilder(jwtverify.Keys{Algorithms: []string{"HS256", "EdDSA"}, HMAC: []jwtverify.HMACKey{{KID: "inline", Secret: []byte(hsSecret)}}})
	if err != nil {
		t.Fatal(err)
	}
	identity := make([]byte, ed25519.PublicKeySize)
	identity[0] = 1
	_, realPriv, _ := ed25519.GenerateKey(rand.Reader)
	doc := jwks(
		map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": "real", "x": b64u(realPriv.Public().(ed25519.PublicKey))},
		map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": "weak", "x": b64u(identity)},
	)
	acc, err := b.Accept([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	// A forged token: any claims, signature identity || 0.
	hdr, _ := json.Marshal(map[string]string{"alg": "EdDSA", "typ": "JWT", "kid": "weak"})
	pay, _ := json.Marshal(claims("forged-by-anyone"))
	sig := make([]byte, ed25519.SignatureSize)
	sig[0] = 1
	forged := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(pay) + "." + base64.RawURLEncoding.EncodeToString(sig)
	v, _ := jwtverify.New(acc.Set, jwtverify.Options{Now: func() time.Time { return testNow }})
	var c jwtverify.Claims
	if err := v.Verify(forged, &c); err == nil {
		t.Errorf("a token no one signed verifies with the small-order key the JWKS served (accepted keys %v, skipped %q); want the key refused as unsafe", acc.KIDs, acc.Skipped)
	}

	// The same with an all-zero x, what a placeholder or a broken key generator publishes: a
	// point of order 4. A forger varies the payload until H(R||A||M) is 0 mod 4 (a quarter of
	// tries), with no kid at all: every Ed25519 key of the set is tried.
	acc, err = b.Accept([]byte(jwks(
		map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": "real", "x": b64u(realPriv.Public().(ed25519.PublicKey))},
		map[string]string{"kty": "OKP", "crv": "Ed25519", "kid": "zeros", "x": b64u(make([]byte, 32))},
	)))
	if err != nil {
		t.Fatal(err)
	}
	v, _ = jwtverify.New(acc.Set, jwtverify.Options{Now: func() time.Time { return testNow }})
	hdr, _ = json.Marshal(map[string]string{"alg": "EdDSA", "typ": "JWT"})
	for i := range 64 {
		pay, _ := json.Marshal(claims(fmt.Sprintf("forged-%d", i)))
		forged := base64.RawURLEncoding.EncodeToString(hdr) + "." + base64.RawURLEncoding.EncodeToString(pay) + "." + base64.RawURLEncoding.EncodeToString(sig)
		if err := v.Verify(forged, &c); err == nil {
			t.Errorf("a kid-less token no one signed verifies (after %d tries) beside an all-zero Ed25519 key (accepted keys %v); want the key refused", i+1, acc.KIDs)
			break
		}
	}
}

// TestRemoteOctKeyRefused: with jwt.algorithms holding HS256 (the docs' own example
// beside remote_jwks: the app's inline secret, the issuer's RSA keys fetched), an `oct` key in
// the fetched JWKS is accepted and verifies HS256 tokens. A JWKS endpoint serves a public
// document (to anyone who can GET it); a symmetric key found there is known to everyone who
// read it, so every such reader can mint tokens the filter accepts. jwtverify files it with
// the inline HMAC secret, so kid-less HS256 tokens (flask-jwt-extended's) meet it too.
func TestRemoteOctKeyRefused(t *testing.T) {
	k := testKeys()
	r := newRig(t)
	a := r.vm(1)
	leaked := []byte("a-symmetric-key-served-in-a-public-jwks!")
	a.sync.Tick()
	a.host.answer(200, jsonHeaders, jwks(
		jwkEC("k1", "ES256", &k.ec1.PublicKey),
		map[string]string{"kty": "oct", "kid": "shared", "k": b64u(leaked)},
	))
	if !a.sync.HasRemote() {
		t.Fatal("setup: no key set adopted")
	}
	// Anyone who fetched the JWKS signs a token of their choosing, without a kid, as the app's
	// own tokens are.
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims("minted-from-the-jwks")).SignedString(leaked)
	if err != nil {
		t.Fatal(err)
	}
	if a.verifies(tok) {
		t.Errorf("an HS256 token signed with an `oct` key read from the remote JWKS verifies; want remote symmetric keys refused (a JWKS is public)")
	}
}

// TestKeyOpsNotForVerification: RFC 7517 4.3: key_ops lists the operations a key is
// for. A key published as ["encrypt"] / ["wrapKey"] (an RSA key for RSA-OAEP, with no "use")
// is not a verification key, yet Accept keeps it and jwtverify verifies RS256 with it. Only
// "use" is read; key_ops is ignored (docs/jwks.md names neither).
func TestKeyOpsNotForVerification(t *testing.T) {
	k := testKeys()
	b, err := NewBuilder(jwtverify.Keys{Algorithms: []string{"ES256", "RS256"}})
	if err != nil {
		t.Fatal(err)
	}
	enc := jwkRSA("enc-key", "", &k.rsa.PublicKey)
	doc := `{"keys":[` + mustJSON(jwkEC("k1", "ES256", &k.ec1.PublicKey)) + `,` +
		mustJSON(enc)[:len(mustJSON(enc))-1] + `,"key_ops":["encrypt","wrapKey"]}]}`
	acc, err := b.Accept([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if acc.Keys != 1 {
		t.Errorf("a key whose key_ops are [encrypt, wrapKey] was kept for verification (kept %d keys: %v); want it left out as use:enc is", acc.Keys, acc.KIDs)
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
