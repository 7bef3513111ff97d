package filter

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jtiguard/jtiguard/credentials"
	"github.com/jtiguard/jtiguard/internal/abi"
)

// Decisions the rest of the proxy can see: claims of the verified token sent upstream as
// request headers (jwt.claims_to_headers, as Envoy jwt_authn's claim_to_headers and Higress's
// claims_to_headers do), and the decision itself as Envoy filter state (decision_property).
//
// A mapped header is the application's to trust, so a client must never be able to set it:
// every request the filter lets upstream has the client's headers of those names removed,
// whichever policy let it through, before the token's values are added. Values come only
// from a token whose signature this filter verified; in trust_upstream mode there is none,
// and the configuration refuses the combination.

// ClaimHeader maps one claim of the verified token to a request header sent upstream.
type ClaimHeader struct {
	Claim  string `json:"claim"`
	Header string `json:"header"`
}

// Bounds of jwt.claims_to_headers and of what it forwards.
const (
	maxClaimHeaders = 16
	maxClaimNameLen = 64
	// maxForwardedValue bounds one forwarded value; a longer one is not forwarded.
	maxForwardedValue = 1024
	maxPropertyName   = 64
)

// refusedHeaders cannot be mapped: pseudo-headers aside, those Envoy or the application read
// for something other than identity (framing, routing, hop-by-hop, credentials), where a
// claim's value could change how the request is parsed, routed or authenticated.
var refusedHeaders = []string{
	"authorization", "cookie", "host", "content-length", "content-type", "transfer-encoding",
	"connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate",
	"te", "trailer", "upgrade", "expect",
	// flask-jwt-extended's JWT_ACCESS_CSRF_HEADER_NAME and JWT_REFRESH_CSRF_HEADER_NAME: the
	// csrf claim mapped to it would answer the double-submit check by itself.
	"x-csrf-token",
}

// validateClaimHeaders checks jwt.claims_to_headers and decision_property, lower-casing the
// header names.
func validateClaimHeaders(cfg *Config, bad func(string, string, ...any)) {
	if p := cfg.DecisionProperty; p != "" && (len(p) > maxPropertyName || strings.ContainsFunc(p, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-')
	})) {
		bad("decision_property", "must be 1-%d bytes of a-z, 0-9, '_', '.', '-' (Envoy keeps it as filter state \"wasm.<name>\"), got %q", maxPropertyName, p)
	}
	m := cfg.JWT.ClaimsToHeaders
	if len(m) == 0 {
		return
	}
	if cfg.JWT.TrustUpstream != nil {
		bad("jwt.claims_to_headers", "cannot be used with jwt.trust_upstream: this filter verifies no signature there; use jwt_authn's claim_to_headers instead")
		return
	}
	if len(m) > maxClaimHeaders {
		bad("jwt.claims_to_headers", "at most %d mappings, got %d", maxClaimHeaders, len(m))
		return
	}
	tokenHeader := strings.ToLower(cfg.Token.HeaderName)
	for i := range m {
		field := "jwt.claims_to_headers[" + strconv.Itoa(i) + "]"
		c := &m[i]
		if len(c.Claim) == 0 || len(c.Claim) > maxClaimNameLen || strings.ContainsFunc(c.Claim, func(r rune) bool { return r <= ' ' || r >= 0x7f }) {
			bad(field+".claim", "must be 1-%d bytes of visible ASCII, got %q", maxClaimNameLen, c.Claim)
		}
		h := strings.ToLower(c.Header)
		switch {
		case !credentials.ValidHeaderName(c.Header):
			bad(field+".header", "must be a valid HTTP header name (no pseudo-header), got %q", c.Header)
		// Compared as the application behind the proxy may read names (sameHeaderName: '_' as
		// '-'): a claim mapped to x_csrf_token or to authorization's WSGI twin would be read as
		// the header it spells.
		case slices.ContainsFunc(refusedHeaders, func(r string) bool { return len(r) == len(h) && sameHeaderName(r, h) }):
			bad(field+".header", "%q cannot be set from a claim (framing, routing or credentials header)", c.Header)
		case len(h) == len(tokenHeader) && sameHeaderName(h, tokenHeader) && cfg.Token.Has(LocationHeaders):
			bad(field+".header", "%q is token.header_name, where the token is read", c.Header)
		case slices.ContainsFunc(m[:i], func(o ClaimHeader) bool { return len(o.Header) == len(h) && sameHeaderName(o.Header, h) }):
			bad(field+".header", "%q is mapped twice", c.Header)
		}
		c.Header = h
	}
}

// forwarded is what a verified token gives the mapped headers: (header, value) pairs in
// mapping order, for the mappings whose claim it carries in a forwardable form. Made once
// when the token is verified and kept with it in the token cache, so a token seen again
// costs only the header calls. Immutable once made.
type forwarded struct {
	pairs [][2]string
}

// readForwarded reads the mapped claims from a verified token's payload segment. A string
// is forwarded as it is, a number as its JSON text, a boolean as true or false. Not
// forwarded (the header is then absent upstream): a claim that is missing, null, an object or
// an array, given twice in the payload, longer than maxForwardedValue bytes, or holding a
// control character or leading or trailing white space (which a header cannot carry
// exactly). Allocates, but only on a verification.
func readForwarded(payload string, m []ClaimHeader) *forwarded {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(payload, "="))
	if err != nil {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil
	}
	values := make([]json.RawMessage, len(m))
	seen := make([]int, len(m))
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil
		}
		name, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil
		}
		for i := range m {
			if m[i].Claim == name {
				seen[i]++
				values[i] = v
			}
		}
	}
	fw := &forwarded{}
	for i := range m {
		if seen[i] != 1 {
			continue
		}
		if s, ok := claimText(values[i]); ok {
			fw.pairs = append(fw.pairs, [2]string{m[i].Header, s})
		}
	}
	if len(fw.pairs) == 0 {
		return nil
	}
	return fw
}

// claimText is a claim's value as a header carries it, if it can.
func claimText(v json.RawMessage) (string, bool) {
	if len(v) == 0 {
		return "", false
	}
	var s string
	switch c := v[0]; {
	case c == '"':
		if json.Unmarshal(v, &s) != nil {
			return "", false
		}
	case c == 't' || c == 'f' || c == '-' || c >= '0' && c <= '9':
		s = string(v) // true, false, or a number's text as the token writes it
	default:
		return "", false // null, object, array
	}
	return s, forwardable(s)
}

// forwardable reports whether s can be a header value exactly: bounded, no control
// character (no CR or LF to split a header, no NUL), no white space at either end (HTTP
// strips it).
func forwardable(s string) bool {
	if len(s) > maxForwardedValue {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return s == "" || s[0] != ' ' && s[len(s)-1] != ' '
}

// forwardClaims runs on every request the filter lets upstream when claims_to_headers is set:
// it removes each header of a mapped name the client sent, then adds the verified token's
// values (fw; nil when no token was verified). A host failure fails the request: a forged
// header must not reach the application.
func (p *pluginContext) forwardClaims(fw *forwarded, headers [][2]string) error {
	for hi := range headers {
		h := &headers[hi] // a pointer, not a copy (see decide)
		for i := range p.cfg.JWT.ClaimsToHeaders {
			name := p.cfg.JWT.ClaimsToHeaders[i].Header
			if len(h[0]) == len(name) && sameHeaderName(h[0], name) {
				// Removed by the client's own spelling: x_user_id is not x-user-id to
				// Envoy, but WSGI reads both as HTTP_X_USER_ID, and some servers pass
				// underscored names on. One call per pair: Envoy removes every pair of
				// the name at once (the later calls find none), other hosts may remove one.
				if err := abi.RemoveHTTPRequestHeader(h[0]); err != nil {
					return err
				}
			}
		}
	}
	if fw == nil {
		return nil
	}
	for _, kv := range fw.pairs {
		if err := abi.AddHTTPRequestHeader(kv[0], kv[1]); err != nil {
			return err
		}
	}
	return nil
}

// sameHeaderName compares header names as an application behind the proxy may: without
// case, and with '_' read as '-' (CGI and WSGI turn both into '_').
func sameHeaderName(a, b string) bool {
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == '_' {
			x = '-'
		}
		if y == '_' {
			y = '-'
		}
		if x != y && lower(x) != lower(y) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// recordDecision sets the decision_property filter state to a decision's details
// ("jtiguard_allowed", "jtiguard_revoked", ...). A host that cannot (no stream, or no
// proxy_set_property) is logged once per VM and the request goes on; one that answers
// Unimplemented is not asked again.
func (p *pluginContext) recordDecision(details string) {
	if p.propertyOff || details == "" {
		return
	}
	err := abi.SetProperty(p.cfg.DecisionProperty, details)
	if err == nil {
		return
	}
	if errors.Is(err, types.ErrorUnimplemented) {
		p.propertyOff = true
	}
	if !p.propertyLogged {
		p.propertyLogged = true
		abi.Log(abi.LogLevelWarn, "jtiguard: cannot set decision_property "+p.cfg.DecisionProperty+" (logged once): "+err.Error())
	}
}
