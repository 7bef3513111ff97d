package filter

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/jtiguard/jtiguard/blocklistsync"
	"github.com/jtiguard/jtiguard/credentials"
	"github.com/jtiguard/jtiguard/jwkssync"
	"github.com/jtiguard/jtiguard/jwtverify"
	"github.com/jtiguard/jtiguard/statuslist"
)

// ErrInvalidConfig wraps every configuration error; the message names the field.
var ErrInvalidConfig = errors.New("invalid plugin configuration")

// Location is where a token may be found (credentials.Location).
type Location = credentials.Location

// Token locations, named as flask-jwt-extended's JWT_TOKEN_LOCATION.
const (
	LocationHeaders     = credentials.LocationHeaders
	LocationCookies     = credentials.LocationCookies
	LocationQueryString = credentials.LocationQueryString
	LocationJSON        = credentials.LocationJSON
)

// TokenConfig says where the application reads its tokens.
type TokenConfig = credentials.Config

// Policy says what to do with a request: deny it with a local reply, or let it through.
type Policy string

// Policies for missing and invalid tokens.
const (
	PolicyAllow Policy = "allow"
	PolicyDeny  Policy = "deny"
)

// FailMode applies when no usable revocation list is present.
type FailMode string

// Fail modes.
const (
	FailClosed FailMode = "closed"
	FailOpen   FailMode = "open"
)

// Response is a local reply: a status and a JSON body {message_key: message}.
type Response struct {
	Status  uint32 `json:"status"`
	Message string `json:"message"`
}

// Responses are the local replies, defaulting to flask-jwt-extended's. An empty Message on
// Missing, Invalid and Ambiguous means "explain the problem" as flask-jwt-extended does.
type Responses struct {
	MessageKey   string   `json:"message_key"`
	Revoked      Response `json:"revoked"`
	Missing      Response `json:"missing"`
	Expired      Response `json:"expired"`
	Invalid      Response `json:"invalid"`
	Ambiguous    Response `json:"ambiguous"`
	BodyTooLarge Response `json:"body_too_large"`
	Unavailable  Response `json:"unavailable"`
}

// JWTConfig says how to validate the token.
type JWTConfig struct {
	Algorithms  []string        `json:"algorithms"`
	HMACSecrets []HMACSecret    `json:"hmac_secrets"`
	PublicKeys  []PublicKeyPEM  `json:"public_keys"`
	JWKS        json.RawMessage `json:"jwks"`
	Leeway      Duration        `json:"leeway"`
	Issuers     []string        `json:"issuers"`
	Audiences   []string        `json:"audiences"`
	TokenTypes  []string        `json:"token_types"`
	// StrictSub refuses a token whose sub is not a string (RFC 7519). By default an integer
	// sub is accepted, as PyJWT did before 2.10 and flask-jwt-extended's own examples issue
	// (identity=user.id), and its cutoffs are looked up by its decimal form.
	StrictSub     bool           `json:"strict_sub"`
	TrustUpstream *TrustUpstream `json:"trust_upstream"`
	// RemoteJWKS fetches keys from a JWKS endpoint, beside the inline ones (docs/jwks.md).
	RemoteJWKS *jwkssync.Config `json:"remote_jwks"`
	// ClaimsToHeaders sends claims of the verified token upstream as request headers, with
	// the client's headers of those names removed from every request (headers.go).
	ClaimsToHeaders []ClaimHeader `json:"claims_to_headers"`

	keys *jwtverify.KeySet
	// jwks combines the inline keys with the fetched ones (set with RemoteJWKS).
	jwks *jwkssync.Builder
}

// HMACSecret is a shared secret for HS256/384/512, given once of three ways.
type HMACSecret struct {
	KID          string `json:"kid"`
	Secret       string `json:"secret"`
	SecretBase64 string `json:"secret_base64"`
	// SecretEnv names an environment variable of the VM (Envoy vm_config.environment_variables,
	// Istio vmConfig.env), so the secret stays out of config dumps.
	SecretEnv string `json:"secret_env"`
}

// PublicKeyPEM is a PEM public key (PKIX, PKCS#1 RSA, or a certificate).
type PublicKeyPEM struct {
	KID string `json:"kid"`
	PEM string `json:"pem"`
}

// TrustUpstream reads claims that Envoy's jwt_authn already verified instead of verifying a
// signature again: from the dynamic metadata it writes (payload_in_metadata: a client cannot
// forge it), or from the header it forwards (forward_payload_header: safe only where
// jwt_authn runs on every request, since it does not remove a header a client sent when no
// verifier runs). Exactly one of the two is set.
type TrustUpstream struct {
	PayloadInMetadata string `json:"payload_in_metadata"`
	PayloadHeader     string `json:"payload_header"`

	headerKey string // PayloadHeader in lower case, as Envoy presents header names
}

// CacheConfig bounds the per-VM cache of verified tokens.
type CacheConfig struct {
	MaxEntries int `json:"max_entries"`
}

// Config is the parsed, validated plugin configuration.
type Config struct {
	Prefix       string               `json:"prefix"`
	Token        TokenConfig          `json:"token"`
	JWT          JWTConfig            `json:"jwt"`
	MissingToken Policy               `json:"missing_token"`
	InvalidToken Policy               `json:"invalid_token"`
	FailMode     FailMode             `json:"fail_mode"`
	MaxStaleness Duration             `json:"max_staleness"`
	Responses    Responses            `json:"responses"`
	Cache        CacheConfig          `json:"cache"`
	Sync         blocklistsync.Config `json:"sync"`
	// StatusList is the "status_list" section, parsed by statuslist.ParseConfig into status.
	StatusList json.RawMessage `json:"status_list"`
	// Rules change, per route, what the token must be (rules.go); never the revocation check.
	Rules []Rule `json:"rules"`
	// DecisionProperty names the Envoy filter state ("wasm.<name>") that receives every
	// decision; empty: none (headers.go).
	DecisionProperty string `json:"decision_property"`

	status *statuslist.Config
	// topPolicy is what a route no rule matches requires; rules the compiled Rules.
	topPolicy       policy
	rules           []rule
	rulesMatchPaths bool // a rule matches on the path: the path must be in normal form
}

// KeyedByIssuer reports whether revocation keys include the issuer: they do when issuers
// are configured, so equal jtis from two issuers stay distinct.
func (c *Config) KeyedByIssuer() bool { return len(c.JWT.Issuers) > 0 }

// Duration is a Go duration string in JSON ("5s", "250ms").
type Duration = blocklistsync.Duration

// Limits on values that come from configuration.
const (
	maxCacheEntries = 1 << 20
	// maxLeeway bounds jwt.leeway: the revocation source keeps an entry for --expiry-grace
	// (default 1h) past its token's expiry, and a token is accepted until exp + leeway, so
	// the two must match for a revoked token to stay listed while it is still accepted.
	maxLeeway = time.Hour
)

// DefaultConfig is what an empty configuration means: flask-jwt-extended's defaults.
func DefaultConfig() Config {
	return Config{
		Prefix: "jtiguard.",
		Token:  credentials.DefaultConfig(),
		JWT: JWTConfig{
			Algorithms: []string{"HS256"},
			TokenTypes: []string{"access", "refresh"},
		},
		MissingToken: PolicyAllow,
		InvalidToken: PolicyDeny,
		FailMode:     FailClosed,
		MaxStaleness: Duration(60 * time.Second),
		Responses: Responses{
			MessageKey:   "msg",
			Revoked:      Response{Status: 401, Message: "Token has been revoked"},
			Missing:      Response{Status: 401},
			Expired:      Response{Status: 401, Message: "Token has expired"},
			Invalid:      Response{Status: 422},
			Ambiguous:    Response{Status: 422},
			BodyTooLarge: Response{Status: 413, Message: "Request body too large to check for a token"},
			Unavailable:  Response{Status: 503, Message: "Token revocation list unavailable"},
		},
		Cache: CacheConfig{MaxEntries: 1024},
		Sync:  blocklistsync.DefaultConfig(),
	}
}

// ParseConfig parses and validates the plugin configuration. Empty (or white space) means
// DefaultConfig — which still needs a secret, so it fails with a message saying so. getenv
// resolves hmac_secrets[].secret_env and sync.headers_env; pass os.Getenv.
func ParseConfig(data []byte, getenv func(string) string) (*Config, error) {
	cfg := DefaultConfig()
	data = bytes.TrimSpace(data)
	if len(data) > 0 {
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&cfg); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidConfig, err)
		}
		if dec.More() {
			return nil, fmt.Errorf("%w: trailing data after the JSON object", ErrInvalidConfig)
		}
	}
	if getenv == nil {
		getenv = os.Getenv
	}
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}

	if cfg.Prefix == "" || len(cfg.Prefix) > 128 {
		bad("prefix", "must be 1-128 bytes, got %q", cfg.Prefix)
	}
	cfg.Token.Validate("token.", bad)
	switch cfg.MissingToken {
	case PolicyAllow, PolicyDeny:
	default:
		bad("missing_token", "must be \"allow\" or \"deny\", got %q", cfg.MissingToken)
	}
	switch cfg.InvalidToken {
	case PolicyAllow, PolicyDeny:
	default:
		bad("invalid_token", "must be \"allow\" or \"deny\", got %q", cfg.InvalidToken)
	}
	switch cfg.FailMode {
	case FailClosed, FailOpen:
	default:
		bad("fail_mode", "must be \"closed\" or \"open\", got %q", cfg.FailMode)
	}
	if cfg.MaxStaleness.D() < 0 {
		bad("max_staleness", "must not be negative, got %s", cfg.MaxStaleness.D())
	}
	validateResponses(&cfg.Responses, bad)
	if cfg.Cache.MaxEntries < 0 || cfg.Cache.MaxEntries > maxCacheEntries {
		bad("cache.max_entries", "must be 0 (no cache) to %d, got %d", maxCacheEntries, cfg.Cache.MaxEntries)
	}
	validateJWT(&cfg.JWT, getenv, bad)
	validateClaimHeaders(&cfg, bad)
	if rj := cfg.JWT.RemoteJWKS; rj != nil {
		if err := rj.Validate(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := cfg.Sync.Validate(); err != nil {
		errs = append(errs, err)
	} else if err := cfg.Sync.ResolveHeaders(getenv); err != nil {
		errs = append(errs, err)
	}
	if sl, err := statuslist.ParseConfig(cfg.StatusList); err != nil {
		errs = append(errs, err)
	} else {
		cfg.status = sl
	}
	cfg.topPolicy = policy{missing: cfg.MissingToken, invalid: cfg.InvalidToken}
	cfg.topPolicy.kinds, _ = tokenKinds(cfg.JWT.TokenTypes) // errors reported by validateJWT
	cfg.rules = compileRules(cfg.Rules, cfg.topPolicy, bad)
	for _, r := range cfg.rules {
		cfg.rulesMatchPaths = cfg.rulesMatchPaths || r.matchPaths
	}
	if cfg.MaxStaleness.D() > 0 && cfg.MaxStaleness.D() < cfg.Sync.Interval.D() {
		bad("max_staleness", "%s is shorter than sync.interval %s: every list would be stale", cfg.MaxStaleness.D(), cfg.Sync.Interval.D())
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return &cfg, nil
}

func validateResponses(r *Responses, bad func(string, string, ...any)) {
	if r.MessageKey == "" {
		bad("responses.message_key", "must not be empty")
	}
	for _, x := range []struct {
		name string
		resp Response
	}{{"revoked", r.Revoked}, {"missing", r.Missing}, {"expired", r.Expired}, {"invalid", r.Invalid},
		{"ambiguous", r.Ambiguous}, {"body_too_large", r.BodyTooLarge}, {"unavailable", r.Unavailable}} {
		if x.resp.Status < 400 || x.resp.Status > 599 {
			bad("responses."+x.name+".status", "must be a 4xx or 5xx status, got %d", x.resp.Status)
		}
		if len(x.resp.Message) > 1024 {
			bad("responses."+x.name+".message", "longer than 1024 bytes")
		}
	}
}

var knownTokenTypes = []string{"access", "refresh"}

func validateJWT(j *JWTConfig, getenv func(string) string, bad func(string, string, ...any)) {
	if j.Leeway.D() < 0 || j.Leeway.D() > maxLeeway {
		bad("jwt.leeway", "must be 0 to %s (the revocation source's default --expiry-grace), got %s", maxLeeway, j.Leeway.D())
	}
	for _, iss := range j.Issuers {
		if iss == "" || len(iss) > blocklistsync.MaxIssuerLen {
			bad("jwt.issuers", "each issuer must be 1-%d bytes, got %q", blocklistsync.MaxIssuerLen, iss)
		}
	}
	for _, aud := range j.Audiences {
		if aud == "" {
			bad("jwt.audiences", "must not contain an empty audience")
		}
	}
	if _, err := tokenKinds(j.TokenTypes); err != nil {
		bad("jwt.token_types", "%v", err)
	}
	if tu := j.TrustUpstream; tu != nil {
		tu.headerKey = strings.ToLower(tu.PayloadHeader)
		switch {
		case (tu.PayloadHeader == "") == (tu.PayloadInMetadata == ""):
			bad("jwt.trust_upstream", "needs exactly one of payload_in_metadata (jwt_authn's payload_in_metadata; Istio: \"payload\") or payload_header")
		case tu.PayloadHeader != "" && !credentials.ValidHeaderName(tu.PayloadHeader):
			bad("jwt.trust_upstream.payload_header", "must be a valid HTTP header name, got %q", tu.PayloadHeader)
		case tu.PayloadInMetadata != "" && len(j.Audiences) > 0:
			// jwt_authn's metadata holds aud as a string or a list it serializes its own way:
			// the filter cannot read every form, and must not seem to check what it cannot.
			bad("jwt.audiences", "cannot be checked with trust_upstream.payload_in_metadata: set them on jwt_authn's provider (audiences; Istio: RequestAuthentication jwtRules audiences), or use payload_header")
		}
		if len(j.HMACSecrets)+len(j.PublicKeys) > 0 || len(j.JWKS) > 0 || j.RemoteJWKS != nil {
			bad("jwt.trust_upstream", "verifies no signatures, so hmac_secrets, public_keys, jwks and remote_jwks must be empty")
		}
		return
	}
	var keys *jwtverify.KeySet
	var err error
	if j.RemoteJWKS != nil {
		// The allowlist may name algorithms only the remote keys serve: the inline keys are
		// checked on their own, and may be none.
		inline, errs := inlineKeys(j, getenv)
		if j.jwks, err = jwkssync.NewBuilder(inline); err == nil {
			keys = j.jwks.Inline()
		}
		err = errors.Join(append(errs, err)...)
	} else {
		keys, err = buildKeySet(j, getenv)
	}
	if err != nil {
		errs := []error{err}
		if joined, ok := err.(interface{ Unwrap() []error }); ok {
			errs = joined.Unwrap()
		}
		for _, e := range errs {
			bad("jwt", "%v", e)
		}
		return
	}
	j.keys = keys
}
