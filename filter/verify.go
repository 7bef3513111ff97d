package filter

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jtiguard/jtiguard/blocklistsync"
)

// tokenInfo is what the filter keeps of a validated token. Revocation is not decided from
// it: every payload of the request is checked against the list, verified or not.
type tokenInfo struct {
	refresh bool // flask-jwt-extended's type claim says "refresh"
	// expiresAt is the instant (Unix nanoseconds) from which the token is expired, leeway
	// included; 0 if the token has no exp. A cached token is judged again from then on.
	expiresAt int64
}

// rejectKind sorts validation failures into flask-jwt-extended's responses.
type rejectKind int

const (
	rejectInvalid rejectKind = iota // 422 by default
	rejectExpired                   // 401 by default
)

// rejection is a token that failed validation, with the message a client is shown. The
// message never includes the token or any claim from it.
type rejection struct {
	kind    rejectKind
	message string
}

// claims are the registered claims plus flask-jwt-extended's "type".
type claims struct {
	jwt.RegisteredClaims
	Type *string `json:"type"`
}

// verifier validates tokens with one parser built at configuration time.
type verifier struct {
	cfg       *JWTConfig
	parser    *jwt.Parser
	validator *jwt.Validator
}

func newVerifier(cfg *Config, now func() time.Time) *verifier {
	j := &cfg.JWT
	opts := []jwt.ParserOption{
		jwt.WithLeeway(j.Leeway.D()),
		jwt.WithIssuedAt(),
		jwt.WithTimeFunc(now),
	}
	if len(j.Audiences) > 0 {
		opts = append(opts, jwt.WithAudience(j.Audiences...))
	}
	v := &verifier{
		cfg:       j,
		validator: jwt.NewValidator(opts...),
	}
	if j.TrustUpstream == nil {
		v.parser = jwt.NewParser(append(opts, jwt.WithValidMethods(j.keys.algorithms), jwt.WithStrictDecoding())...)
	}
	return v
}

// verify validates a token from the request (signature mode).
func (v *verifier) verify(token string) (tokenInfo, *rejection) {
	var c claims
	if _, err := v.parser.ParseWithClaims(token, &c, v.cfg.keys.keyFunc); err != nil {
		return tokenInfo{}, classify(token, err)
	}
	return v.check(&c)
}

// verifyPayload validates claims forwarded by jwt_authn (trust-upstream mode): the payload
// is base64url JSON, and only the claims are checked.
func (v *verifier) verifyPayload(payload string) (tokenInfo, *rejection) {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimRight(payload, "="))
	if err != nil {
		return tokenInfo{}, &rejection{rejectInvalid, "Invalid payload padding"}
	}
	var c claims
	if err := json.Unmarshal(raw, &c); err != nil {
		return tokenInfo{}, &rejection{rejectInvalid, "Invalid payload string"}
	}
	if err := v.validator.Validate(c); err != nil {
		return tokenInfo{}, classify(payload, err)
	}
	return v.check(&c)
}

// check applies what golang-jwt does not: issuer allowlist, jti.
func (v *verifier) check(c *claims) (tokenInfo, *rejection) {
	if len(v.cfg.Issuers) > 0 && !slices.Contains(v.cfg.Issuers, c.Issuer) {
		return tokenInfo{}, &rejection{rejectInvalid, "Invalid issuer"}
	}
	if c.ID == "" {
		return tokenInfo{}, &rejection{rejectInvalid, "Missing claim: jti"}
	}
	if len(c.ID) > blocklistsync.MaxJTILen {
		return tokenInfo{}, &rejection{rejectInvalid, "Invalid claim: jti is too long"}
	}
	info := tokenInfo{refresh: c.Type != nil && *c.Type == "refresh"}
	if c.ExpiresAt != nil {
		info.expiresAt = c.ExpiresAt.UnixNano() + int64(v.cfg.Leeway.D())
	}
	return info, nil
}

// classify maps golang-jwt's errors to flask-jwt-extended's responses (PyJWT's wording).
func classify(token string, err error) *rejection {
	switch {
	case errors.Is(err, jwt.ErrTokenExpired):
		return &rejection{rejectExpired, "Token has expired"}
	case errors.Is(err, jwt.ErrTokenMalformed):
		if strings.Count(token, ".") != 2 {
			return &rejection{rejectInvalid, "Not enough segments"}
		}
		return &rejection{rejectInvalid, "Invalid token"}
	case errors.Is(err, jwt.ErrTokenSignatureInvalid) && strings.Contains(err.Error(), "signing method"):
		return &rejection{rejectInvalid, "The specified alg value is not allowed"}
	case errors.Is(err, jwt.ErrTokenSignatureInvalid), errors.Is(err, jwt.ErrTokenUnverifiable):
		return &rejection{rejectInvalid, "Signature verification failed"}
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return &rejection{rejectInvalid, "The token is not yet valid (nbf)"}
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return &rejection{rejectInvalid, "The token is not yet valid (iat)"}
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return &rejection{rejectInvalid, "Audience doesn't match"}
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return &rejection{rejectInvalid, "Missing required claim"}
	default:
		return &rejection{rejectInvalid, "Invalid token"}
	}
}
