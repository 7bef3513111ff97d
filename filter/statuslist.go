package filter

import (
	"errors"
	"math"
	"time"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jtiguard/jtiguard/credentials"
	"github.com/jtiguard/jtiguard/internal/abi"
	"github.com/jtiguard/jtiguard/statuslist"
)

// checkStatus checks the token status lists (statuslist) of every payload the request carries,
// as the blocklist is: every candidate discovery found, verified or not, and the claims
// jwt_authn passed on. A status can only deny, so checking a payload the application would not
// accept costs nothing but the check. The strongest verdict over all of them decides: a revoked
// status is the revoked reply; a status the policies refuse, the invalid reply with its reason;
// a list not held, the fail_mode (closed: the unavailable reply; open: the request goes on,
// counted as failed open). It allocates nothing for a payload seen before.
func (p *pluginContext) checkStatus(res *credentials.Result, upstream *identity, now time.Time, unchecked *bool) (decision, bool) {
	worst := statuslist.Verdict{}
	var by *identity
	for _, c := range res.Candidates {
		id := p.cache.statusOf(c, p.scanner)
		if !id.status.Any() {
			continue
		}
		if v := p.status.Evaluate(&id.status, now); v.Action > worst.Action {
			worst, by = v, id
		}
	}
	if upstream != nil && upstream.status.Any() {
		if v := p.status.Evaluate(&upstream.status, now); v.Action > worst.Action {
			worst, by = v, upstream
		}
	}
	switch worst.Action {
	case statuslist.Revoke:
		return *p.revokedReply(by), true
	case statuslist.Deny:
		p.metrics.invalid++
		return p.reply(p.cfg.Responses.Invalid, worst.Message, "jtiguard_status"), true
	case statuslist.Unavailable:
		if p.cfg.FailMode == FailClosed {
			p.metrics.failedClosed++
			return p.replies.unavailable, true
		}
		*unchecked = true
	}
	return decision{}, false
}

// statusOf returns the identity of a candidate payload with its status references read, from
// the cache when it is there.
func (c *tokenCache) statusOf(payload string, sc *credentials.Scanner) *identity {
	e := c.get(payload)
	if e == nil {
		e = newEntry(payload, sc.Peek(payload), nil) // identity() reads its claims
		c.put(e)
	}
	if !e.id.statusRead {
		e.id.status.ReadSegment(payload)
		e.id.statusRead = true
	}
	return &e.id
}

// upstreamStatus reads status.status_list from the claims jwt_authn wrote to dynamic metadata
// (payload_in_metadata): jwt_authn may have removed the token itself from the request (Istio's
// default), so discovery cannot see it. Envoy gives a number as 8 bytes of a double.
func (p *pluginContext) upstreamStatus(id *identity, key string) {
	read := func(claim string) ([]byte, bool) {
		v, err := abi.GetProperty([]string{"metadata", "filter_metadata", jwtAuthnFilter, key, "status", "status_list", claim})
		if errors.Is(err, types.ErrorStatusNotFound) {
			return nil, false
		}
		return v, err == nil
	}
	uri, hasURI := read("uri")
	idx, hasIdx := read("idx")
	if !hasURI && !hasIdx {
		return
	}
	f, ok := metadataNumber(idx)
	if !hasURI || !ok || f < 0 || f != math.Trunc(f) || f >= 1<<63 {
		id.status.MarkMalformed()
		return
	}
	id.status.Add(statuslist.Ref{URI: string(uri), Idx: uint64(f)})
}
