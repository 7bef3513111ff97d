package filter

import (
	"errors"
	"strings"
	"time"

	"github.com/jtiguard/jtiguard/jwkssync"
	"github.com/jtiguard/jtiguard/jwtverify"
)

// tokenInfo is what the filter keeps of a validated token. Revocation is not decided from
// it: every payload of the request is checked against the list, verified or not.
type tokenInfo struct {
	refresh bool // flask-jwt-extended's type claim says "refresh"
	// expiresAt is the instant (Unix nanoseconds) from which the token is expired, leeway
	// included; 0 if the token has no exp. A cached token is judged again from then on.
	expiresAt int64
	// forward is what jwt.claims_to_headers sends upstream for this token (nil: nothing),
	// read once when its signature verified.
	forward *forwarded
	// unchecked: the signature was not verified (the remote JWKS has not arrived, and
	// fail_mode is open); only the claims were. Such a token is neither cached as verified
	// nor reported as jtiguard_allowed.
	unchecked bool
}

// rejectKind sorts validation failures into flask-jwt-extended's responses.
type rejectKind int

const (
	rejectInvalid     rejectKind = iota // 422 by default
	rejectExpired                       // 401 by default
	rejectUnavailable                   // 503 by default: no remote key set yet, fail_mode closed
)

// rejection is a token that failed validation, with the message a client is shown. The
// message never includes the token or any claim from it.
type rejection struct {
	kind    rejectKind
	message string
}

// verifier validates tokens with jwtverify, into one Claims reused by the VM.
type verifier struct {
	v      *jwtverify.Verifier
	claims jwtverify.Claims
	// remote is jwt.remote_jwks's syncer (nil without it): told of tokens that failed at
	// their signature, which may ask for an early fetch, or follow fail_mode.
	remote *jwkssync.Syncer
	// claimHeaders is jwt.claims_to_headers.
	claimHeaders []ClaimHeader
}

func newVerifier(cfg *Config, now func() time.Time) *verifier {
	j := &cfg.JWT
	ks := j.keys
	if ks == nil {
		// trust_upstream: no signature is verified, only the payload's claims.
		ks = &jwtverify.KeySet{}
	}
	v, err := jwtverify.New(ks, jwtverify.Options{
		Leeway:        j.Leeway.D(),
		Audiences:     j.Audiences,
		Issuers:       j.Issuers,
		StrictSubject: j.StrictSub,
		MaxTokenBytes: cfg.Token.MaxBytes,
		Now:           now,
	})
	if err != nil {
		panic("jtiguard: verifier options were validated: " + err.Error())
	}
	return &verifier{v: v, claimHeaders: j.ClaimsToHeaders}
}

// verify validates a token from the request (signature mode).
func (v *verifier) verify(token string) (tokenInfo, *rejection) {
	err := v.v.Verify(token, &v.claims)
	if err != nil && v.remote != nil {
		switch v.remote.OnVerifyFailure(token, err) {
		case jwkssync.Unavailable:
			return tokenInfo{}, &rejection{kind: rejectUnavailable}
		case jwkssync.Unchecked:
			_, rest, _ := strings.Cut(token, ".")
			payload, _, _ := strings.Cut(rest, ".")
			// Not verified: nothing of it is forwarded.
			info, rej := v.result(v.v.VerifyPayload(payload, &v.claims))
			info.unchecked = true
			return info, rej
		}
	}
	info, rej := v.result(err)
	if rej == nil && len(v.claimHeaders) > 0 {
		info.forward = readForwarded(payloadOf(token), v.claimHeaders)
	}
	return info, rej
}

// setKeys installs a new key set (jwt.remote_jwks): verifications from now on use it.
func (v *verifier) setKeys(ks *jwtverify.KeySet) { v.v.SetKeys(ks) }

// verifyPayload validates claims forwarded by jwt_authn (trust-upstream mode).
func (v *verifier) verifyPayload(payload string) (tokenInfo, *rejection) {
	return v.result(v.v.VerifyPayload(payload, &v.claims))
}

func (v *verifier) result(err error) (tokenInfo, *rejection) {
	c := &v.claims
	switch {
	case errors.Is(err, jwtverify.ErrTokenExpired):
		return tokenInfo{}, &rejection{rejectExpired, jwtverify.FlaskExpiredMessage}
	case err != nil:
		return tokenInfo{}, &rejection{rejectInvalid, err.Error()}
	case !c.HasJTI || len(c.JTI) == 0:
		// Without a jti a token cannot be revoked one by one: the list could never name it.
		return tokenInfo{}, &rejection{rejectInvalid, "Missing claim: jti"}
	}
	info := tokenInfo{refresh: c.IsRefresh()}
	if !c.ValidUntil.IsZero() {
		info.expiresAt = c.ValidUntil.UnixNano()
	}
	return info, nil
}
