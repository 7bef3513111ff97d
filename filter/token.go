package filter

import (
	"fmt"
	"net/url"
	"strings"
)

// The token is looked for in the configured locations, in order, as flask-jwt-extended does:
// the first location holding a token wins; a location holding something malformed stops the
// search with an error; when every location is empty the request has no token. Messages
// follow flask-jwt-extended's wording, so clients see the same errors as before.

// extraction is the outcome of looking for a token.
type extraction struct {
	token string
	// bad explains a malformed location (Authorization header of the wrong shape, repeated).
	bad string
	// misses say why each location held no token (when token and bad are empty). The message
	// is only written by missingMessage, when a 401 is actually sent: most requests without a
	// token are let through, and the request path should not format text it throws away.
	misses [3]miss
	n      int
}

// miss is why one location held no token.
type miss uint8

const (
	missHeader     miss = iota // no such header, or it is empty
	missHeaderType             // the header holds no credential of header_type
	missCookie
	missQuery
)

// extractToken looks through the request headers (lower-case names, as Envoy gives them).
func extractToken(cfg *TokenConfig, headers [][2]string) extraction {
	var ex extraction
	for _, loc := range cfg.Locations {
		var tok, bad string
		var m miss
		switch loc {
		case LocationHeaders:
			tok, m, bad = fromHeader(cfg, headers)
		case LocationCookies:
			tok, m = fromCookie(cfg, headers), missCookie
		case LocationQueryString:
			tok, m = fromQuery(cfg, headers), missQuery
		}
		if bad != "" {
			return extraction{bad: bad}
		}
		if tok != "" {
			return extraction{token: tok}
		}
		ex.misses[ex.n] = m
		ex.n++
	}
	return ex
}

// missingMessage is flask-jwt-extended's explanation of a request without a token.
func (ex *extraction) missingMessage(cfg *TokenConfig) string {
	msgs := make([]string, ex.n)
	for i, m := range ex.misses[:ex.n] {
		switch m {
		case missHeader:
			msgs[i] = fmt.Sprintf("Missing %s Header", cfg.HeaderName)
		case missHeaderType:
			msgs[i] = fmt.Sprintf("Missing '%s' type in '%s' header. Expected '%s: %s <JWT>'", cfg.HeaderType, cfg.HeaderName, cfg.HeaderName, cfg.HeaderType)
		case missCookie:
			msgs[i] = fmt.Sprintf("Missing cookie %q", cfg.CookieName)
		case missQuery:
			msgs[i] = fmt.Sprintf("Missing %q query parameter", cfg.QueryStringName)
		}
	}
	if len(msgs) == 1 {
		return msgs[0]
	}
	names := make([]string, len(cfg.Locations))
	for i, l := range cfg.Locations {
		names[i] = strings.ReplaceAll(string(l), "_", " ")
	}
	return fmt.Sprintf("Missing JWT in %s (%s)", strings.Join(names, " or "), strings.Join(msgs, "; "))
}

func fromHeader(cfg *TokenConfig, headers [][2]string) (token string, m miss, bad string) {
	name := cfg.headerKey
	var value string
	found := 0
	for _, h := range headers {
		if h[0] == name {
			value = h[1]
			found++
		}
	}
	if found > 1 {
		// Two credentials: the upstream might read the other one than we checked.
		return "", 0, fmt.Sprintf("Bad %s header. Expected exactly one %s header", cfg.HeaderName, cfg.HeaderName)
	}
	value = strings.Trim(strings.TrimSpace(value), ",")
	if value == "" {
		return "", missHeader, ""
	}
	if cfg.HeaderType == "" {
		if strings.ContainsAny(value, " \t") {
			return "", 0, badHeader(cfg)
		}
		return value, 0, ""
	}
	// The header may carry several comma-separated credentials; exactly one must be ours.
	// Parsed in place: this runs on every request.
	var ours string
	count := 0
	for rest := value; rest != ""; {
		var field string
		field, rest, _ = strings.Cut(rest, ",")
		field = strings.TrimSpace(field)
		scheme, _ := splitSpace(field)
		if scheme != "" && strings.EqualFold(scheme, cfg.HeaderType) {
			ours = field
			count++
		}
	}
	switch count {
	case 0:
		return "", missHeaderType, ""
	case 1:
	default:
		return "", 0, badHeader(cfg)
	}
	_, tok := splitSpace(ours)
	if tok == "" || strings.ContainsAny(tok, " \t") {
		return "", 0, badHeader(cfg)
	}
	return tok, 0, ""
}

// splitSpace splits "scheme   rest" at the first run of blanks.
func splitSpace(s string) (first, rest string) {
	i := strings.IndexAny(s, " \t")
	if i < 0 {
		return s, ""
	}
	return s[:i], strings.TrimLeft(s[i:], " \t")
}

func badHeader(cfg *TokenConfig) string {
	if cfg.HeaderType == "" {
		return fmt.Sprintf("Bad %s header. Expected '%s: <JWT>'", cfg.HeaderName, cfg.HeaderName)
	}
	return fmt.Sprintf("Bad %s header. Expected '%s: %s <JWT>'", cfg.HeaderName, cfg.HeaderName, cfg.HeaderType)
}

func fromCookie(cfg *TokenConfig, headers [][2]string) string {
	for _, h := range headers {
		if h[0] != "cookie" {
			continue
		}
		for _, c := range strings.Split(h[1], ";") {
			name, value, ok := strings.Cut(strings.TrimSpace(c), "=")
			if ok && name == cfg.CookieName && value != "" {
				return strings.Trim(value, `"`)
			}
		}
	}
	return ""
}

func fromQuery(cfg *TokenConfig, headers [][2]string) string {
	for _, h := range headers {
		if h[0] != ":path" {
			continue
		}
		_, query, _ := strings.Cut(h[1], "?")
		query, _, _ = strings.Cut(query, "#")
		for _, kv := range strings.Split(query, "&") {
			name, value, _ := strings.Cut(kv, "=")
			if name != cfg.QueryStringName {
				continue
			}
			if v, err := url.QueryUnescape(value); err == nil && v != "" {
				return v
			}
		}
		break
	}
	return ""
}
