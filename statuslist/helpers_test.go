package statuslist

import (
	"bytes"
	"compress/zlib"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/jwtverify"
)

// issuer signs Status List Tokens with an Ed25519 key, as a status issuer would.
type issuer struct {
	kid  string
	priv ed25519.PrivateKey
}

func newIssuer(t testing.TB, seed byte) *issuer {
	t.Helper()
	s := bytes.Repeat([]byte{seed}, ed25519.SeedSize)
	return &issuer{kid: fmt.Sprintf("k%d", seed), priv: ed25519.NewKeyFromSeed(s)}
}

// jwks is the issuer's public key as a JWKS.
func (is *issuer) jwks() json.RawMessage {
	pub := is.priv.Public().(ed25519.PublicKey)
	b, _ := json.Marshal(map[string]any{"keys": []any{map[string]string{
		"kty": "OKP", "crv": "Ed25519", "x": base64.RawURLEncoding.EncodeToString(pub), "kid": is.kid, "alg": "EdDSA", "use": "sig",
	}}})
	return b
}

func (is *issuer) keys() *KeysConfig {
	return &KeysConfig{Algorithms: []string{"EdDSA"}, JWKS: is.jwks()}
}

func (is *issuer) keySet(t testing.TB) *jwtverify.KeySet {
	t.Helper()
	ks, err := is.keys().build()
	if err != nil {
		t.Fatal(err)
	}
	return ks
}

// sign makes a compact JWS of header and payload, given as raw JSON so tests can write
// anything, including what encoding/json never would.
func (is *issuer) sign(header, payload string) string {
	in := base64.RawURLEncoding.EncodeToString([]byte(header)) + "." + base64.RawURLEncoding.EncodeToString([]byte(payload))
	return in + "." + base64.RawURLEncoding.EncodeToString(ed25519.Sign(is.priv, []byte(in)))
}

// listToken is a valid Status List Token for uri holding l.
func (is *issuer) listToken(uri string, l List, iat time.Time, exp time.Time, ttl int) string {
	p := map[string]any{"sub": uri, "iat": iat.Unix(), "status_list": map[string]any{"bits": l.Bits, "lst": compress(l.Bytes)}}
	if !exp.IsZero() {
		p["exp"] = exp.Unix()
	}
	if ttl > 0 {
		p["ttl"] = ttl
	}
	pb, _ := json.Marshal(p)
	return is.sign(fmt.Sprintf(`{"alg":"EdDSA","kid":%q,"typ":"statuslist+jwt"}`, is.kid), string(pb))
}

// compress is lst: base64url of a ZLIB stream of b.
func compress(b []byte) string {
	var buf bytes.Buffer
	w, _ := zlib.NewWriterLevel(&buf, zlib.BestCompression)
	w.Write(b)
	w.Close()
	return base64.RawURLEncoding.EncodeToString(buf.Bytes())
}

// randomList returns a list of n statuses of bits each, with about one in density non-zero.
func randomList(r *rand.Rand, bits, n, density int) ([]Status, List) {
	st := make([]Status, n)
	for i := range st {
		if r.IntN(density) == 0 {
			st[i] = Status(r.IntN(1 << bits))
		}
	}
	l, err := Encode(bits, st)
	if err != nil {
		panic(err)
	}
	return st, l
}

func mustEncode(t testing.TB, bits int, st ...Status) List {
	t.Helper()
	l, err := Encode(bits, st)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// clock is an injected clock tests move by hand.
type clock struct{ t time.Time }

func (c *clock) now() time.Time               { return c.t }
func (c *clock) advance(d time.Duration)      { c.t = c.t.Add(d) }
func newClock() *clock                        { return &clock{t: time.Unix(1_800_000_000, 0)} }
func (c *clock) unix(off time.Duration) int64 { return c.t.Add(off).Unix() }
