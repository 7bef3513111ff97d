package filter

import (
	"errors"
	"math"
	"time"

	"github.com/jtiguard/jtiguard/blocklistsync"
	"github.com/jtiguard/jtiguard/credentials"
	"github.com/jtiguard/jtiguard/internal/abi"
)

// decision is the filter's answer for one request.
type decision struct {
	allow   bool
	status  uint32
	details string // Envoy's %RESPONSE_CODE_DETAILS%
	body    []byte
	// forward is what jwt.claims_to_headers sends upstream (nil: nothing but the removal of
	// the client's headers of those names).
	forward *forwarded
}

// Decisions that let a request through; details name them for decision_property.
var (
	allow          = decision{allow: true, details: "jtiguard_allowed_missing"} // no token, missing_token allow
	allowInvalid   = decision{allow: true, details: "jtiguard_allowed_invalid"} // invalid_token allow
	allowValid     = decision{allow: true, details: "jtiguard_allowed"}
	allowUnchecked = decision{allow: true, details: "jtiguard_allowed_unchecked"} // fail_mode open, list unusable
	allowSkipped   = decision{allow: true, details: "jtiguard_allowed_skipped"}   // a rule's skip
)

// decide is the request path, in the order that keeps the promise:
//
//  1. Revocation, first and over everything: every payload discovery finds anywhere in the
//     request (headers, cookies, the request target, a JSON body) is checked against the list,
//     whether or not its signature verifies and whichever token the application would pick,
//     and whatever route the request is for. A revoked one is denied even where the rest of
//     the request is malformed or ambiguous.
//  2. Ambiguity: a request the application could read differently from this filter is refused.
//  3. Validation of the token the application would read (one per kind of route it may be),
//     as the route's rule asks (rules.go), or the top level where none matches.
//
// final is false for the headers of a request held for its body: only step 1 runs then.
// Nothing here allocates on a request without a token, or with a token seen before.
//
// The decision is returned by pointer, to a decision made once or to p.out (valid until the
// next request): in wasm, Go moves a struct of more than 16 bytes with memory.copy, which
// the engines run as a call (see docs/benchmarks.md, "The floor under a request").
func (p *pluginContext) decide(headers [][2]string, body []byte, final bool) *decision {
	p.reqNow = time.Time{}
	d := p.decideRequest(headers, body, final)
	p.reqNow = time.Time{}
	return d
}

// decideRequest is decide, with the request's one clock reading kept in p.reqNow.
func (p *pluginContext) decideRequest(headers [][2]string, body []byte, final bool) *decision {
	injectFault(headers)
	cfg, m := p.cfg, p.metrics
	p.cache.forgetLast()
	res := p.scanner.Scan(headers, body)
	probe(ptScan)
	// Without jwt.trust_upstream and rules (what a configuration says once), neither is called:
	// a call costs more than its test in the module.
	var upstream *identity
	if cfg.JWT.TrustUpstream != nil {
		upstream = p.upstreamClaims(headers)
	}
	pol, pathAmbiguous := &cfg.topPolicy, ""
	if len(cfg.rules) > 0 {
		pol, pathAmbiguous = p.routePolicy(headers)
	}
	if len(res.Candidates) == 0 && upstream == nil && res.Ambiguous == "" && pathAmbiguous == "" && !p.anySelected(res) &&
		(!final || pol.missing == PolicyAllow || pol.skip) {
		// No token anywhere: the common anonymous request, decided without a clock or the list
		// (or, for headers held for their body, nothing to do yet).
		switch {
		case final && pol.skip:
			m.skipped++
			return &allowSkipped
		case final:
			m.missing++
		}
		return &allow
	}
	probe(ptRoute)
	now := p.now()
	p.reqNow = now

	unchecked := false // the list was unusable and fail_mode is open
	claimsOverflow := false
	if len(res.Candidates) > 0 || upstream != nil {
		m.checked++
		snap, ok := p.usableList(now)
		probe(ptList)
		if ok {
			notBefore := clampUnix(now.Unix() - p.leewaySeconds())
			for _, c := range res.Candidates {
				e := p.cache.identity(c, snap, p.scanner, cfg.KeyedByIssuer(), res.KnownOf(c))
				if e.revoked(snap, notBefore) {
					return p.revokedReply(e)
				}
				claimsOverflow = claimsOverflow || e.overflow
			}
			if upstream != nil {
				p.upstreamClaimValues(upstream, snap.Claims())
				upstream.computeKeys(hasherOf(snap), cfg.KeyedByIssuer())
				if upstream.revoked(snap, notBefore) {
					return p.revokedReply(upstream)
				}
			}
		}
		probe(ptRevoked)
		// The token status lists, after the blocklist and before its fail_mode: a token a
		// status list revokes is answered 401 even while the blocklist is unavailable.
		if p.status != nil {
			if d, stop := p.checkStatus(res, upstream, now, &unchecked); stop {
				return p.made(d)
			}
		}
		if !ok {
			if cfg.FailMode == FailClosed {
				m.failedClosed++
				return &p.replies.unavailable
			}
			unchecked = true
		}
	}
	if !final {
		return &allow
	}

	if res.Ambiguous != "" || claimsOverflow || pathAmbiguous != "" {
		m.ambiguous++
		msg := res.Ambiguous
		switch {
		case msg != "":
		case claimsOverflow:
			msg = "Ambiguous request: a token repeats a claim more than 4 times"
		default:
			msg = pathAmbiguous
		}
		return p.made(p.reply(cfg.Responses.Ambiguous, msg, "jtiguard_ambiguous"))
	}
	if pol.skip {
		// The route requires nothing of the token; every token in the request was checked
		// against the list above; the client's claims_to_headers headers are still removed.
		m.skipped++
		return &allowSkipped
	}

	v := &p.val
	if cfg.JWT.TrustUpstream != nil {
		*v = p.validateUpstream(headers, upstream, now, pol)
	} else {
		p.validateSelected(res, now, pol, v)
	}
	switch {
	case v.ok:
		m.allowed++
		switch {
		case unchecked || v.unchecked:
			m.failedOpen++
			p.out = allowUnchecked
		case v.forward == nil:
			return &allowValid
		default:
			p.out = allowValid
		}
		p.out.forward = v.forward
		return &p.out
	case v.failed:
		m.invalid++
		if pol.invalid == PolicyAllow {
			return &allowInvalid
		}
		return &v.fail
	default:
		m.missing++
		if pol.missing == PolicyAllow {
			return &allow
		}
		msg := v.missing
		if msg == "" {
			msg = p.scanner.Missing(&res.Selected[v.missingKind], v.missingKind)
		}
		return p.made(p.reply(cfg.Responses.Missing, msg, "jtiguard_missing"))
	}
}

// made keeps a decision made for this request in p.out and returns it.
func (p *pluginContext) made(d decision) *decision {
	p.out = d
	return &p.out
}

// validation is the outcome of validating the token(s) the application would read.
type validation struct {
	ok     bool     // a token the application would accept for some route kind
	failed bool     // else: the first failure, as fail
	fail   decision //
	// Else no token: missing explains it, or when empty, the scanner's selection for
	// missingKind does (written only when a reply needs it).
	missing     string
	missingKind credentials.Kind
	forward     *forwarded // when ok: the token's jwt.claims_to_headers values
	unchecked   bool       // when ok: its signature was not checked (tokenInfo.unchecked)
}

// failWith records the first failure.
func (v *validation) failWith(d decision) {
	if !v.failed {
		v.failed, v.fail = true, d
	}
}

// validateSelected validates the token flask-jwt-extended would read for each route kind
// that the route's token_types allows, into v. The request passes when one of them is valid
// for its kind: unless a rule says, the proxy does not know which kind of route it is.
func (p *pluginContext) validateSelected(res *credentials.Result, now time.Time, pol *policy, v *validation) {
	v.ok, v.failed, v.missing, v.forward, v.unchecked = false, false, "", nil, false
	first := -1
	for k := range res.Selected {
		kind := credentials.Kind(k)
		if !pol.kinds[kind] {
			continue
		}
		if first < 0 {
			first = k
		}
		sel := &res.Selected[k]
		switch {
		case sel.Bad != "":
			v.failWith(p.invalidReply(sel.Bad))
		case sel.Token == "":
			continue
		default:
			info, rej := p.verified(sel, now)
			switch {
			case rej != nil:
				v.failWith(p.rejectionReply(rej))
			case kind == credentials.Access && info.refresh:
				v.failWith(p.invalidReply("Only non-refresh tokens are allowed"))
			case kind == credentials.Refresh && !info.refresh:
				v.failWith(p.invalidReply("Only refresh tokens are allowed"))
			case info.refresh:
				// A refresh token is let through for a refresh route, but its claims are
				// not forwarded: an application trusting the headers would take a
				// long-lived refresh token for an identity.
				v.ok, v.failed, v.unchecked = true, false, info.unchecked
				return
			default:
				v.ok, v.failed, v.forward, v.unchecked = true, false, info.forward, info.unchecked
				return
			}
		}
	}
	v.missingKind = credentials.Kind(max(first, 0))
}

// verified validates the selected token, through the cache of tokens verified before.
func (p *pluginContext) verified(sel *credentials.Selection, now time.Time) (tokenInfo, *rejection) {
	token, payload := sel.Token, sel.Payload // payload "" when discovery did not work it out
	if len(token) > p.cfg.Token.MaxBytes {
		return tokenInfo{}, &rejection{rejectInvalid, "Token is too large"}
	}
	if payload == "" {
		payload = payloadOf(token)
	}
	nowNano := now.UnixNano()
	if info, ok := p.cache.verified(token, payload, nowNano, sel.Known); ok {
		p.metrics.cacheHits++
		return info, nil
	}
	probe(ptPreVerify)
	info, rej := p.verifier.verify(token)
	probe(ptVerify)
	if rej == nil && !info.unchecked {
		p.cache.putVerified(token, info, nowNano, p.scanner, p.cfg.KeyedByIssuer(), sel.Known)
	}
	probe(ptPutVerified)
	return info, rej
}

// anySelected reports whether selection found a token or a malformed credential for a kind.
func (p *pluginContext) anySelected(res *credentials.Result) bool {
	for k := range res.Selected {
		if sel := &res.Selected[k]; sel.Token != "" || sel.Bad != "" {
			return true
		}
	}
	return false
}

// usableList is the list as this VM holds it, if it can be trusted now: present, fresh
// enough, and keyed the way this configuration keys its lookups.
func (p *pluginContext) usableList(now time.Time) (*blocklistsync.Snapshot, bool) {
	snap, freshAt, err := p.reader.Refresh()
	if err != nil && !errors.Is(err, blocklistsync.ErrNoList) {
		p.logReadError(err)
	}
	if snap == nil || snap.KeyedByIssuer != p.cfg.KeyedByIssuer() {
		return nil, false
	}
	if ms := p.cfg.MaxStaleness.D(); ms > 0 && now.Sub(freshAt) > ms {
		return nil, false
	}
	return snap, true
}

// leewaySeconds is the clock leeway rounded up: an entry counts for as long as its token
// could still be accepted.
func (p *pluginContext) leewaySeconds() int64 {
	return int64(math.Ceil(p.cfg.JWT.Leeway.D().Seconds()))
}

func (p *pluginContext) revokedReply(id *identity) *decision {
	p.metrics.revoked++
	if abi.LogEnabled(abi.LogLevelDebug) && id.jtis.n > 0 {
		abi.Log(abi.LogLevelDebug, "jtiguard: revoked token jti="+quote(id.jtis.v[0]))
	}
	return &p.replies.revoked
}

func (p *pluginContext) rejectionReply(rej *rejection) decision {
	if rej.kind == rejectExpired {
		return p.replies.expired
	}
	if rej.kind == rejectUnavailable {
		return p.replies.unavailable
	}
	return p.invalidReply(rej.message)
}

func (p *pluginContext) invalidReply(message string) decision {
	return p.reply(p.cfg.Responses.Invalid, message, "jtiguard_invalid")
}

// reply is a local JSON reply; a configured message replaces the explanation.
func (p *pluginContext) reply(r Response, message, details string) decision {
	if r.Message != "" {
		message = r.Message
	}
	return decision{status: r.Status, details: details, body: jsonMessage(p.cfg.Responses.MessageKey, message)}
}

// replies are the decisions whose body does not depend on the request, made once.
type replies struct {
	revoked, expired, unavailable, bodyTooLarge, internal decision
}

func newReplies(r *Responses) replies {
	d := func(resp Response, details string) decision {
		return decision{status: resp.Status, details: details, body: jsonMessage(r.MessageKey, resp.Message)}
	}
	return replies{
		revoked:      d(r.Revoked, "jtiguard_revoked"),
		expired:      d(r.Expired, "jtiguard_expired"),
		unavailable:  d(r.Unavailable, "jtiguard_unavailable"),
		bodyTooLarge: d(r.BodyTooLarge, "jtiguard_body_too_large"),
		// A request the filter cannot read is not let through: it could hold a revoked token.
		internal: decision{status: 500, details: "jtiguard_internal_error",
			body: jsonMessage(r.MessageKey, "Internal error in the token revocation filter")},
	}
}

func clampUnix(s int64) uint32 {
	return uint32(min(max(s, 0), math.MaxUint32))
}
