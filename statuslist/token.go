package statuslist

import (
	"bytes"
	"compress/zlib"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/jtiguard/jtiguard/jwtverify"
)

// Token is a verified Status List Token (section 5.1): its list, decompressed, and the claims
// that say how long it may be used.
type Token struct {
	List
	IssuedAt time.Time
	// Expires is exp; zero when the token has none.
	Expires time.Time
	// TTL is ttl; zero when the token has none.
	TTL time.Duration
}

// TokenOptions say what a Status List Token must satisfy.
type TokenOptions struct {
	// URI is the uri the Referenced Tokens name; the token's sub must equal it.
	URI string
	// Keys verify the signature; their algorithm allowlist applies ("none" is never allowed).
	Keys *jwtverify.KeySet
	// Leeway widens the iat, nbf and exp checks, as for the filter's own tokens.
	Leeway time.Duration
	// MaxListBytes bounds the decompressed list.
	MaxListBytes int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// maxTTL caps ttl so that adding it to a time cannot overflow; the configuration's max_ttl
// clamps it far lower anyway.
const maxTTL = 100 * 365 * 24 * time.Hour

// ParseToken validates a Status List Token in JWT form as section 8.3 asks, and returns its
// list. The checks, in order: compact JWS of three segments; the header's typ is
// statuslist+jwt (application/statuslist+jwt and other cases too: RFC 7515 4.1.9 compares media
// types so); the signature, algorithm, crit, iat, nbf and exp as jwtverify checks the filter's
// own tokens (exp in the past, iat or nbf in the future beyond the leeway are refused); sub is
// a string equal to URI; iat is present; ttl, if present, is a positive number; status_list is
// an object whose bits is 1, 2, 4 or 8 and whose lst is base64url of a ZLIB stream (RFC 1950,
// checksum verified, no preset dictionary, nothing after it) that inflates to at most
// MaxListBytes. A header or payload that names a member twice is refused: the issuer signed
// one meaning, and parsers disagree on which of the two it was.
func ParseToken(token []byte, o TokenOptions) (*Token, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Keys == nil {
		return nil, fmt.Errorf("%w: no keys to verify it with", ErrBadToken)
	}
	// A view, not a copy: the fetching VM's heap holds the body already, and the verifier
	// copies it once more (a wasm VM's memory never shrinks). Nothing returned aliases it.
	trimmed := bytes.TrimSpace(token) // a static file often ends in a newline
	tok := unsafe.String(unsafe.SliceData(trimmed), len(trimmed))
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		if len(parts) == 5 {
			return nil, fmt.Errorf("%w: a JWE (5 segments); status list tokens are signed JWTs", ErrBadToken)
		}
		return nil, fmt.Errorf("%w: not a compact JWS (%d segments, want 3)", ErrBadToken, len(parts))
	}
	hdr, err := decodeObject(parts[0], "header")
	if err != nil {
		return nil, err
	}
	if typ, err := stringMember(hdr, "typ"); err != nil || !isStatusListType(typ) {
		return nil, fmt.Errorf("%w: header typ must be \"statuslist+jwt\", got %s", ErrBadToken, describe(hdr["typ"]))
	}
	v, err := jwtverify.New(o.Keys, jwtverify.Options{Leeway: o.Leeway, StrictSubject: true, MaxTokenBytes: len(tok) + 1, Now: o.Now})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	var c jwtverify.Claims
	if err := v.Verify(tok, &c); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadToken, err)
	}
	if !c.HasSub || string(c.Sub) != o.URI {
		return nil, fmt.Errorf("%w: sub %s is not the list's uri %q", ErrBadToken, quoteShort(string(c.Sub), c.HasSub), o.URI)
	}
	if !c.HasIat {
		return nil, fmt.Errorf("%w: iat is missing (required)", ErrBadToken)
	}
	pay, err := decodeObject(parts[1], "payload")
	if err != nil {
		return nil, err
	}
	t := &Token{IssuedAt: time.Unix(c.Iat, 0)}
	if c.HasExp {
		t.Expires = time.Unix(c.Exp, 0)
	}
	if raw, ok := pay["ttl"]; ok {
		ttl, err := strconv.ParseFloat(string(raw), 64)
		if err != nil || !isJSONNumber(raw) || !(ttl > 0) || math.IsInf(ttl, 0) {
			return nil, fmt.Errorf("%w: ttl must be a positive number of seconds, got %s", ErrBadToken, describe(raw))
		}
		t.TTL = time.Duration(min(ttl, maxTTL.Seconds()) * float64(time.Second))
	}
	rawList, ok := pay["status_list"]
	if !ok {
		return nil, fmt.Errorf("%w: status_list claim is missing", ErrBadToken)
	}
	sl, err := parseObject(rawList, "status_list")
	if err != nil {
		return nil, err
	}
	bits, err := strconv.Atoi(string(sl["bits"]))
	if err != nil || !ValidBits(bits) {
		return nil, fmt.Errorf("%w: status_list.bits must be 1, 2, 4 or 8, got %s", ErrBadToken, describe(sl["bits"]))
	}
	lst, err := stringMember(sl, "lst")
	if err != nil {
		return nil, fmt.Errorf("%w: status_list.lst must be a string, got %s", ErrBadToken, describe(sl["lst"]))
	}
	compressed, err := base64.RawURLEncoding.Strict().DecodeString(strings.TrimRight(lst, "="))
	if err != nil {
		return nil, fmt.Errorf("%w: status_list.lst is not base64url: %w", ErrBadToken, err)
	}
	if t.Bytes, err = Inflate(compressed, o.MaxListBytes); err != nil {
		return nil, err
	}
	t.Bits = uint8(bits)
	return t, nil
}

// Inflate decompresses a ZLIB stream (RFC 1950) of at most max bytes. The Adler-32 checksum
// must match, a preset dictionary is refused (the draft names none), and bytes after the
// stream are refused: a list is exactly one stream.
func Inflate(compressed []byte, max int) ([]byte, error) {
	r := bytes.NewReader(compressed)
	zr, err := zlib.NewReader(r)
	if err != nil {
		return nil, fmt.Errorf("%w: status_list.lst is not a ZLIB stream: %w", ErrBadToken, err)
	}
	var out bytes.Buffer
	n, err := io.Copy(&out, io.LimitReader(zr, int64(max)+1))
	if err != nil {
		return nil, fmt.Errorf("%w: status_list.lst does not inflate: %w", ErrBadToken, err)
	}
	if n > int64(max) {
		return nil, fmt.Errorf("%w: the list inflates to more than max_list_bytes %d", ErrTooLarge, max)
	}
	if err := zr.Close(); err != nil {
		return nil, fmt.Errorf("%w: status_list.lst: %w", ErrBadToken, err)
	}
	if r.Len() > 0 {
		return nil, fmt.Errorf("%w: status_list.lst has %d bytes after its ZLIB stream", ErrBadToken, r.Len())
	}
	b := out.Bytes()
	if cap(b)-len(b) > len(b)/4 {
		b = bytes.Clone(b) // the list is kept for its lifetime: not the buffer's doubling slack
	}
	return b, nil
}

// isStatusListType compares typ as a media type: case-insensitively, "application/" implied.
func isStatusListType(typ string) bool {
	typ = strings.ToLower(typ)
	return typ == "statuslist+jwt" || typ == "application/statuslist+jwt"
}

// decodeObject decodes a base64url segment holding a JSON object.
func decodeObject(segment, what string) (map[string]json.RawMessage, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(segment)
	if err != nil {
		return nil, fmt.Errorf("%w: %s is not base64url: %w", ErrBadToken, what, err)
	}
	return parseObject(b, what)
}

// parseObject reads a JSON object's members by their exact names (encoding/json's struct
// decoding would match STATUS_LIST to status_list), refusing a name given twice.
func parseObject(b []byte, what string) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("%w: %s is not a JSON object", ErrBadToken, what)
	}
	m := make(map[string]json.RawMessage)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrBadToken, what, err)
		}
		name := tok.(string) // inside an object, Token returns names as strings
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrBadToken, what, err)
		}
		if _, dup := m[name]; dup {
			return nil, fmt.Errorf("%w: %s names %q twice", ErrBadToken, what, name)
		}
		m[name] = raw
	}
	if _, err := dec.Token(); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrBadToken, what, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("%w: %s has data after its object", ErrBadToken, what)
	}
	return m, nil
}

func stringMember(m map[string]json.RawMessage, name string) (string, error) {
	raw, ok := m[name]
	if !ok || len(raw) == 0 || raw[0] != '"' {
		return "", errors.New("not a string")
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

func isJSONNumber(raw json.RawMessage) bool {
	return len(raw) > 0 && (raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9')
}

// describe names a JSON value in an error, briefly: the list's endpoint is trusted with
// configuration, not with the size of our logs.
func describe(raw json.RawMessage) string {
	if raw == nil {
		return "nothing"
	}
	return quoteShort(string(raw), true)
}

func quoteShort(s string, present bool) string {
	if !present {
		return "(absent)"
	}
	if len(s) > 64 {
		return strconv.Quote(s[:64]) + "…"
	}
	return strconv.Quote(s)
}
