package filter

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/golang-jwt/jwt/v5"
)

// Algorithm confusion is prevented by construction: every configured key is filed under the
// one family its type can verify, and a token only ever gets keys of its own algorithm's
// family. An HS256 token is checked against HMAC secrets alone, never against the bytes of
// an RSA public key; "none" is not an algorithm this package knows.

type family int

const (
	familyHMAC family = iota
	familyRSA         // RS* and PS*
	familyP256
	familyP384
	familyP521
	familyEd25519
)

var familyOf = map[string]family{
	"HS256": familyHMAC, "HS384": familyHMAC, "HS512": familyHMAC,
	"RS256": familyRSA, "RS384": familyRSA, "RS512": familyRSA,
	"PS256": familyRSA, "PS384": familyRSA, "PS512": familyRSA,
	"ES256": familyP256, "ES384": familyP384, "ES512": familyP521,
	"EdDSA": familyEd25519,
}

var familyName = map[family]string{
	familyHMAC: "HMAC secret", familyRSA: "RSA public key", familyP256: "P-256 public key",
	familyP384: "P-384 public key", familyP521: "P-521 public key", familyEd25519: "Ed25519 public key",
}

const (
	minRSABits  = 2048
	maxJWKSKeys = 100
)

type namedKey struct {
	kid string
	alg string // the JWK's "alg", when it names one: the key then serves only that algorithm
	key any
}

// keySet holds the verification keys by family and the algorithm allowlist.
type keySet struct {
	algorithms []string
	byFamily   map[family][]namedKey
}

func buildKeySet(j *JWTConfig, getenv func(string) string) (keySet, error) {
	ks := keySet{byFamily: map[family][]namedKey{}}
	var errs []error
	if len(j.Algorithms) == 0 {
		errs = append(errs, errors.New("algorithms: must allow at least one algorithm"))
	}
	allowed := map[family]bool{}
	for _, alg := range j.Algorithms {
		f, ok := familyOf[alg]
		if !ok {
			errs = append(errs, fmt.Errorf("algorithms: unknown or forbidden algorithm %q", alg))
			continue
		}
		allowed[f] = true
		ks.algorithms = append(ks.algorithms, alg)
	}
	add := func(f family, k namedKey) { ks.byFamily[f] = append(ks.byFamily[f], k) }

	for i, s := range j.HMACSecrets {
		secret, err := s.resolve(getenv)
		if err != nil {
			errs = append(errs, fmt.Errorf("hmac_secrets[%d]: %w", i, err))
			continue
		}
		add(familyHMAC, namedKey{kid: s.KID, key: secret})
	}
	for i, p := range j.PublicKeys {
		key, err := parsePublicKeyPEM(p.PEM)
		if err != nil {
			errs = append(errs, fmt.Errorf("public_keys[%d]: %w", i, err))
			continue
		}
		f, err := familyOfKey(key)
		if err != nil {
			errs = append(errs, fmt.Errorf("public_keys[%d]: %w", i, err))
			continue
		}
		add(f, namedKey{kid: p.KID, key: key})
	}
	if len(j.JWKS) > 0 {
		keys, err := parseJWKS(j.JWKS)
		if err != nil {
			errs = append(errs, fmt.Errorf("jwks: %w", err))
		}
		for _, k := range keys {
			f, err := familyOfKey(k.key)
			if err != nil {
				errs = append(errs, fmt.Errorf("jwks: key %q: %w", k.kid, err))
				continue
			}
			if k.alg != "" && familyOf[k.alg] != f {
				errs = append(errs, fmt.Errorf("jwks: key %q declares alg %q, which its key type cannot serve", k.kid, k.alg))
				continue
			}
			add(f, k)
		}
	}
	for f := range allowed {
		if len(ks.byFamily[f]) == 0 {
			errs = append(errs, fmt.Errorf("algorithms: %s allowed but no %s is configured", algsOf(j.Algorithms, f), familyName[f]))
		}
	}
	for f, keys := range ks.byFamily {
		if !allowed[f] && len(keys) > 0 {
			errs = append(errs, fmt.Errorf("a %s is configured but no algorithm that uses it is allowed", familyName[f]))
		}
	}
	return ks, errors.Join(errs...)
}

func algsOf(algs []string, f family) string {
	var out []string
	for _, a := range algs {
		if g, ok := familyOf[a]; ok && g == f {
			out = append(out, a)
		}
	}
	return strings.Join(out, ", ")
}

func (s HMACSecret) resolve(getenv func(string) string) ([]byte, error) {
	set := 0
	for _, v := range []string{s.Secret, s.SecretBase64, s.SecretEnv} {
		if v != "" {
			set++
		}
	}
	if set != 1 {
		return nil, errors.New("give exactly one of secret, secret_base64, secret_env")
	}
	var secret []byte
	switch {
	case s.Secret != "":
		secret = []byte(s.Secret)
	case s.SecretBase64 != "":
		b, err := base64.StdEncoding.DecodeString(s.SecretBase64)
		if err != nil {
			return nil, fmt.Errorf("secret_base64: %w", err)
		}
		secret = b
	default:
		v := getenv(s.SecretEnv)
		if v == "" {
			return nil, fmt.Errorf("secret_env: environment variable %q is empty or not set in the VM", s.SecretEnv)
		}
		secret = []byte(v)
	}
	if len(secret) == 0 {
		return nil, errors.New("secret is empty")
	}
	return secret, nil
}

func parsePublicKeyPEM(text string) (any, error) {
	block, rest := pem.Decode([]byte(strings.TrimSpace(text)))
	if block == nil {
		return nil, errors.New("no PEM block found")
	}
	if len(strings.TrimSpace(string(rest))) > 0 {
		return nil, errors.New("more than one PEM block: give one key per entry")
	}
	switch block.Type {
	case "PUBLIC KEY":
		return x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		return x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		return cert.PublicKey, nil
	default:
		return nil, fmt.Errorf("PEM block %q is not a public key (private keys do not belong in a proxy)", block.Type)
	}
}

func familyOfKey(key any) (family, error) {
	switch k := key.(type) {
	case *rsa.PublicKey:
		if k.N.BitLen() < minRSABits {
			return 0, fmt.Errorf("RSA key of %d bits: at least %d are required", k.N.BitLen(), minRSABits)
		}
		return familyRSA, nil
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return familyP256, nil
		case elliptic.P384():
			return familyP384, nil
		case elliptic.P521():
			return familyP521, nil
		}
		return 0, fmt.Errorf("unsupported curve %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return familyEd25519, nil
	case []byte:
		return familyHMAC, nil
	default:
		return 0, fmt.Errorf("unsupported key type %T", key)
	}
}

type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
	N   string `json:"n"`
	E   string `json:"e"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	K   string `json:"k"`
}

// parseJWKS reads an inline JWKS, given as a JSON object or as a string holding one.
func parseJWKS(raw json.RawMessage) ([]namedKey, error) {
	var text string
	if json.Unmarshal(raw, &text) == nil {
		raw = json.RawMessage(text)
	}
	var set struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(raw, &set); err != nil {
		return nil, fmt.Errorf("not a JWKS document: %w", err)
	}
	if len(set.Keys) == 0 || len(set.Keys) > maxJWKSKeys {
		return nil, fmt.Errorf("must hold 1 to %d keys, has %d", maxJWKSKeys, len(set.Keys))
	}
	var out []namedKey
	var errs []error
	for i, k := range set.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue // encryption keys are not for us
		}
		key, err := k.publicKey()
		if err != nil {
			errs = append(errs, fmt.Errorf("keys[%d] (kid %q): %w", i, k.Kid, err))
			continue
		}
		if k.Alg != "" {
			if _, ok := familyOf[k.Alg]; !ok {
				errs = append(errs, fmt.Errorf("keys[%d] (kid %q): unknown alg %q", i, k.Kid, k.Alg))
				continue
			}
		}
		out = append(out, namedKey{kid: k.Kid, alg: k.Alg, key: key})
	}
	return out, errors.Join(errs...)
}

func b64(field, s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "="))
	if err != nil || len(b) == 0 {
		return nil, fmt.Errorf("field %q is not non-empty base64url", field)
	}
	return b, nil
}

func (k jwk) publicKey() (any, error) {
	switch k.Kty {
	case "RSA":
		n, err := b64("n", k.N)
		if err != nil {
			return nil, err
		}
		e, err := b64("e", k.E)
		if err != nil {
			return nil, err
		}
		if len(e) > 4 {
			return nil, errors.New("field \"e\" is too large")
		}
		exp := int(new(big.Int).SetBytes(e).Int64())
		if exp < 3 || exp%2 == 0 {
			return nil, errors.New("field \"e\" is not a valid RSA exponent")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: exp}, nil
	case "EC":
		var curve elliptic.Curve
		switch k.Crv {
		case "P-256":
			curve = elliptic.P256()
		case "P-384":
			curve = elliptic.P384()
		case "P-521":
			curve = elliptic.P521()
		default:
			return nil, fmt.Errorf("unsupported curve %q", k.Crv)
		}
		x, err := b64("x", k.X)
		if err != nil {
			return nil, err
		}
		y, err := b64("y", k.Y)
		if err != nil {
			return nil, err
		}
		size := (curve.Params().BitSize + 7) / 8
		if len(x) != size || len(y) != size {
			return nil, fmt.Errorf("coordinates must be %d bytes", size)
		}
		// Parse through the uncompressed point form so an off-curve point is refused.
		point := append(append([]byte{4}, x...), y...)
		return ecdsaFromPoint(curve, point)
	case "OKP":
		if k.Crv != "Ed25519" {
			return nil, fmt.Errorf("unsupported OKP curve %q", k.Crv)
		}
		x, err := b64("x", k.X)
		if err != nil {
			return nil, err
		}
		if len(x) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("Ed25519 key must be %d bytes", ed25519.PublicKeySize)
		}
		return ed25519.PublicKey(x), nil
	case "oct":
		return b64("k", k.K)
	default:
		return nil, fmt.Errorf("unsupported kty %q", k.Kty)
	}
}

func ecdsaFromPoint(curve elliptic.Curve, point []byte) (*ecdsa.PublicKey, error) {
	// elliptic.Unmarshal refuses points that are not on the curve (invalid-curve attacks).
	x, y := elliptic.Unmarshal(curve, point) //nolint:staticcheck // still the one call that parses and checks a point
	if x == nil {
		return nil, errors.New("point is not on the curve")
	}
	return &ecdsa.PublicKey{Curve: curve, X: x, Y: y}, nil
}

// keyFunc gives golang-jwt the keys a token may be verified with: only keys of the family
// of the token's (already allowlisted) algorithm; with a kid, the keys of that kid, or the
// keys that have none.
func (ks *keySet) keyFunc(t *jwt.Token) (any, error) {
	alg := t.Method.Alg()
	f, ok := familyOf[alg]
	if !ok {
		return nil, fmt.Errorf("%w: algorithm %q", jwt.ErrTokenUnverifiable, alg)
	}
	kid, _ := t.Header["kid"].(string)
	var matched, unnamed []jwt.VerificationKey
	for _, k := range ks.byFamily[f] {
		if k.alg != "" && k.alg != alg {
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
		return nil, fmt.Errorf("%w: no %s key for this token", jwt.ErrTokenUnverifiable, alg)
	case 1:
		return matched[0], nil
	default:
		return jwt.VerificationKeySet{Keys: matched}, nil
	}
}
