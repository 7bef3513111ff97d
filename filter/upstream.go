package filter

import (
	"encoding/binary"
	"errors"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jtiguard/jtiguard/internal/abi"
)

// Trust-upstream mode: Envoy's jwt_authn has verified the token's signature, and the filter
// reads the claims it passed on. From dynamic metadata (payload_in_metadata) a client cannot
// forge them. From a header (forward_payload_header) it can wherever jwt_authn does not run a
// verifier (a rule without requirement, a CORS preflight it bypasses): the header must appear
// once, and discovery still reads every payload the request carries, that header included, so
// a revoked token is denied whichever of them the application trusts.

// jwtAuthnFilter is the filter name under which jwt_authn writes its dynamic metadata.
const jwtAuthnFilter = "envoy.filters.http.jwt_authn"

// upstreamClaims reads the claims jwt_authn wrote to dynamic metadata; nil in the other modes
// or when there are none (no token, or jwt_authn allowed its absence).
func (p *pluginContext) upstreamClaims([][2]string) *identity {
	tu := p.cfg.JWT.TrustUpstream
	if tu == nil || tu.PayloadInMetadata == "" {
		return nil
	}
	read := func(claim string) []byte {
		v, err := abi.GetProperty([]string{"metadata", "filter_metadata", jwtAuthnFilter, tu.PayloadInMetadata, claim})
		if err != nil {
			if !errors.Is(err, types.ErrorStatusNotFound) {
				abi.Log(abi.LogLevelWarn, "jtiguard: read jwt_authn metadata "+claim+": "+err.Error())
			}
			return nil
		}
		return v
	}
	jti, sub, iss, iat := read("jti"), read("sub"), read("iss"), read("iat")
	if jti == nil && sub == nil && iss == nil {
		// No payload (jwt_authn verifies a token only with an issuer it knows, so one it
		// passed on has an iss).
		return nil
	}
	id := &identity{}
	if p.status != nil {
		p.upstreamStatus(id, tu.PayloadInMetadata)
	}
	// Envoy hands a string's bytes as they are and a number as 8 bytes of a double: an
	// 8-byte value could be either, so both readings are checked.
	add := func(dst *strs, v []byte, numeric bool) {
		if v == nil {
			return
		}
		if !numeric {
			dst.v = append(dst.v, string(v))
		}
		if f, ok := metadataNumber(v); ok && f == math.Trunc(f) && math.Abs(f) < 1<<53 {
			dst.v = append(dst.v, strconv.FormatInt(int64(f), 10))
		}
		dst.n = len(dst.v)
	}
	add(&id.jtis, jti, false)
	add(&id.subs, sub, false)
	add(&id.iss, iss, false)
	id.read = read
	switch f, ok := metadataNumber(iat); {
	case iat == nil:
	case ok:
		id.iats = []int64{int64(f)}
	default:
		id.iatUnreadable = true
	}
	return id
}

// upstreamClaimValues reads the claims names (the list's claim entries' names) from the
// payload jwt_authn passed on (the identity lives for one request): a string as it is, and
// an 8-byte value also as a number's decimal text, as for jti.
func (p *pluginContext) upstreamClaimValues(id *identity, names []string) {
	if id.read == nil || len(names) == 0 {
		return
	}
	id.claims, id.claimNames, id.hashed = id.claims[:0], names, false
	for k, name := range names {
		v := id.read(name)
		if v == nil {
			continue
		}
		id.claims = append(id.claims, claimValue{uint8(k), string(v)})
		if f, ok := metadataNumber(v); ok {
			// The token's text is gone (jwt_authn keeps a double): the forms an entry's
			// value would take, the integer's text and Python's str() of the float.
			if f == math.Trunc(f) && math.Abs(f) < 1<<53 {
				id.claims = append(id.claims, claimValue{uint8(k), strconv.FormatInt(int64(f), 10)})
			}
			id.claims = append(id.claims, claimValue{uint8(k), pythonFloat(f)})
		}
	}
}

// pythonFloat is Python's str() of a float: the shortest text that reads back the same,
// fixed-point for exponents -4 to 15 (with ".0" when whole), else scientific with a
// two-digit exponent at least (1e-05, 1.5e+16).
func pythonFloat(f float64) string {
	e := strconv.FormatFloat(f, 'e', -1, 64)
	exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
	if exp < -4 || exp >= 16 {
		return e // Go writes the exponent with two digits at least, as Python does
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}

// metadataNumber reads a number as Envoy serializes a double property: 8 bytes, host order
// (little-endian on every platform Envoy runs on).
func metadataNumber(v []byte) (float64, bool) {
	if len(v) != 8 {
		return 0, false
	}
	f := math.Float64frombits(binary.LittleEndian.Uint64(v))
	return f, !math.IsNaN(f) && !math.IsInf(f, 0)
}

// validateUpstream validates the claims jwt_authn passed on: times with this filter's leeway,
// jti, and the token type.
func (p *pluginContext) validateUpstream(headers [][2]string, upstream *identity, now time.Time, pol *policy) validation {
	tu := p.cfg.JWT.TrustUpstream
	var info tokenInfo
	var rej *rejection
	if tu.PayloadHeader != "" {
		var value string
		n := 0
		for hi := range headers {
			h := &headers[hi] // a pointer, not a copy (see decide)
			if h[0] == tu.headerKey {
				value = h[1]
				n++
			}
		}
		switch {
		case n == 0:
			return validation{missing: "Missing " + tu.PayloadHeader + " Header"}
		case n > 1:
			// jwt_authn replaces a client's header only when a verifier runs: two mean one
			// of them came from the client.
			return validation{failed: true, fail: p.reply(p.cfg.Responses.Ambiguous,
				"Ambiguous request: more than one "+tu.PayloadHeader+" header", "jtiguard_ambiguous")}
		}
		info, rej = p.verifier.verifyPayload(value)
	} else {
		if upstream == nil {
			return validation{missing: "Missing JWT payload in " + jwtAuthnFilter + " metadata"}
		}
		info, rej = p.metadataInfo(upstream, now)
	}
	if rej != nil {
		return validation{failed: true, fail: p.rejectionReply(rej)}
	}
	if !pol.kinds[kindOf(map[bool]string{true: "refresh", false: "access"}[info.refresh])] {
		msg := "Only refresh tokens are allowed"
		if info.refresh {
			msg = "Only non-refresh tokens are allowed"
		}
		return validation{failed: true, fail: p.invalidReply(msg)}
	}
	return validation{ok: true}
}

// metadataInfo checks the metadata claims' times and jti.
func (p *pluginContext) metadataInfo(id *identity, now time.Time) (tokenInfo, *rejection) {
	tu := p.cfg.JWT.TrustUpstream
	read := func(claim string) []byte {
		v, _ := abi.GetProperty([]string{"metadata", "filter_metadata", jwtAuthnFilter, tu.PayloadInMetadata, claim})
		return v
	}
	leeway := p.cfg.JWT.Leeway.D()
	var info tokenInfo
	if f, ok := metadataNumber(read("exp")); ok {
		exp := time.Unix(0, int64(f*1e9)).Add(leeway)
		if !now.Before(exp) {
			return tokenInfo{}, &rejection{rejectExpired, "Token has expired"}
		}
		info.expiresAt = exp.UnixNano()
	}
	if f, ok := metadataNumber(read("nbf")); ok && now.Add(leeway).Before(time.Unix(0, int64(f*1e9))) {
		return tokenInfo{}, &rejection{rejectInvalid, "The token is not yet valid (nbf)"}
	}
	if id.jtis.n == 0 || id.jtis.v[0] == "" {
		return tokenInfo{}, &rejection{rejectInvalid, "Missing claim: jti"}
	}
	if len(p.cfg.JWT.Issuers) > 0 {
		// As jwtverify checks a payload header's: jwt_authn may run providers of other issuers
		// (Istio's RequestAuthentication takes several jwtRules), and this filter's list of
		// them is what it promises to hold tokens to.
		switch iss := read("iss"); {
		case iss == nil:
			return tokenInfo{}, &rejection{rejectInvalid, `Token is missing the "iss" claim`}
		case !slices.Contains(p.cfg.JWT.Issuers, string(iss)):
			return tokenInfo{}, &rejection{rejectInvalid, "Invalid issuer"}
		}
	}
	info.refresh = string(read("type")) == "refresh"
	return info, nil
}
