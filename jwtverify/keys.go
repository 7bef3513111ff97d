package jwtverify

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math/big"
	"slices"
	"strings"
	"sync"
)

// Algorithm confusion is prevented by construction: every key is filed under the one family
// its type can verify, and a token only ever meets keys of its own algorithm's family. An
// HS256 token is checked against HMAC secrets alone, never against the bytes of an RSA
// public key; "none" is not an algorithm this package knows.

type alg uint8

const (
	algUnknown alg = iota
	algHS256
	algHS384
	algHS512
	algRS256
	algRS384
	algRS512
	algPS256
	algPS384
	algPS512
	algES256
	algES384
	algES512
	algEdDSA
	numAlgs
)

var algNames = [numAlgs]string{
	algHS256: "HS256", algHS384: "HS384", algHS512: "HS512",
	algRS256: "RS256", algRS384: "RS384", algRS512: "RS512",
	algPS256: "PS256", algPS384: "PS384", algPS512: "PS512",
	algES256: "ES256", algES384: "ES384", algES512: "ES512",
	algEdDSA: "EdDSA",
}

// algByName reads an algorithm name without allocating; algUnknown for anything else.
func algByName(b []byte) alg {
	switch string(b) {
	case "HS256":
		return algHS256
	case "HS384":
		return algHS384
	case "HS512":
		return algHS512
	case "RS256":
		return algRS256
	case "RS384":
		return algRS384
	case "RS512":
		return algRS512
	case "PS256":
		return algPS256
	case "PS384":
		return algPS384
	case "PS512":
		return algPS512
	case "ES256":
		return algES256
	case "ES384":
		return algES384
	case "ES512":
		return algES512
	case "EdDSA":
		return algEdDSA
	}
	return algUnknown
}

type family uint8

const (
	familyHMAC family = iota
	familyRSA         // RS* and PS*
	familyP256
	familyP384
	familyP521
	familyEd25519
	numFamilies
)

var familyOf = [numAlgs]family{
	algHS256: familyHMAC, algHS384: familyHMAC, algHS512: familyHMAC,
	algRS256: familyRSA, algRS384: familyRSA, algRS512: familyRSA,
	algPS256: familyRSA, algPS384: familyRSA, algPS512: familyRSA,
	algES256: familyP256, algES384: familyP384, algES512: familyP521,
	algEdDSA: familyEd25519,
}

var familyName = [numFamilies]string{
	familyHMAC: "HMAC secret", familyRSA: "RSA public key", familyP256: "P-256 public key",
	familyP384: "P-384 public key", familyP521: "P-521 public key", familyEd25519: "Ed25519 public key",
}

const (
	minRSABits = 2048
	// MaxJWKSKeys bounds a JWKS, inline or (later) fetched.
	MaxJWKSKeys = 100
)

// Keys is the verification configuration: the algorithm allowlist and the keys, as the
// plugin configuration gives them. Secrets are already resolved (from base64, the
// environment) by the caller.
type Keys struct {
	Algorithms []string
	HMAC       []HMACKey
	PEM        []PEMKey
	// JWKS is a JWK Set document: a JSON object, or a JSON string holding one.
	JWKS []byte
}

// HMACKey is a shared secret for HS256/384/512.
type HMACKey struct {
	KID    string
	Secret []byte
}

// PEMKey is one PEM block: PKIX "PUBLIC KEY", PKCS#1 "RSA PUBLIC KEY" or a "CERTIFICATE"
// (only its public key is used: no chain, name or date is checked).
type PEMKey struct {
	KID string
	PEM string
}

// KeySet is an immutable set of verification keys and the algorithm allowlist. It is built
// once (from configuration, or later from a fetched JWKS) and swapped whole with
// Verifier.SetKeys, so a request never sees half of an update.
type KeySet struct {
	allowed    [numAlgs]bool
	algorithms []string
	byFamily   [numFamilies][]*key
}

// key is one verification key. alg, when set, pins it to that one algorithm (a JWK's "alg").
type key struct {
	kid  string
	alg  alg
	hmac *hmacKey
	rsa  *rsa.PublicKey
	ec   *ecdsa.PublicKey
	ed   ed25519.PublicKey
}

// hmacKey keeps one keyed HMAC per hash, so a token costs no hmac.New (its two hash
// initialisations and key schedule): Reset restores the saved keyed state. A hash.Hash is
// not safe for concurrent use, and a wasm VM runs one request at a time, so a mutex that is
// never contended there (and keeps the native tests and any multi-threaded host correct)
// guards the states and the sum buffer.
type hmacKey struct {
	mu  sync.Mutex
	h   [3]hash.Hash // HS256, HS384, HS512
	sum [sha512.Size]byte
}

func newHMACKey(secret []byte) *hmacKey {
	k := &hmacKey{h: [3]hash.Hash{
		hmac.New(sha256.New, secret),
		hmac.New(sha512.New384, secret),
		hmac.New(sha512.New, secret),
	}}
	for _, h := range k.h {
		h.Reset() // saves the keyed states, so later Resets are a copy
	}
	return k
}

// Algorithms returns the allowlist.
func (ks *KeySet) Algorithms() []string { return append([]string(nil), ks.algorithms...) }

// NewKeySet checks the configuration and builds the key set. The error joins every
// problem, each naming its item (algorithms, hmac_secrets[i], public_keys[i], jwks). As
// before: every allowed algorithm needs a key of its family, and every key an allowed
// algorithm; RSA keys have at least 2048 bits; EC points lie on their curve.
func NewKeySet(k Keys) (*KeySet, error) {
	ks := &KeySet{}
	var errs []error
	if len(k.Algorithms) == 0 {
		errs = append(errs, errors.New("algorithms: must allow at least one algorithm"))
	}
	var allowedFamily [numFamilies]bool
	for _, name := range k.Algorithms {
		a := algByName([]byte(name))
		if a == algUnknown {
			errs = append(errs, fmt.Errorf("algorithms: unknown or forbidden algorithm %q", name))
			continue
		}
		if !ks.allowed[a] {
			ks.allowed[a] = true
			ks.algorithms = append(ks.algorithms, name)
		}
		allowedFamily[familyOf[a]] = true
	}
	add := func(f family, k *key) { ks.byFamily[f] = append(ks.byFamily[f], k) }

	for i, h := range k.HMAC {
		if err := checkHMACSecret(h.Secret); err != nil {
			errs = append(errs, fmt.Errorf("hmac_secrets[%d]: %w", i, err))
			continue
		}
		add(familyHMAC, &key{kid: h.KID, hmac: newHMACKey(h.Secret)})
	}
	for i, p := range k.PEM {
		pub, err := parsePublicKeyPEM(p.PEM)
		if err == nil {
			var kk *key
			var f family
			if kk, f, err = newPublicKey(p.KID, pub); err == nil {
				add(f, kk)
				continue
			}
		}
		errs = append(errs, fmt.Errorf("public_keys[%d]: %w", i, err))
	}
	if len(k.JWKS) > 0 {
		keys, err := parseJWKS(k.JWKS)
		if err != nil {
			errs = append(errs, err)
		}
		for _, jk := range keys {
			add(jk.family, jk.key)
		}
	}
	for f := range numFamilies {
		switch {
		case allowedFamily[f] && len(ks.byFamily[f]) == 0:
			errs = append(errs, fmt.Errorf("algorithms: %s allowed but no %s is configured", ks.algsOf(f), familyName[f]))
		case !allowedFamily[f] && len(ks.byFamily[f]) > 0:
			errs = append(errs, fmt.Errorf("a %s is configured but no algorithm that uses it is allowed", familyName[f]))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return ks, nil
}

func (ks *KeySet) algsOf(f family) string {
	var out []string
	for _, name := range ks.algorithms {
		if familyOf[algByName([]byte(name))] == f {
			out = append(out, name)
		}
	}
	return strings.Join(out, ", ")
}

// checkHMACSecret refuses an empty secret and, as PyJWT does, one that is a public key: a
// configuration that pastes the RSA public key as "the secret" would let anyone who knows
// that public key sign tokens.
func checkHMACSecret(secret []byte) error {
	if len(secret) == 0 {
		return errors.New("secret is empty")
	}
	s := bytes.TrimSpace(secret)
	for _, prefix := range []string{"ssh-rsa ", "ssh-ed25519 ", "ssh-dss ", "ecdsa-sha2-nistp"} {
		if bytes.HasPrefix(s, []byte(prefix)) {
			return errors.New("secret is an SSH public key: an HMAC secret must be a shared secret")
		}
	}
	if bytes.Contains(s, []byte("-----BEGIN ")) {
		return errors.New("secret is a PEM key or certificate: an HMAC secret must be a shared secret")
	}
	return nil
}

// newPublicKey files a parsed public key under its family, checking its size.
func newPublicKey(kid string, pub any) (*key, family, error) {
	switch p := pub.(type) {
	case *rsa.PublicKey:
		if err := checkRSA(p); err != nil {
			return nil, 0, err
		}
		return &key{kid: kid, rsa: p}, familyRSA, nil
	case *ecdsa.PublicKey:
		var f family
		switch p.Curve {
		case elliptic.P256():
			f = familyP256
		case elliptic.P384():
			f = familyP384
		case elliptic.P521():
			f = familyP521
		default:
			return nil, 0, fmt.Errorf("unsupported curve %s", p.Curve.Params().Name)
		}
		return &key{kid: kid, ec: p}, f, nil
	case ed25519.PublicKey:
		if smallOrderEd25519(p) {
			return nil, 0, errors.New("Ed25519 key is a point of small order: with it, a signature anyone can make verifies")
		}
		return &key{kid: kid, ed: p}, familyEd25519, nil
	}
	return nil, 0, fmt.Errorf("unsupported key type %T", pub)
}

// smallOrderEd25519 reports a public key whose point has order 1, 2, 4 or 8. crypto/ed25519
// verifies with such a key a signature nobody made (R the identity, S zero: for the identity
// key every message, for the others one in two to eight), and an endpoint serving a
// placeholder key (all zeros) or a hostile one would let anyone forge tokens. The list is the
// encodings of the eight such points (the first byte's value ignoring the sign bit of the
// last, which picks x's sign), canonical and not: y = 0, 1, p-1, two y of order 8, and p and
// p+1, which decoders take as 0 and 1. TestSmallOrderEd25519Forges holds each to forging.
func smallOrderEd25519(pub []byte) bool {
	if len(pub) != ed25519.PublicKeySize {
		return false
	}
	var k [ed25519.PublicKeySize]byte
	copy(k[:], pub)
	k[31] &= 0x7f
	for _, bad := range &smallOrderPoints {
		if k == bad {
			return true
		}
	}
	return false
}

var smallOrderPoints = [...][ed25519.PublicKeySize]byte{
	{0x00}, // y = 0: order 4
	{0x01}, // y = 1: the identity
	{0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0,
		0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05}, // order 8
	{0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
		0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a}, // order 8
	{0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, // y = p-1: order 2
	{0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, // y = p, read as 0
	{0xee, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f}, // y = p+1, read as 1
}

// checkRSA refuses what crypto/rsa would refuse at every verification (an even modulus, an
// even or out-of-range exponent), so such a key fails the configuration instead of every token.
func checkRSA(k *rsa.PublicKey) error {
	if bits := k.N.BitLen(); bits < minRSABits {
		return fmt.Errorf("RSA key of %d bits: at least %d are required", bits, minRSABits)
	}
	if k.N.Bit(0) == 0 {
		return errors.New("RSA modulus is even")
	}
	if k.E < 3 || k.E%2 == 0 || k.E > 1<<31-1 {
		return fmt.Errorf("RSA public exponent %d is not an odd number from 3 to 2^31-1", k.E)
	}
	return nil
}

type jwkKey struct {
	key    *key
	family family
}

// parseJWKS reads a JWK Set (RFC 7517 5). Member names are matched exactly. Keys whose
// "use" is not "sig" are skipped; a key's "alg" pins it to that algorithm.
func parseJWKS(raw []byte) ([]jwkKey, error) {
	var text string
	if json.Unmarshal(raw, &text) == nil {
		raw = []byte(text)
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("jwks: not a JWKS document: %w", err)
	}
	var list []json.RawMessage
	if err := json.Unmarshal(doc["keys"], &list); err != nil || doc["keys"] == nil {
		return nil, errors.New(`jwks: not a JWKS document: want {"keys": [...]}`)
	}
	if len(list) == 0 || len(list) > MaxJWKSKeys {
		return nil, fmt.Errorf("jwks: must hold 1 to %d keys, has %d", MaxJWKSKeys, len(list))
	}
	var out []jwkKey
	var errs []error
	for i, item := range list {
		kid, k, err := parseJWK(item)
		if err != nil {
			name := fmt.Sprintf("keys[%d]", i)
			if kid != "" {
				name = fmt.Sprintf("key %q", kid)
			}
			errs = append(errs, fmt.Errorf("jwks: %s: %w", name, err))
			continue
		}
		if k.key != nil {
			out = append(out, k)
		}
	}
	return out, errors.Join(errs...)
}

// jwk holds a JWK's string members, by exact name.
type jwk map[string]string

var jwkMembers = []string{"kty", "kid", "alg", "use", "n", "e", "crv", "x", "y", "k", "d"}

// parseJWK reads one key. A nil key with a nil error is a key that is not for signatures.
func parseJWK(raw json.RawMessage) (kid string, out jwkKey, err error) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return "", jwkKey{}, errors.New("not a JSON object")
	}
	j := jwk{}
	for _, name := range jwkMembers {
		if v, ok := members[name]; ok {
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return "", jwkKey{}, fmt.Errorf("member %q is not a string", name)
			}
			j[name] = s
		}
	}
	kid = j["kid"]
	if use := j["use"]; use != "" && use != "sig" {
		return kid, jwkKey{}, nil // an encryption key is not for us
	}
	if v, ok := members["key_ops"]; ok {
		var ops []string
		if err := json.Unmarshal(v, &ops); err != nil || ops == nil {
			return kid, jwkKey{}, errors.New(`member "key_ops" is not an array of strings`)
		}
		if !slices.Contains(ops, "verify") {
			return kid, jwkKey{}, nil // RFC 7517 4.3: not for verifying signatures
		}
	}
	if _, ok := j["d"]; ok {
		return kid, jwkKey{}, errors.New(`holds a private key ("d"): give only the public key`)
	}
	var pinned alg
	if name := j["alg"]; name != "" {
		if pinned = algByName([]byte(name)); pinned == algUnknown {
			return kid, jwkKey{}, fmt.Errorf("unknown alg %q", name)
		}
	}
	pub, err := j.publicKey()
	if err != nil {
		return kid, jwkKey{}, err
	}
	if secret, ok := pub.([]byte); ok {
		if err := checkHMACSecret(secret); err != nil {
			return kid, jwkKey{}, err
		}
		out = jwkKey{&key{kid: kid, hmac: newHMACKey(secret)}, familyHMAC}
	} else {
		k, f, err := newPublicKey(kid, pub)
		if err != nil {
			return kid, jwkKey{}, err
		}
		out = jwkKey{k, f}
	}
	if pinned != algUnknown && familyOf[pinned] != out.family {
		return kid, jwkKey{}, fmt.Errorf("declares alg %q, which its key type cannot serve", j["alg"])
	}
	out.key.alg = pinned
	return kid, out, nil
}

func (j jwk) b64(name string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(j[name], "="))
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("member %q is not non-empty base64url", name)
	}
	return b, nil
}

func (j jwk) publicKey() (any, error) {
	switch j["kty"] {
	case "RSA":
		n, err := j.b64("n")
		if err != nil {
			return nil, err
		}
		e, err := j.b64("e")
		if err != nil {
			return nil, err
		}
		if len(e) > 4 {
			return nil, errors.New(`member "e" is too large`)
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: int(new(big.Int).SetBytes(e).Int64())}, nil
	case "EC":
		var curve elliptic.Curve
		switch j["crv"] {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("unsupported curve %q", j["crv"])
		}
		x, err := j.b64("x")
		if err != nil {
			return nil, err
		}
		y, err := j.b64("y")
		if err != nil {
			return nil, err
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(x) != size || len(y) != size {
			return nil, fmt.Errorf("coordinates must be %d bytes", size)
		}
		// Through the uncompressed point form, so a point off the curve is refused.
		k, err := ecdsa.ParseUncompressedPublicKey(curve, append(append([]byte{4}, x...), y...))
		if err != nil {
			return nil, errors.New("point is not on the curve")
		}
		return k, nil
	case "OKP":
		if j["crv"] != "Ed25519" {
			return nil, fmt.Errorf("unsupported OKP curve %q", j["crv"])
		}
		x, err := j.b64("x")
		if err != nil {
			return nil, err
		}
		if len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("Ed25519 key must be %d bytes", ed25519.PublicKeySize)
		}
		return ed25519.PublicKey(x), nil
	case "oct":
		return j.b64("k")
	default:
		return nil, fmt.Errorf("unsupported kty %q", j["kty"])
	}
}
