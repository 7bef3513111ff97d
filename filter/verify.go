package filter

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/jtiguard/jtiguard/blocklistsync"
)

// tokenInfo is what the filter keeps of a validated token: enough to check revocation
// without decoding it again. Keys are computed with the list's Hasher (a keyed hash) and kept
// with it, so a cached token costs no hashing until a list with another Hasher arrives.
type tokenInfo struct {
	jti, iss, sub string
	hasher        blocklistsync.Hasher // the keys below are this hasher's; zero: not computed
	tokenKey      uint64               // (iss, jti), or ("", jti) when not keyed by issuer
	anyKey        uint64               // ("", jti) when keyed by issuer: entries that match any issuer; else 0
	subKey        uint64               // like tokenKey, for the subject; 0 without sub
	anySubKey     uint64
	iat           uint32
	hasIat        bool
	// expiresAt is the Unix second from which the token is expired, leeway included; 0 if
	// the token has no exp.
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
	byIssuer  bool
	parser    *jwt.Parser
	validator *jwt.Validator
	leeway    int64 // seconds, rounded up
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
		byIssuer:  cfg.KeyedByIssuer(),
		validator: jwt.NewValidator(opts...),
		leeway:    int64(math.Ceil(j.Leeway.D().Seconds())),
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

// check applies what golang-jwt does not: issuer allowlist, jti, token type.
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
	// flask-jwt-extended: a token is a refresh token if its type says so, else an access token.
	typ := "access"
	if c.Type != nil && *c.Type == "refresh" {
		typ = "refresh"
	}
	if !slices.Contains(v.cfg.TokenTypes, typ) {
		if typ == "refresh" {
			return tokenInfo{}, &rejection{rejectInvalid, "Only non-refresh tokens are allowed"}
		}
		return tokenInfo{}, &rejection{rejectInvalid, "Only refresh tokens are allowed"}
	}
	info := tokenInfo{jti: c.ID, iss: c.Issuer, sub: c.Subject}
	if c.IssuedAt != nil {
		info.iat, info.hasIat = clampUnix(c.IssuedAt.Unix()), true
	}
	if c.ExpiresAt != nil {
		info.expiresAt = c.ExpiresAt.Unix() + v.leeway + 1
	}
	return info, nil
}

// setKeys computes the revocation keys with h, the Hasher of the list they are looked up in.
func (info *tokenInfo) setKeys(h blocklistsync.Hasher, byIssuer bool) {
	info.hasher = h
	info.anyKey, info.subKey, info.anySubKey = 0, 0, 0
	if byIssuer {
		info.tokenKey = h.TokenKey(info.iss, info.jti)
		info.anyKey = h.TokenKey("", info.jti)
	} else {
		info.tokenKey = h.TokenKey("", info.jti)
	}
	if info.sub != "" {
		if byIssuer {
			info.subKey = h.SubjectKey(info.iss, info.sub)
			info.anySubKey = h.SubjectKey("", info.sub)
		} else {
			info.subKey = h.SubjectKey("", info.sub)
		}
	}
}

func clampUnix(s int64) uint32 {
	return uint32(min(max(s, 0), math.MaxUint32))
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
