package jwtverify_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jtiguard/jtiguard/jwtverify"
)

// The reference: golang-jwt v5 with MapClaims, WithStrictDecoding, WithLeeway, WithIssuedAt,
// WithAudience, and the filter's keyFunc over the same keys.

// refKey is one key as golang-jwt is given it.
type refKey struct {
	kid string
	alg string // a JWK's pinned algorithm, or ""
	key any    // []byte, *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey
}

// refKeyFunc is filter/keys.go's keyFunc, written again: keys of the token's family not pinned
// to another algorithm; with a kid, those of that kid, or else those without one.
func refKeyFunc(keys []refKey) jwt.Keyfunc {
	familyOf := func(key any) string {
		switch k := key.(type) {
		case []byte:
			return "HS"
		case *rsa.PublicKey:
			return "RSA"
		case *ecdsa.PublicKey:
			return k.Curve.Params().Name
		case ed25519.PublicKey:
			return "Ed25519"
		}
		return "?"
	}
	algFamily := map[string]string{
		"HS256": "HS", "HS384": "HS", "HS512": "HS", "RS256": "RSA", "RS384": "RSA", "RS512": "RSA",
		"PS256": "RSA", "PS384": "RSA", "PS512": "RSA", "ES256": "P-256", "ES384": "P-384", "ES512": "P-521", "EdDSA": "Ed25519",
	}
	return func(t *jwt.Token) (any, error) {
		alg := t.Method.Alg()
		kid, _ := t.Header["kid"].(string)
		var matched, unnamed []jwt.VerificationKey
		for _, k := range keys {
			if familyOf(k.key) != algFamily[alg] || k.alg != "" && k.alg != alg {
				continue
			}
			switch {
			case kid == "" || k.kid == kid:
				matched = append(matched, k.key)
			case k.kid == "":
				unnamed = append(unnamed, k.key)
			}
		}
		if len(matched) == 0 {
			matched = unnamed
		}
		switch len(matched) {
		case 0:
			return nil, fmt.Errorf("%w: no key", jwt.ErrTokenUnverifiable)
		case 1:
			return matched[0], nil
		}
		return jwt.VerificationKeySet{Keys: matched}, nil
	}
}

// pair is our verifier and the reference, configured alike.
type pair struct {
	ours   *jwtverify.Verifier
	parser *jwt.Parser
	keyFn  jwt.Keyfunc
	leeway time.Duration
}

var allAlgorithms = []string{"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// signer is a private key and what signs with it.
type signer struct {
	kid  string
	algs []string
	key  any
}

// referenceSetup has a key of every family (two HMAC secrets, one named, and a pinned HS384
// JWK), the same keys for both sides, and the signers of the seeds.
func referenceSetup(t testing.TB, audience, issuer string, leeway time.Duration) (pair, []signer) {
	k := testKeys()
	pinned := []byte("pinned to HS384, pinned to HS384")
	keys := jwtverify.Keys{
		Algorithms: allAlgorithms,
		HMAC:       []jwtverify.HMACKey{{KID: "h1", Secret: k.hs}, {Secret: k.hsOther}},
		PEM: []jwtverify.PEMKey{
			{KID: "r1", PEM: pemOf(t, &k.rsa.PublicKey)}, {PEM: pemOf(t, &k.p256.PublicKey)},
			{PEM: pemOf(t, &k.p384.PublicKey)}, {KID: "e5", PEM: pemOf(t, &k.p521.PublicKey)}, {PEM: pemOf(t, k.ed.Public())},
		},
		JWKS: jwks(t, map[string]string{"kty": "oct", "kid": "p", "alg": "HS384", "k": b64(pinned)}),
	}
	ref := []refKey{
		{"h1", "", k.hs}, {"", "", k.hsOther}, {"r1", "", &k.rsa.PublicKey}, {"", "", &k.p256.PublicKey},
		{"", "", &k.p384.PublicKey}, {"e5", "", &k.p521.PublicKey}, {"", "", k.ed.Public()}, {"p", "HS384", pinned},
	}
	now := func() time.Time { return testNow }
	opts := jwtverify.Options{Leeway: leeway, Now: now}
	popts := []jwt.ParserOption{jwt.WithValidMethods(allAlgorithms), jwt.WithStrictDecoding(), jwt.WithLeeway(leeway), jwt.WithIssuedAt(), jwt.WithTimeFunc(now)}
	if audience != "" {
		opts.Audiences = []string{audience}
		popts = append(popts, jwt.WithAudience(audience))
	}
	if issuer != "" {
		opts.Issuers = []string{issuer}
		popts = append(popts, jwt.WithIssuer(issuer))
	}
	p := pair{ours: newVerifier(t, keys, opts), parser: jwt.NewParser(popts...), keyFn: refKeyFunc(ref), leeway: leeway}
	signers := []signer{
		{"h1", []string{"HS256", "HS384", "HS512"}, k.hs}, {"", []string{"HS256", "HS512"}, k.hsOther},
		{"p", []string{"HS384"}, pinned}, {"r1", []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"}, k.rsa},
		{"", []string{"ES256"}, k.p256}, {"", []string{"ES384"}, k.p384}, {"e5", []string{"ES512"}, k.p521},
		{"", []string{"EdDSA"}, k.ed},
	}
	return p, signers
}

// check runs both sides on a token and fails on any disagreement that is not a documented,
// deliberate difference (docs/verifier.md).
func (p pair) check(t testing.TB, token string) {
	t.Helper()
	var c jwtverify.Claims
	ours := p.ours.Verify(token, &c)
	p.samePayloadVerdict(t, token, &c, ours)
	var m jwt.MapClaims = jwt.MapClaims{}
	tok, ref := p.parser.ParseWithClaims(token, m, p.keyFn)
	switch {
	case ours == nil && ref != nil:
		t.Fatalf("we accept a token golang-jwt refuses (%v): %q", ref, token)
	case ours == nil:
		if problem := sameClaims(&c, tok, m, p.leeway); problem != "" {
			t.Fatalf("claims differ from golang-jwt's: %s; token %q", problem, token)
		}
	case ref == nil:
		reason := jwtverify.Reason(ours)
		if why := deliberate(reason, token, tok, m); why != "" {
			t.Fatalf("we refuse (%v, reason %q) a token golang-jwt accepts, and %s: %q", ours, reason, why, token)
		}
	}
}

// claimStage are the reasons found after the signature, by the claim checks alone.
var claimStage = map[string]bool{
	"": true, "date-type": true, "date-range": true, "exp-zero": true, "iat": true, "nbf": true, "issuer": true,
	"audience": true, "sub-type": true, "jti-type": true, "jti-length": true, "expired": true,
}

// samePayloadVerdict: a token that passed the signature check gets the same verdict and claims
// from VerifyPayload on its payload segment (jwt_authn's forwarded payload) as from Verify.
func (p pair) samePayloadVerdict(t testing.TB, token string, c *jwtverify.Claims, err error) {
	t.Helper()
	if !claimStage[jwtverify.Reason(err)] {
		return
	}
	var pc jwtverify.Claims
	perr := p.ours.VerifyPayload(strings.Split(token, ".")[1], &pc)
	if fmt.Sprint(perr) != fmt.Sprint(err) {
		t.Fatalf("VerifyPayload = %v; Verify = %v; token %q", perr, err, token)
	}
	if err == nil && (string(pc.JTI) != string(c.JTI) || string(pc.Sub) != string(c.Sub) || pc.Exp != c.Exp || !pc.ValidUntil.Equal(c.ValidUntil)) {
		t.Fatalf("VerifyPayload claims %+v; Verify %+v", pc, c)
	}
}

func sameClaims(c *jwtverify.Claims, tok *jwt.Token, m jwt.MapClaims, leeway time.Duration) string {
	if tok.Method.Alg() != c.Alg {
		return "alg " + c.Alg
	}
	if kid, _ := tok.Header["kid"].(string); kid != string(c.KID) {
		return "kid"
	}
	str := func(name string, has bool, ours []byte) string {
		v, present := m[name]
		s, isString := v.(string)
		if has != (present && isString) || has && s != string(ours) {
			return fmt.Sprintf("%s: ours %q (present %v), golang-jwt %#v", name, ours, has, v)
		}
		return ""
	}
	if d := str("jti", c.HasJTI, c.JTI); d != "" {
		return d
	}
	if d := str("iss", c.HasIss, c.Iss); d != "" {
		return d
	}
	if d := str("type", c.HasType, c.Type); d != "" {
		return d
	}
	if c.SubIsNumber {
		f, _ := strconv.ParseFloat(string(c.Sub), 64)
		if m["sub"] != f {
			return fmt.Sprintf("sub: ours %s, golang-jwt %#v", c.Sub, m["sub"])
		}
	} else if d := str("sub", c.HasSub, c.Sub); d != "" {
		return d
	}
	for _, d := range []struct {
		name  string
		has   bool
		value int64
	}{{"exp", c.HasExp, c.Exp}, {"nbf", c.HasNbf, c.Nbf}, {"iat", c.HasIat, c.Iat}} {
		v, present := m[d.name]
		f, _ := v.(float64)
		if present != d.has || present && int64(math.Floor(f)) != d.value {
			return fmt.Sprintf("%s: ours %d (present %v), golang-jwt %#v", d.name, d.value, d.has, v)
		}
	}
	if c.HasExp && !c.ValidUntil.Equal(time.Unix(c.Exp, 0).Add(leeway)) || !c.HasExp && !c.ValidUntil.IsZero() {
		return fmt.Sprintf("ValidUntil %v", c.ValidUntil)
	}
	aud, err := m.GetAudience()
	if c.HasAud {
		if err != nil || len(aud) != len(c.Aud) {
			return fmt.Sprintf("aud: ours %q, golang-jwt %q (%v)", c.Aud, aud, err)
		}
		for i := range aud {
			if aud[i] != string(c.Aud[i]) {
				return fmt.Sprintf("aud: ours %q, golang-jwt %q", c.Aud, aud)
			}
		}
	} else if err == nil && len(aud) > 0 {
		return fmt.Sprintf("aud: ours none, golang-jwt %q", aud)
	}
	return ""
}

// deliberate confirms, independently of our scanner, that a token we refuse and golang-jwt
// accepts shows the feature our refusal names; it returns why not, or "".
func deliberate(reason, token string, tok *jwt.Token, m jwt.MapClaims) string {
	parts := strings.Split(token, ".")
	header, _ := base64.RawURLEncoding.Strict().DecodeString(parts[0])
	payload, _ := base64.RawURLEncoding.Strict().DecodeString(parts[1])
	switch reason {
	case "crit":
		if _, ok := tok.Header["crit"]; ok {
			return ""
		}
	case "b64":
		if tok.Header["b64"] == false {
			return ""
		}
	case "kid-type":
		if kid, ok := tok.Header["kid"]; ok {
			if _, isString := kid.(string); !isString {
				return ""
			}
		}
	case "utf8":
		if !utf8.Valid(header) || !utf8.Valid(payload) {
			return ""
		}
	case "surrogate":
		if hasSurrogateEscape(header) || hasSurrogateEscape(payload) {
			return ""
		}
	case "depth":
		if jsonDepth(header) > 255 || jsonDepth(payload) > 255 {
			return ""
		}
	case "duplicate":
		if hasDuplicateMember(header) || hasDuplicateMember(payload) {
			return ""
		}
	case "not-object":
		if m == nil || len(bytes.TrimSpace(payload)) == 4 && string(bytes.TrimSpace(payload)) == "null" {
			return ""
		}
	case "exp-zero":
		if m["exp"] == 0.0 {
			return ""
		}
	case "date-range":
		for _, name := range []string{"exp", "nbf", "iat"} {
			if f, ok := m[name].(float64); ok && math.Abs(f) >= 1<<62 {
				return ""
			}
		}
	case "sub-type":
		if _, isString := m["sub"].(string); !isString && m["sub"] != nil || m["sub"] == nil && hasMember(payload, "sub") {
			return ""
		}
	case "jti-type":
		if _, isString := m["jti"].(string); !isString && hasMember(payload, "jti") {
			return ""
		}
	case "jti-length":
		if s, _ := m["jti"].(string); len(s) > jwtverify.MaxJTIBytes {
			return ""
		}
	default:
		return "that is not a deliberate difference"
	}
	return "the token does not show that difference"
}

// hasSurrogateEscape reports a \uD800-\uDFFF escape in JSON text.
func hasSurrogateEscape(b []byte) bool {
	for i := 0; i+1 < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		if b[i+1] == 'u' && i+5 < len(b) {
			if v, err := strconv.ParseUint(string(b[i+2:i+6]), 16, 16); err == nil && v >= 0xd800 && v <= 0xdfff {
				return true
			}
		}
		i++ // skip the escaped character
	}
	return false
}

// jsonDepth is the deepest nesting of valid JSON, by encoding/json's tokenizer.
func jsonDepth(b []byte) int {
	dec := json.NewDecoder(bytes.NewReader(b))
	depth, deepest := 0, 0
	for {
		tk, err := dec.Token()
		if err != nil {
			return deepest
		}
		switch tk {
		case json.Delim('{'), json.Delim('['):
			depth++
			deepest = max(deepest, depth)
		case json.Delim('}'), json.Delim(']'):
			depth--
		}
	}
}

// topMembers lists the member names of a JSON object, by encoding/json's tokenizer.
func topMembers(b []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(b))
	if tk, err := dec.Token(); err != nil || tk != json.Delim('{') {
		return nil
	}
	var names []string
	for dec.More() {
		tk, err := dec.Token()
		if err != nil {
			return names
		}
		names = append(names, tk.(string))
		var skip json.RawMessage
		if dec.Decode(&skip) != nil {
			return names
		}
	}
	return names
}

func hasDuplicateMember(b []byte) bool {
	seen := map[string]bool{}
	for _, n := range topMembers(b) {
		if seen[n] {
			return true
		}
		seen[n] = true
	}
	return false
}

func hasMember(b []byte, name string) bool {
	for _, n := range topMembers(b) {
		if n == name {
			return true
		}
	}
	return false
}
