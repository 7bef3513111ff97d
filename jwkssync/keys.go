package jwkssync

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/jtiguard/jtiguard/jwtverify"
)

// Sentinel errors of a fetched JWKS. Every refusal wraps ErrBadJWKS and one of the others.
var (
	ErrBadJWKS = errors.New("JWKS refused")
	// ErrMalformedJWKS is a body that is not a JWK Set document.
	ErrMalformedJWKS = errors.New(`not a JWKS document: want {"keys": [...]}`)
	// ErrTooManyKeys is a document of more keys than jwtverify.MaxJWKSKeys, or more than fit
	// beside the inline JWKS.
	ErrTooManyKeys = errors.New("too many keys")
	// ErrNoUsableKey is a document none of whose keys passes the checks of an inline key.
	ErrNoUsableKey = errors.New("no usable signing key")
)

// family is the kind of key an algorithm needs, as jwtverify files keys: a token only meets
// keys of its algorithm's family.
type family uint8

const (
	famHMAC family = iota
	famRSA
	famP256
	famP384
	famP521
	famEd25519
	numFamilies
	famNone = numFamilies
)

var familyAlgs = [numFamilies][]string{
	famHMAC:    {"HS256", "HS384", "HS512"},
	famRSA:     {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"},
	famP256:    {"ES256"},
	famP384:    {"ES384"},
	famP521:    {"ES512"},
	famEd25519: {"EdDSA"},
}

var familyWords = [numFamilies]string{
	famHMAC: "oct (HMAC)", famRSA: "RSA", famP256: "EC P-256", famP384: "EC P-384", famP521: "EC P-521", famEd25519: "OKP Ed25519",
}

func familyOfAlg(name string) family {
	for f, algs := range familyAlgs {
		if slices.Contains(algs, name) {
			return family(f)
		}
	}
	return famNone
}

// jwkFamily reads a JWK's family from kty and crv alone, without its key material.
func jwkFamily(kty, crv string) family {
	switch kty {
	case "RSA":
		return famRSA
	case "oct":
		return famHMAC
	case "EC":
		switch crv {
		case "P-256":
			return famP256
		case "P-384":
			return famP384
		case "P-521":
			return famP521
		}
	case "OKP":
		if crv == "Ed25519" {
			return famEd25519
		}
	}
	return famNone
}

// Builder makes the verifier's key sets: the configuration's inline keys, always, plus the
// keys of a fetched JWKS. The allowlist (jwt.algorithms) may name algorithms that no inline
// key serves, since the remote JWKS may bring their keys; each key set allows the configured
// algorithms whose family has a key in it, so jwtverify's rule "every allowed algorithm needs
// a key" holds for every set, and a token of another configured algorithm is refused as not
// allowed until a key for it arrives.
type Builder struct {
	algorithms []string
	inline     jwtverify.Keys // JWKS cleared: its keys are in inlineJWKS
	inlineJWKS []json.RawMessage
	families   [numFamilies]bool // of the inline keys
	kids       []string          // of the inline keys
	inlineSet  *jwtverify.KeySet
}

// NewBuilder checks the inline keys (secrets resolved by the caller) and returns a Builder.
// The error joins every problem, each naming its item as jwtverify.NewKeySet does.
func NewBuilder(inline jwtverify.Keys) (*Builder, error) {
	b := &Builder{algorithms: slices.Clone(inline.Algorithms), inline: inline}
	b.inline.JWKS = nil
	var errs []error
	if len(inline.Algorithms) == 0 {
		errs = append(errs, errors.New("algorithms: must allow at least one algorithm"))
	}
	for _, a := range inline.Algorithms {
		if familyOfAlg(a) == famNone {
			errs = append(errs, fmt.Errorf("algorithms: unknown or forbidden algorithm %q", a))
		}
	}
	for _, h := range inline.HMAC {
		b.families[famHMAC] = true
		b.addKID(h.KID)
	}
	for _, p := range inline.PEM {
		// jwtverify says which family a PEM key is only by accepting it for one: try each.
		// A key no family accepts is left to the full build below, which names its problem.
		for f := range numFamilies {
			if _, err := jwtverify.NewKeySet(jwtverify.Keys{Algorithms: familyAlgs[f][:1], PEM: []jwtverify.PEMKey{p}}); err == nil {
				b.families[f] = true
				break
			}
		}
		b.addKID(p.KID)
	}
	if len(inline.JWKS) > 0 {
		keys, err := splitJWKS(inline.JWKS, true)
		if err != nil {
			errs = append(errs, fmt.Errorf("jwks: %w", err))
		}
		for _, raw := range keys {
			m, err := jwkMembers(raw)
			if err != nil || !m.forVerifying() {
				continue // jwtverify names the problem, or skips the key, in the build below
			}
			if f := jwkFamily(m.kty, m.crv); f != famNone {
				b.families[f] = true
			}
			b.addKID(m.kid)
		}
		b.inlineJWKS = keys
	}
	if len(errs) == 0 {
		ks, err := b.build(nil, b.families)
		if err != nil {
			errs = append(errs, err)
		}
		b.inlineSet = ks
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *Builder) addKID(kid string) {
	if kid != "" && !slices.Contains(b.kids, kid) {
		b.kids = append(b.kids, kid)
	}
}

// Inline is the key set of the inline keys alone: what the verifier holds until a remote
// JWKS arrives. With no inline key it is empty, and refuses every token as not allowed.
func (b *Builder) Inline() *jwtverify.KeySet { return b.inlineSet }

// Algorithms is the configured allowlist.
func (b *Builder) Algorithms() []string { return slices.Clone(b.algorithms) }

// build makes the key set of the inline keys plus remote (already accepted), allowing the
// configured algorithms of the families present.
func (b *Builder) build(remote []json.RawMessage, fams [numFamilies]bool) (*jwtverify.KeySet, error) {
	var algs []string
	for _, a := range b.algorithms {
		if f := familyOfAlg(a); f != famNone && fams[f] {
			algs = append(algs, a)
		}
	}
	jwks := append(slices.Clone(b.inlineJWKS), remote...)
	if len(algs) == 0 && len(b.inline.HMAC)+len(b.inline.PEM)+len(jwks) == 0 {
		return &jwtverify.KeySet{}, nil
	}
	k := jwtverify.Keys{Algorithms: algs, HMAC: b.inline.HMAC, PEM: b.inline.PEM}
	if len(jwks) > 0 {
		k.JWKS = joinJWKS(jwks)
	}
	return jwtverify.NewKeySet(k)
}

// Accepted is a fetched JWKS after the checks: the keys kept, the key set they make with the
// inline keys, and why the others were skipped.
type Accepted struct {
	// Doc is the JWKS of the accepted keys, compact: what shared data holds.
	Doc     []byte
	Keys    int
	KIDs    []string // of the accepted keys, in order, without repeats
	Skipped []string // one reason per skipped key, naming it
	Set     *jwtverify.KeySet
}

// Accept checks a fetched JWKS key by key, as strictly as an inline JWKS: jwtverify's checks
// (RSA of at least 2048 bits with a sane exponent, EC points on their curve, no private
// part, an alg that its key type serves) and the allowlist. A key that fails is skipped and
// named in Skipped; a key whose use is not "sig" is skipped silently, as inline. The document
// is refused whole (ErrBadJWKS) when it is not a JWK Set, holds more than
// jwtverify.MaxJWKSKeys keys (or more than fit beside the inline JWKS), or keeps no key.
func (b *Builder) Accept(doc []byte) (*Accepted, error) {
	keys, err := splitJWKS(doc, false)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadJWKS, err)
	}
	if len(keys) > jwtverify.MaxJWKSKeys {
		return nil, fmt.Errorf("%w: %w: %d keys, at most %d", ErrBadJWKS, ErrTooManyKeys, len(keys), jwtverify.MaxJWKSKeys)
	}
	out := &Accepted{}
	fams := b.families
	var kept []json.RawMessage
	for i, raw := range keys {
		m, err := jwkMembers(raw)
		name := fmt.Sprintf("keys[%d]", i)
		if m.kid != "" {
			name = fmt.Sprintf("key %q", truncate(m.kid, 64))
		}
		if err != nil {
			out.Skipped = append(out.Skipped, name+": "+err.Error())
			continue
		}
		if !m.forVerifying() {
			continue // an encryption key
		}
		f := jwkFamily(m.kty, m.crv)
		if f == famNone {
			out.Skipped = append(out.Skipped, fmt.Sprintf("%s: unsupported key type %q (curve %q)", name, truncate(m.kty, 16), truncate(m.crv, 16)))
			continue
		}
		if f == famHMAC {
			// A JWK Set endpoint serves a public document: an HMAC key in it is a secret
			// anyone who fetched it knows, and anyone could sign tokens with it.
			out.Skipped = append(out.Skipped, name+": a symmetric (oct) key in a fetched JWK Set is public; HMAC secrets belong in jwt.hmac_secrets")
			continue
		}
		var algs []string
		for _, a := range b.algorithms {
			if familyOfAlg(a) == f {
				algs = append(algs, a)
			}
		}
		switch {
		case len(algs) == 0:
			out.Skipped = append(out.Skipped, fmt.Sprintf("%s: an %s key, and jwt.algorithms allows no algorithm that uses one", name, familyWords[f]))
			continue
		case m.alg != "" && !slices.Contains(algs, m.alg):
			out.Skipped = append(out.Skipped, fmt.Sprintf("%s: alg %q is not one of jwt.algorithms for an %s key", name, truncate(m.alg, 16), familyWords[f]))
			continue
		}
		// The key alone, under the algorithms of its family: jwtverify's own checks.
		if _, err := jwtverify.NewKeySet(jwtverify.Keys{Algorithms: algs, JWKS: joinJWKS([]json.RawMessage{raw})}); err != nil {
			out.Skipped = append(out.Skipped, name+": "+keyProblem(err))
			continue
		}
		fams[f] = true
		kept = append(kept, raw)
		if m.kid != "" && !slices.Contains(out.KIDs, m.kid) {
			out.KIDs = append(out.KIDs, m.kid)
		}
	}
	if len(kept) == 0 {
		why := "the document holds no key"
		if len(out.Skipped) > 0 {
			why = strings.Join(out.Skipped, "; ")
		}
		return nil, fmt.Errorf("%w: %w: %s", ErrBadJWKS, ErrNoUsableKey, truncate(why, 1024))
	}
	if n := len(kept) + len(b.inlineJWKS); n > jwtverify.MaxJWKSKeys {
		return nil, fmt.Errorf("%w: %w: %d usable keys beside %d inline JWKS keys, at most %d in all",
			ErrBadJWKS, ErrTooManyKeys, len(kept), len(b.inlineJWKS), jwtverify.MaxJWKSKeys)
	}
	set, err := b.build(kept, fams)
	if err != nil {
		return nil, fmt.Errorf("%w: with the inline keys: %w", ErrBadJWKS, err)
	}
	out.Doc, out.Keys, out.Set = joinJWKS(kept), len(kept), set
	return out, nil
}

// keyProblem is what jwtverify said about the one key of a set: its "jwks: <key>: " item,
// without the allowlist complaints that follow from the key's absence.
func keyProblem(err error) string {
	var items []string
	var walk func(error)
	walk = func(e error) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if msg, ok := strings.CutPrefix(e.Error(), "jwks: "); ok {
			if _, rest, found := strings.Cut(msg, ": "); found && (strings.HasPrefix(msg, "key ") || strings.HasPrefix(msg, "keys[")) {
				msg = rest
			}
			items = append(items, msg)
		}
	}
	walk(err)
	if len(items) == 0 {
		return err.Error()
	}
	return strings.Join(items, "; ")
}

// KnowsKID reports whether kid names an inline key or one of accepted (nil: none).
func (b *Builder) KnowsKID(kid string, accepted *Accepted) bool {
	return slices.Contains(b.kids, kid) || accepted != nil && slices.Contains(accepted.KIDs, kid)
}

// splitJWKS returns the keys of a JWK Set document, each compacted. An inline JWKS may be a
// JSON string holding the document, as the configuration allows.
func splitJWKS(doc []byte, inline bool) ([]json.RawMessage, error) {
	if inline {
		var text string
		if json.Unmarshal(doc, &text) == nil {
			doc = []byte(text)
		}
	}
	var d map[string]json.RawMessage
	if err := json.Unmarshal(doc, &d); err != nil {
		return nil, ErrMalformedJWKS
	}
	raw, ok := d["keys"]
	var keys []json.RawMessage
	if !ok || json.Unmarshal(raw, &keys) != nil || keys == nil {
		return nil, ErrMalformedJWKS
	}
	for i, k := range keys {
		var c bytes.Buffer
		if err := json.Compact(&c, k); err == nil {
			keys[i] = c.Bytes()
		}
	}
	return keys, nil
}

func joinJWKS(keys []json.RawMessage) []byte {
	var b bytes.Buffer
	b.WriteString(`{"keys":[`)
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(',')
		}
		b.Write(k)
	}
	b.WriteString("]}")
	return b.Bytes()
}

// members are the JWK members read here, by exact name as jwtverify reads them.
type members struct {
	kty, crv, kid, alg, use string
	keyOps                  []string // nil when absent
}

// forVerifying reports a key that may verify signatures (RFC 7517 4.2 use, 4.3 key_ops), as
// jwtverify reads them: others are left out silently.
func (m members) forVerifying() bool {
	return (m.use == "" || m.use == "sig") && (m.keyOps == nil || slices.Contains(m.keyOps, "verify"))
}

func jwkMembers(raw json.RawMessage) (members, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return members{}, errors.New("not a JSON object")
	}
	var m members
	for _, x := range []struct {
		name string
		dst  *string
	}{{"kty", &m.kty}, {"crv", &m.crv}, {"kid", &m.kid}, {"alg", &m.alg}, {"use", &m.use}} {
		v, ok := obj[x.name]
		if !ok {
			continue
		}
		if err := json.Unmarshal(v, x.dst); err != nil {
			return m, fmt.Errorf("member %q is not a string", x.name)
		}
	}
	if v, ok := obj["key_ops"]; ok {
		if err := json.Unmarshal(v, &m.keyOps); err != nil || m.keyOps == nil {
			return m, errors.New(`member "key_ops" is not an array of strings`)
		}
	}
	return m, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
