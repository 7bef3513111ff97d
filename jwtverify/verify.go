package jwtverify

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// DefaultMaxTokenBytes bounds a token, and so the buffer a Claims keeps: Envoy's default
// limit on all request headers is 60 KiB.
const DefaultMaxTokenBytes = 64 << 10

// MaxJTIBytes is the longest jti accepted: the blocklist stores jtis of at most this length.
const MaxJTIBytes = 256

// maxDate bounds NumericDates (about 146 billion years). Beyond it golang-jwt's time
// arithmetic overflows and its answer depends on the platform; no real token comes near.
const maxDate = 1 << 62

// Options are the claim checks, fixed for the life of a Verifier.
type Options struct {
	// Leeway widens every time check, as golang-jwt's WithLeeway and PyJWT's leeway.
	Leeway time.Duration
	// Audiences, when set, require aud to hold one of them (golang-jwt's WithAudience, PyJWT's
	// audience, flask's JWT_DECODE_AUDIENCE). When empty, aud is not checked at all.
	Audiences []string
	// Issuers, when set, require iss to be one of them (PyJWT's issuer, for several).
	Issuers []string
	// StrictSubject refuses a sub that is not a string (PyJWT 2.10 and later). By default an
	// integer sub is accepted and kept as its decimal text, because flask-jwt-extended's own
	// examples issue identity=user.id and PyJWT before 2.10 accepts it.
	StrictSubject bool
	// MaxTokenBytes bounds the token; 0 means DefaultMaxTokenBytes.
	MaxTokenBytes int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Verifier verifies compact JWS tokens against the current KeySet. It is safe for
// concurrent use when each goroutine passes its own Claims.
type Verifier struct {
	keys atomic.Pointer[KeySet]
	opts Options
}

// New returns a verifier that uses ks until SetKeys replaces it.
func New(ks *KeySet, opts Options) (*Verifier, error) {
	if ks == nil {
		return nil, errors.New("jwtverify: nil key set")
	}
	if opts.Leeway < 0 {
		return nil, fmt.Errorf("jwtverify: leeway %s is negative", opts.Leeway)
	}
	if opts.MaxTokenBytes < 0 {
		return nil, fmt.Errorf("jwtverify: max token bytes %d is negative", opts.MaxTokenBytes)
	}
	if opts.MaxTokenBytes == 0 {
		opts.MaxTokenBytes = DefaultMaxTokenBytes
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	opts.Audiences = append([]string(nil), opts.Audiences...)
	opts.Issuers = append([]string(nil), opts.Issuers...)
	v := &Verifier{opts: opts}
	v.keys.Store(ks)
	return v, nil
}

// SetKeys replaces the key set; verifications already running finish with the old one.
func (v *Verifier) SetKeys(ks *KeySet) {
	if ks != nil {
		v.keys.Store(ks)
	}
}

// Keys returns the current key set.
func (v *Verifier) Keys() *KeySet { return v.keys.Load() }

// Claims is what Verify reads from a token. The byte slices point into a buffer the Claims
// owns and reuses: they stay valid until the next Verify into the same Claims, and callers
// that keep a value longer copy it. Reusing one Claims makes verification allocation-free
// once its buffer has grown to the largest token seen. Fields are meaningful only after
// Verify returned nil.
type Claims struct {
	Alg string // the token's algorithm (one of the allowlist)
	KID []byte // the header's kid, if any

	JTI    []byte // jti (a string, valid UTF-8, at most MaxJTIBytes)
	HasJTI bool   // jti is present (it may still be empty)

	Sub         []byte // sub: the string, or an integer's decimal text
	HasSub      bool
	SubIsNumber bool // sub was an integer (only without Options.StrictSubject)

	Iss    []byte
	HasIss bool // iss is present and a string

	Type    []byte // flask-jwt-extended's "type" ("access", "refresh") when a string
	HasType bool

	Aud    [][]byte // aud as a list, when it is a string or an array of strings
	HasAud bool     // aud is present and a string or an array of strings

	// NumericDates in whole seconds, rounded down as golang-jwt does.
	Exp, Nbf, Iat          int64
	HasExp, HasNbf, HasIat bool

	// ValidUntil is exp plus the leeway: the token is accepted while now is before it, and no
	// longer, so a cache of verified tokens can keep an entry to this instant. Zero without exp.
	ValidUntil time.Time

	buf []byte
}

// IsRefresh reports whether flask-jwt-extended treats the token as a refresh token (its
// "type" is "refresh"; anything else, or none, is an access token).
func (c *Claims) IsRefresh() bool { return c.HasType && string(c.Type) == "refresh" }

func (c *Claims) reset() {
	buf, aud := c.buf, c.Aud[:0]
	*c = Claims{buf: buf, Aud: aud}
}

// header is what the JOSE header holds for us.
type header struct {
	alg      alg
	algSeen  bool
	kid      []byte
	kidSeen  bool
	kidIsStr bool
	crit     val // raw, unescaped later
	critSeen bool
	b64False bool
	b64Seen  bool
}

// date is a NumericDate as scanned.
type date struct {
	seen  bool
	bad   bool // not a number
	big   bool // out of range
	whole int64
}

// payload is the state of the claims scan beyond what Claims holds.
type payload struct {
	iat, nbf, exp                     date
	jtiSeen, jtiBad                   bool
	subSeen, subBad, issSeen, audSeen bool
	audFalsy, audFormat, typeSeen     bool
}

// Verify checks a compact JWS token and reads its claims into c. The checks run in the
// order flask-jwt-extended (through PyJWT) runs them, so the first failure is the one the
// app would report: segments, base64 and JSON of the header, base64 of the payload and of
// the signature, kid, crit, b64, JSON of the payload, algorithm, signature, iat, nbf, exp's
// type, iss, aud, sub, jti, and expiry last (flask re-decodes an expired token without the
// expiry check and reports any other problem first).
func (v *Verifier) Verify(token string, c *Claims) error {
	c.reset()
	if len(token) > v.opts.MaxTokenBytes {
		return errTooLarge
	}
	d1 := strings.IndexByte(token, '.')
	if d1 < 0 {
		return errSegments
	}
	d2 := strings.IndexByte(token[d1+1:], '.')
	if d2 < 0 {
		return errSegments
	}
	d2 += d1 + 1
	if strings.IndexByte(token[d2+1:], '.') >= 0 {
		return errTooManySegs
	}

	// One buffer: the token (the signing input is its prefix up to the second dot), then the
	// decoded header, payload and signature.
	if cap(c.buf) < 2*len(token) {
		c.buf = make([]byte, 2*len(token), max(2*len(token), 1024))
	}
	buf := c.buf[:cap(c.buf)]
	n := copy(buf, token)
	probe(0)
	b64 := base64.RawURLEncoding.Strict()
	hdrLen, err := b64.Decode(buf[n:], buf[:d1])
	if err != nil {
		return errHeaderPadding
	}
	probe(1)
	hdr := buf[n : n+hdrLen]
	n += hdrLen

	var h header
	if p := scanHeader(hdr, &h); p != jsonOK {
		return headerJSONErrors[p]
	}
	probe(2)
	payLen, err := b64.Decode(buf[n:], buf[d1+1:d2])
	if err != nil {
		return errPayloadPad
	}
	pay := buf[n : n+payLen]
	n += payLen
	sigLen, err := b64.Decode(buf[n:], buf[d2+1:len(token)])
	if err != nil {
		return errCryptoPadding
	}
	sig := buf[n : n+sigLen]
	signingInput := buf[:d2]

	if h.kidSeen && !h.kidIsStr {
		return errKidType
	}
	if h.critSeen {
		if err := checkCrit(hdr, h.crit, h.b64Seen); err != nil {
			return err
		}
	}
	if h.b64False {
		return errB64False
	}
	var p payload
	probe(3)
	if prob := v.scanPayload(pay, c, &p); prob != jsonOK {
		return payloadJSONErrors[prob]
	}
	probe(4)
	ks := v.keys.Load()
	if h.alg == algUnknown || !ks.allowed[h.alg] {
		return errAlg
	}
	if err := ks.verifySignature(h.alg, h.kid, signingInput, sig); err != nil {
		return err
	}
	probe(5)
	c.Alg = algNames[h.alg]
	c.KID = h.kid
	err = v.checkClaims(c, &p)
	probe(6)
	return err
}

// VerifyPayload checks the claims of a token whose signature another component verified:
// Envoy's jwt_authn forwards the payload segment (base64url, padded or not) in its
// forward_payload_header. The claim checks and messages are those of Verify; Alg and KID
// stay empty.
func (v *Verifier) VerifyPayload(segment string, c *Claims) error {
	c.reset()
	if len(segment) > v.opts.MaxTokenBytes {
		return errTooLarge
	}
	segment = strings.TrimRight(segment, "=")
	if cap(c.buf) < 2*len(segment) {
		c.buf = make([]byte, 2*len(segment), max(2*len(segment), 1024))
	}
	buf := c.buf[:cap(c.buf)]
	n := copy(buf, segment)
	payLen, err := base64.RawURLEncoding.Strict().Decode(buf[n:], buf[:n])
	if err != nil {
		return errPayloadPad
	}
	var p payload
	if prob := v.scanPayload(buf[n:n+payLen], c, &p); prob != jsonOK {
		return payloadJSONErrors[prob]
	}
	return v.checkClaims(c, &p)
}

// scanHeader reads the JOSE header: alg, kid, crit and b64; other members are checked and
// skipped.
func scanHeader(b []byte, h *header) jsonProblem {
	if !utf8.Valid(b) {
		return jsonUTF8
	}
	s := scanner{b: b}
	if p := s.begin(); p != jsonOK {
		return p
	}
	for first := true; ; first = false {
		name, done, p := s.member(first)
		if p != jsonOK {
			return p
		}
		if done {
			return s.end()
		}
		var seen *bool
		var dup jsonProblem
		switch string(name) {
		case "alg":
			seen, dup = &h.algSeen, jsonDupAlg
		case "kid":
			seen, dup = &h.kidSeen, jsonDupKid
		case "crit":
			seen, dup = &h.critSeen, jsonDupCrit
		case "b64":
			seen, dup = &h.b64Seen, jsonDupB64
		default:
			if p := s.skip(1); p != jsonOK {
				return p
			}
			continue
		}
		if *seen {
			return dup
		}
		*seen = true
		if dup == jsonDupCrit {
			// Read after the scan: PyJWT checks crit against the whole header.
			start := s.i
			if p := s.skip(1); p != jsonOK {
				return p
			}
			h.crit = val{start: start, end: s.i}
			continue
		}
		v, p := s.value(1)
		if p != jsonOK {
			return p
		}
		switch dup {
		case jsonDupAlg:
			if v.kind == kindString {
				h.alg = algByName(b[v.start:v.end])
			}
		case jsonDupKid:
			if v.kind == kindString {
				h.kid, h.kidIsStr = b[v.start:v.end], true
			}
		case jsonDupB64:
			h.b64False = v.kind == kindFalse
		}
	}
}

// checkCrit applies RFC 7515 4.1.11 as PyJWT does: crit is a non-empty list of strings, each
// an extension we understand and present in the header. The only one understood is PyJWT's,
// "b64" (RFC 7797), and then only with its default value true: b64 false is refused later.
func checkCrit(hdr []byte, raw val, b64Seen bool) error {
	s := scanner{b: hdr[:raw.end], i: raw.start}
	if s.peek() != '[' {
		return errCritList
	}
	s.i++
	if s.peek() == ']' {
		return errCritList
	}
	for first := true; ; first = false {
		if !first {
			if s.peek() == ']' {
				return nil
			}
			s.i++ // ',' (the value was checked by the header scan)
		}
		v, p := s.value(2)
		if p != jsonOK {
			return headerJSONErrors[p]
		}
		if v.kind != kindString {
			return errCritStrings
		}
		if ext := hdr[v.start:v.end]; string(ext) != "b64" {
			return newErr(ErrTokenUnverifiable, reasonCrit, "Unsupported critical extension: "+string(ext))
		}
		if !b64Seen {
			return errCritB64
		}
	}
}

// scanPayload reads the claims we use; duplicates of those are refused, other members are
// checked and skipped.
func (v *Verifier) scanPayload(b []byte, c *Claims, p *payload) jsonProblem {
	if !utf8.Valid(b) {
		return jsonUTF8
	}
	s := scanner{b: b}
	if prob := s.begin(); prob != jsonOK {
		return prob
	}
	for first := true; ; first = false {
		name, done, prob := s.member(first)
		if prob != jsonOK {
			return prob
		}
		if done {
			return s.end()
		}
		var seen *bool
		var dup jsonProblem
		switch string(name) {
		case "jti":
			seen, dup = &p.jtiSeen, jsonDupJTI
		case "sub":
			seen, dup = &p.subSeen, jsonDupSub
		case "iss":
			seen, dup = &p.issSeen, jsonDupIss
		case "aud":
			seen, dup = &p.audSeen, jsonDupAud
		case "exp":
			seen, dup = &p.exp.seen, jsonDupExp
		case "nbf":
			seen, dup = &p.nbf.seen, jsonDupNbf
		case "iat":
			seen, dup = &p.iat.seen, jsonDupIat
		case "type":
			seen, dup = &p.typeSeen, jsonDupType
		default:
			if prob := s.skip(1); prob != jsonOK {
				return prob
			}
			continue
		}
		if *seen {
			return dup
		}
		*seen = true
		if dup == jsonDupAud {
			if prob := v.scanAud(&s, c, p); prob != jsonOK {
				return prob
			}
			continue
		}
		val, prob := s.value(1)
		if prob != jsonOK {
			return prob
		}
		text := b[val.start:val.end]
		switch dup {
		case jsonDupJTI:
			c.HasJTI = true
			if val.kind == kindString {
				c.JTI = text
			} else {
				p.jtiBad = true
			}
		case jsonDupSub:
			c.HasSub = true
			switch {
			case val.kind == kindString:
				c.Sub = text
			case val.kind == kindNumber && !v.opts.StrictSubject && isInteger(text):
				if string(text) == "-0" {
					text = text[1:] // Python's str(int("-0")) is "0"
				}
				c.Sub, c.SubIsNumber = text, true
			default:
				p.subBad = true
			}
		case jsonDupIss:
			if val.kind == kindString {
				c.Iss, c.HasIss = text, true
			}
		case jsonDupExp:
			p.exp = readDate(val, text)
		case jsonDupNbf:
			p.nbf = readDate(val, text)
		case jsonDupIat:
			p.iat = readDate(val, text)
		case jsonDupType:
			if val.kind == kindString { // flask: any other type means access
				c.Type, c.HasType = text, true
			}
		}
	}
}

// scanAud reads aud: a string, or an array whose strings are collected (a non-string element
// makes the claim malformed, checked only when audiences are configured, as everywhere).
func (v *Verifier) scanAud(s *scanner, c *Claims, p *payload) jsonProblem {
	if s.peek() != '[' {
		val, prob := s.value(1)
		if prob != jsonOK {
			return prob
		}
		p.audFalsy = s.falsy(val)
		switch {
		case val.kind == kindString:
			c.Aud = append(c.Aud, s.b[val.start:val.end])
			c.HasAud = true
		case !p.audFalsy:
			p.audFormat = true
		}
		return jsonOK
	}
	s.i++
	if s.peek() == ']' {
		s.i++
		p.audFalsy, c.HasAud = true, true
		return jsonOK
	}
	for first := true; ; first = false {
		if !first {
			switch s.peek() {
			case ']':
				s.i++
				c.HasAud = !p.audFormat
				if p.audFormat {
					c.Aud = c.Aud[:0]
				}
				return jsonOK
			case ',':
				s.i++
			default:
				return jsonSyntax
			}
		}
		val, prob := s.value(2)
		if prob != jsonOK {
			return prob
		}
		if val.kind == kindString {
			c.Aud = append(c.Aud, s.b[val.start:val.end])
		} else {
			p.audFormat = true
		}
	}
}

// isInteger reports whether a JSON number has neither fraction nor exponent: Python reads
// it as an int.
func isInteger(b []byte) bool {
	for _, c := range b {
		if c == '.' || c == 'e' || c == 'E' {
			return false
		}
	}
	return true
}

// readDate reads a NumericDate as golang-jwt does: any JSON number, as a float64, rounded
// down to the second (time.Unix of its parts, truncated to TimePrecision).
func readDate(v val, text []byte) date {
	d := date{seen: true}
	if v.kind != kindNumber {
		d.bad = true
		return d
	}
	var f float64
	if len(text) <= 15 && isInteger(text) {
		// Exact in a float64, as ParseFloat would give it.
		n, neg := int64(0), false
		for _, c := range text {
			if c == '-' {
				neg = true
				continue
			}
			n = n*10 + int64(c-'0')
		}
		if neg {
			n = -n
		}
		d.whole = n
		return d
	}
	f, err := strconv.ParseFloat(string(text), 64)
	if err != nil || math.Abs(f) >= maxDate {
		d.big = true
		return d
	}
	d.whole = int64(math.Floor(f))
	return d
}

// checkClaims runs the claim checks in flask-jwt-extended's order. Time checks are
// golang-jwt's (WithLeeway, WithIssuedAt): exp passes while now < exp+leeway, nbf and iat
// once now >= nbf-leeway and now >= iat-leeway.
func (v *Verifier) checkClaims(c *Claims, p *payload) error {
	now := v.opts.Now()
	leeway := v.opts.Leeway
	if p.iat.seen {
		switch {
		case p.iat.bad:
			return errIatType
		case p.iat.big:
			return errIatRange
		}
		c.Iat, c.HasIat = p.iat.whole, true
		if now.Before(time.Unix(c.Iat, 0).Add(-leeway)) {
			return errIat
		}
	}
	if p.nbf.seen {
		switch {
		case p.nbf.bad:
			return errNbfType
		case p.nbf.big:
			return errNbfRange
		}
		c.Nbf, c.HasNbf = p.nbf.whole, true
		if now.Before(time.Unix(c.Nbf, 0).Add(-leeway)) {
			return errNbf
		}
	}
	if p.exp.seen {
		switch {
		case p.exp.bad:
			return errExpType
		case p.exp.big:
			return errExpRange
		}
		c.Exp, c.HasExp = p.exp.whole, true
		c.ValidUntil = time.Unix(c.Exp, 0).Add(leeway)
	}
	if len(v.opts.Issuers) > 0 {
		switch {
		case !p.issSeen:
			return errIssMissing
		case !c.HasIss || !contains(v.opts.Issuers, c.Iss):
			return errIss
		}
	}
	if len(v.opts.Audiences) > 0 {
		switch {
		case !p.audSeen || p.audFalsy:
			return errAudMissing
		case p.audFormat:
			return errAudFormat
		}
		ok := false
		for _, a := range c.Aud {
			if contains(v.opts.Audiences, a) {
				ok = true
				break
			}
		}
		if !ok {
			return errAud
		}
	}
	if p.subBad {
		return errSubType
	}
	if p.jtiBad {
		return errJTIType
	}
	if len(c.JTI) > MaxJTIBytes {
		return errJTILength
	}
	if c.HasExp {
		if c.Exp == 0 {
			return errExpZero
		}
		if !now.Before(c.ValidUntil) {
			return errExpired
		}
	}
	return nil
}

func contains(list []string, b []byte) bool {
	for _, s := range list {
		if s == string(b) {
			return true
		}
	}
	return false
}

// verifySignature tries the token's candidate keys, as the filter's golang-jwt keyFunc chose
// them: keys of the algorithm's family not pinned to another algorithm; with a kid, those of
// that kid, or else those without one.
func (ks *KeySet) verifySignature(a alg, kid, signingInput, sig []byte) error {
	keys := ks.byFamily[familyOf[a]]
	tried := false
	for pass := 0; pass < 2 && !tried; pass++ {
		for _, k := range keys {
			if k.alg != algUnknown && k.alg != a {
				continue
			}
			if pass == 0 && len(kid) > 0 && k.kid != string(kid) || pass == 1 && (len(kid) == 0 || k.kid != "") {
				continue
			}
			tried = true
			if k.verify(a, signingInput, sig) {
				return nil
			}
		}
	}
	if !tried {
		return errNoKey
	}
	return errSignature
}

func (k *key) verify(a alg, msg, sig []byte) bool {
	switch a {
	case algHS256, algHS384, algHS512:
		return k.hmac.verify(int(a-algHS256), msg, sig)
	case algRS256, algRS384, algRS512, algPS256, algPS384, algPS512:
		var sum [sha512.Size]byte
		digest, h := digestOf(a, msg, &sum)
		if a >= algPS256 {
			// golang-jwt signs with the salt length of the hash and verifies with any.
			return rsa.VerifyPSS(k.rsa, h, digest, sig, pssVerify) == nil
		}
		return rsa.VerifyPKCS1v15(k.rsa, h, digest, sig) == nil
	case algES256, algES384, algES512:
		var sum [sha512.Size]byte
		digest, _ := digestOf(a, msg, &sum)
		return verifyECDSA(k.ec, digest, sig)
	case algEdDSA:
		return ed25519.Verify(k.ed, msg, sig)
	}
	return false
}

var pssVerify = &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto}

func digestOf(a alg, msg []byte, sum *[sha512.Size]byte) ([]byte, crypto.Hash) {
	switch a {
	case algRS256, algPS256, algES256:
		*(*[sha256.Size]byte)(sum[:]) = sha256.Sum256(msg)
		return sum[:sha256.Size], crypto.SHA256
	case algRS384, algPS384, algES384:
		*(*[sha512.Size384]byte)(sum[:]) = sha512.Sum384(msg)
		return sum[:sha512.Size384], crypto.SHA384
	default:
		*sum = sha512.Sum512(msg)
		return sum[:], crypto.SHA512
	}
}

func (k *hmacKey) verify(i int, msg, sig []byte) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	h := k.h[i]
	h.Reset()
	h.Write(msg)
	return hmac.Equal(sig, h.Sum(k.sum[:0]))
}

// verifyECDSA checks a JWS ECDSA signature: r||s, each exactly the curve's size (RFC 7518
// 3.4), as golang-jwt's ecdsa.Verify(r, s) does, by way of the DER form that call builds.
func verifyECDSA(pub *ecdsa.PublicKey, digest, sig []byte) bool {
	size := (pub.Curve.Params().BitSize + 7) / 8
	if len(sig) != 2*size {
		return false
	}
	var der [2*66 + 12]byte
	n := 2 // SEQUENCE header, filled in below
	for _, part := range [2][]byte{sig[:size], sig[size:]} {
		for len(part) > 0 && part[0] == 0 {
			part = part[1:]
		}
		if len(part) == 0 {
			return false // r or s is zero
		}
		pad := int(part[0] >> 7) // a leading 0 keeps the INTEGER positive
		der[n] = 0x02
		der[n+1] = byte(len(part) + pad)
		der[n+2] = 0
		copy(der[n+2+pad:], part)
		n += 2 + pad + len(part)
	}
	body := n - 2
	if body < 0x80 {
		der[0], der[1] = 0x30, byte(body)
		return ecdsa.VerifyASN1(pub, digest, der[:n])
	}
	// P-521: a long-form length.
	var long [2*66 + 13]byte
	long[0], long[1], long[2] = 0x30, 0x81, byte(body)
	copy(long[3:], der[2:n])
	return ecdsa.VerifyASN1(pub, digest, long[:n+1])
}
