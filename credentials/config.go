package credentials

import "strings"

// Location is where a token may be found, named as flask-jwt-extended's JWT_TOKEN_LOCATION.
type Location string

// Token locations.
const (
	LocationHeaders     Location = "headers"
	LocationCookies     Location = "cookies"
	LocationQueryString Location = "query_string"
	LocationJSON        Location = "json"
)

// Config says where the application reads its tokens; each field mirrors one of
// flask-jwt-extended's settings, with its default.
type Config struct {
	Locations              []Location `json:"locations"`                 // JWT_TOKEN_LOCATION
	HeaderName             string     `json:"header_name"`               // JWT_HEADER_NAME
	HeaderType             string     `json:"header_type"`               // JWT_HEADER_TYPE
	CookieName             string     `json:"cookie_name"`               // JWT_ACCESS_COOKIE_NAME
	RefreshCookieName      string     `json:"refresh_cookie_name"`       // JWT_REFRESH_COOKIE_NAME
	QueryStringName        string     `json:"query_string_name"`         // JWT_QUERY_STRING_NAME
	QueryStringValuePrefix string     `json:"query_string_value_prefix"` // JWT_QUERY_STRING_VALUE_PREFIX
	JSONKey                string     `json:"json_key"`                  // JWT_JSON_KEY
	RefreshJSONKey         string     `json:"refresh_json_key"`          // JWT_REFRESH_JSON_KEY
	// MaxBytes bounds the length of a selected token: anything longer is refused before
	// decoding.
	MaxBytes int `json:"max_bytes"`
	// MaxBodyBytes bounds the request body read for the json location (and scanned for
	// revoked tokens); a longer JSON body is refused with 413.
	MaxBodyBytes int `json:"max_body_bytes"`

	headerKey string // HeaderName in lower case, as Envoy presents header names
}

// Limits on values that come from configuration.
const (
	maxTokenBytesLimit = 64 << 10 // Envoy's default header limit is 60 KiB
	maxBodyBytesLimit  = 16 << 20
)

// DefaultConfig is flask-jwt-extended's defaults.
func DefaultConfig() Config {
	return Config{
		Locations:         []Location{LocationHeaders},
		HeaderName:        "Authorization",
		HeaderType:        "Bearer",
		CookieName:        "access_token_cookie",
		RefreshCookieName: "refresh_token_cookie",
		QueryStringName:   "jwt",
		JSONKey:           "access_token",
		RefreshJSONKey:    "refresh_token",
		MaxBytes:          8192,
		MaxBodyBytes:      64 << 10,
	}
}

// Has reports whether l is one of the configured locations.
func (c *Config) Has(l Location) bool {
	for _, x := range c.Locations {
		if x == l {
			return true
		}
	}
	return false
}

// Validate checks c and prepares it for a Scanner; bad reports each problem against its
// field name under prefix (e.g. "token.").
func (c *Config) Validate(prefix string, bad func(field, format string, args ...any)) {
	if len(c.Locations) == 0 {
		bad(prefix+"locations", "must name at least one of headers, cookies, query_string, json")
	}
	seen := map[Location]bool{}
	for _, l := range c.Locations {
		switch l {
		case LocationHeaders, LocationCookies, LocationQueryString, LocationJSON:
		default:
			bad(prefix+"locations", "unknown location %q (want headers, cookies, query_string or json)", l)
		}
		if seen[l] {
			bad(prefix+"locations", "%q listed twice", l)
		}
		seen[l] = true
	}
	c.headerKey = strings.ToLower(c.HeaderName)
	if !ValidHeaderName(c.HeaderName) {
		// Checked even without the headers location: the header is always scanned for
		// revoked tokens.
		bad(prefix+"header_name", "must be a valid HTTP header name, got %q", c.HeaderName)
	}
	if strings.ContainsFunc(c.HeaderType, func(r rune) bool { return r <= ' ' || r >= 0x7f || r == ',' }) {
		bad(prefix+"header_type", "must be one word of visible ASCII without commas (or empty for a bare token), got %q", c.HeaderType)
	}
	for _, n := range []struct{ field, value string }{
		{"cookie_name", c.CookieName}, {"refresh_cookie_name", c.RefreshCookieName},
	} {
		if seen[LocationCookies] && !validCookieName(n.value) {
			bad(prefix+n.field, "cookies is a location, so a cookie name is needed (visible ASCII, no '=', ';', ',', quotes or spaces), got %q", n.value)
		}
	}
	if seen[LocationQueryString] && !validParamName(c.QueryStringName) {
		bad(prefix+"query_string_name", "query_string is a location, so a parameter name is needed (visible ASCII, no '&', ';', '=', '#', '%', '+'), got %q", c.QueryStringName)
	}
	if !isVisibleASCII(c.QueryStringValuePrefix) {
		bad(prefix+"query_string_value_prefix", "must be visible ASCII or spaces, got %q", c.QueryStringValuePrefix)
	}
	for _, n := range []struct{ field, value string }{
		{"json_key", c.JSONKey}, {"refresh_json_key", c.RefreshJSONKey},
	} {
		if seen[LocationJSON] && (n.value == "" || !isVisibleASCII(n.value)) {
			bad(prefix+n.field, "json is a location, so a key is needed (visible ASCII), got %q", n.value)
		}
	}
	if c.MaxBytes < 16 || c.MaxBytes > maxTokenBytesLimit {
		bad(prefix+"max_bytes", "must be 16 to %d, got %d", maxTokenBytesLimit, c.MaxBytes)
	}
	if c.MaxBodyBytes < 1024 || c.MaxBodyBytes > maxBodyBytesLimit {
		bad(prefix+"max_body_bytes", "must be 1024 to %d, got %d", maxBodyBytesLimit, c.MaxBodyBytes)
	}
}

// ValidHeaderName reports whether s is an HTTP header name (RFC 9110 token) Envoy can
// present; pseudo-headers are refused.
func ValidHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

func isTokenChar(c byte) bool {
	switch {
	case c >= '0' && c <= '9', c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func validCookieName(s string) bool {
	return s != "" && isVisibleASCII(s) && !strings.ContainsAny(s, "=;, \"\\")
}

func validParamName(s string) bool {
	return s != "" && isVisibleASCII(s) && !strings.ContainsAny(s, "&;=#%+ ")
}

func isVisibleASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// String renders a location list as flask-jwt-extended does in its "Missing JWT in ..."
// message: "headers, cookies or query_string".
func locationList(ls []Location) string {
	var b strings.Builder
	for i, l := range ls {
		switch {
		case i == 0:
		case i == len(ls)-1:
			b.WriteString(" or ")
		default:
			b.WriteString(", ")
		}
		b.WriteString(string(l))
	}
	return b.String()
}
