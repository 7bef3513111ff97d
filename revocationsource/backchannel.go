package revocationsource

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/jtiguard/jtiguard/jwtverify"
)

// OpenID Connect Back-Channel Logout 1.0: the identity provider (the OP)
// POSTs a signed logout token to each relying party when a user logs out
// there. This server is the relying party's endpoint for the whole mesh: a
// logout token naming a session (sid) becomes a claim entry that revokes
// every token carrying that sid, and one naming only a subject (sub) becomes
// a cutoff at the token's iat, which revokes every token of the subject
// issued before it. Both last the configured longest session lifetime.

// BackchannelPath receives logout tokens.
const BackchannelPath = "/v1/backchannel-logout"

// BackchannelEvent is the member of a logout token's events claim that says
// it is one (§2.4).
const BackchannelEvent = "http://schemas.openid.net/event/backchannel-logout"

// Defaults of the back-channel endpoint.
const (
	DefaultBackchannelMaxAge = 5 * time.Minute
	DefaultBackchannelLeeway = 30 * time.Second
	DefaultBackchannelReplay = 100_000
	// maxBackchannelBody bounds a request: a logout token is well under 4 KiB.
	maxBackchannelBody = 64 << 10
)

// ErrLogoutToken wraps every reason a logout token is refused; its message
// goes back to the OP as error_description (never the token itself).
var ErrLogoutToken = errors.New("invalid logout token")

// KeySource gives the keys logout tokens are verified with. Refresh asks for
// a new read (a key the set does not have: the OP may have rotated); it may
// decline when the last one was too recent.
type KeySource interface {
	KeySet(ctx context.Context) (*jwtverify.KeySet, error)
	Refresh(ctx context.Context) (*jwtverify.KeySet, bool, error)
}

// BackchannelConfig configures the endpoint. Issuer, Audiences, Keys and
// SessionLifetime are required.
type BackchannelConfig struct {
	// Issuer is the OP's issuer identifier: iss must be exactly it.
	Issuer string
	// Audiences are this relying party's client_ids: aud must hold one.
	Audiences []string
	Keys      KeySource
	// SessionLifetime is the longest a session (and so a token carrying
	// its sid, or a subject's token) can live: entries written for a
	// logout are kept this long, then forgotten.
	SessionLifetime time.Duration
	// MaxAge refuses logout tokens issued longer ago (iat), and so bounds
	// how long their jti is remembered against replay (0: 5 minutes).
	MaxAge time.Duration
	// Leeway allows for clock skew on iat and exp (0: 30 s; < 0: none).
	Leeway time.Duration
	// RequireType accepts only tokens whose typ header is logout+jwt (the
	// explicit typing of §2.4 and RFC 8725); by default a token without
	// typ, or with typ JWT, is accepted too, as from OPs that predate it.
	RequireType bool
	// AnyIssuer writes the entries without an issuer, so that they match
	// tokens from any issuer (the app's own tokens carrying the OP's sid).
	// By default they are scoped to Issuer.
	AnyIssuer bool
	// MaxReplay bounds the logout token jtis remembered (0: 100,000).
	MaxReplay int
}

// Backchannel validates logout tokens and writes what they ask for through
// the Server's store and index. Build it with NewBackchannel.
type Backchannel struct {
	cfg  BackchannelConfig
	opts jwtverify.Options
	now  func() time.Time

	mu   sync.Mutex                // guards seen and byAt
	seen map[replayKey]replayEntry // logout token jtis, until they could no longer be accepted
	byAt []replayKey               // seen's keys in insertion order, to expire them

	// cutoffMu serializes the read-merge-write of a subject's cutoff.
	cutoffMu sync.Mutex
}

type replayKey struct{ iss, jti string }

type replayEntry struct {
	until   int64 // Unix seconds after which the token is refused anyway
	pending bool  // its logout is being written: a retry waits for the outcome
}

// NewBackchannel checks the configuration. Its errors name the field.
func NewBackchannel(cfg BackchannelConfig, now func() time.Time) (*Backchannel, error) {
	var errs []error
	if cfg.Issuer == "" {
		errs = append(errs, errors.New("backchannel: Issuer is required (the OP's issuer identifier)"))
	}
	if len(cfg.Audiences) == 0 {
		errs = append(errs, errors.New("backchannel: Audiences is required (this relying party's client_id)"))
	}
	for i, a := range cfg.Audiences {
		if a == "" {
			errs = append(errs, fmt.Errorf("backchannel: Audiences[%d] is empty", i))
		}
	}
	if cfg.Keys == nil {
		errs = append(errs, errors.New("backchannel: Keys is required (a JWKS file or URL)"))
	}
	if cfg.SessionLifetime <= 0 {
		errs = append(errs, errors.New("backchannel: SessionLifetime is required: the longest a session can live"))
	}
	if cfg.MaxAge < 0 || cfg.MaxReplay < 0 {
		errs = append(errs, errors.New("backchannel: MaxAge and MaxReplay must not be negative"))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if cfg.MaxAge == 0 {
		cfg.MaxAge = DefaultBackchannelMaxAge
	}
	switch {
	case cfg.Leeway == 0:
		cfg.Leeway = DefaultBackchannelLeeway
	case cfg.Leeway < 0:
		cfg.Leeway = 0
	}
	if cfg.MaxReplay == 0 {
		cfg.MaxReplay = DefaultBackchannelReplay
	}
	if now == nil {
		now = time.Now
	}
	b := &Backchannel{cfg: cfg, now: now, seen: make(map[replayKey]replayEntry)}
	b.opts = jwtverify.Options{
		Leeway: cfg.Leeway, Audiences: cfg.Audiences, Issuers: []string{cfg.Issuer},
		StrictSubject: true, // a logout token's sub is a string (§2.4)
		MaxTokenBytes: maxBackchannelBody, Now: now,
	}
	return b, nil
}

// Logout is what a valid logout token asks for.
type Logout struct {
	Iss, Sub, SID, JTI string
	Iat                int64
	// Until is when the token could no longer be accepted: its jti is
	// remembered against replay until then.
	Until int64
}

// Validate checks a logout token as §2.6 says, in this order: a JWS (an
// encrypted token is refused: no keys to decrypt it are configured), its
// typ, its signature with the configured keys (alg none and algorithms
// without a key are refused), iss, aud, iat (present, not in the future,
// at most MaxAge old), exp when present, jti present, sub or sid present,
// the events claim holding the back-channel logout event, no nonce. Replay
// is the caller's check. Every failure wraps ErrLogoutToken.
func (b *Backchannel) Validate(ctx context.Context, token string) (Logout, error) {
	bad := func(format string, a ...any) (Logout, error) {
		return Logout{}, fmt.Errorf("%w: %s", ErrLogoutToken, fmt.Sprintf(format, a...))
	}
	switch n := strings.Count(token, "."); {
	case n == 4:
		return bad("an encrypted (JWE) logout token cannot be read: no decryption keys are configured")
	case n != 2:
		return bad("not a compact JWS")
	}
	hdr, err := decodeSegment(token[:strings.IndexByte(token, '.')])
	if err != nil {
		return bad("header: %v", err)
	}
	var h struct {
		Typ *string `json:"typ"`
	}
	if err := json.Unmarshal(hdr, &h); err != nil {
		return bad("header: not a JSON object")
	}
	if err := b.checkType(h.Typ); err != nil {
		return bad("%v", err)
	}

	ks, err := b.cfg.Keys.KeySet(ctx)
	if err != nil {
		return Logout{}, fmt.Errorf("the OP's keys cannot be read: %w", err)
	}
	v, err := jwtverify.New(ks, b.opts)
	if err != nil {
		return Logout{}, err
	}
	var c jwtverify.Claims
	err = v.Verify(token, &c)
	if errors.Is(err, jwtverify.ErrTokenUnverifiable) {
		// No key fits: the OP may have rotated its keys.
		if ks2, refreshed, rerr := b.cfg.Keys.Refresh(ctx); rerr == nil && refreshed {
			v.SetKeys(ks2)
			err = v.Verify(token, &c)
		}
	}
	if err != nil {
		return bad("%v", err)
	}

	// The claims jwtverify does not read, from the payload it verified. A
	// member given twice is refused: which one the OP meant cannot be told.
	body, err := decodeSegment(token[strings.IndexByte(token, '.')+1 : strings.LastIndexByte(token, '.')])
	if err != nil {
		return bad("payload: %v", err)
	}
	members, err := topLevelMembers(body)
	if err != nil {
		return bad("payload: %v", err)
	}
	now := b.now()
	switch {
	case !c.HasIat:
		return bad("iat is required")
	case time.Unix(c.Iat, 0).Add(b.cfg.MaxAge + b.cfg.Leeway).Before(now):
		return bad("issued too long ago (iat older than %s)", b.cfg.MaxAge)
	case !c.HasJTI || len(c.JTI) == 0:
		return bad("jti is required")
	}
	if _, ok := members["nonce"]; ok {
		return bad("a nonce claim is not allowed in a logout token")
	}
	if err := checkEvents(members["events"]); err != nil {
		return bad("%v", err)
	}
	l := Logout{Iss: string(c.Iss), JTI: string(c.JTI), Iat: c.Iat}
	if raw, ok := members["sid"]; ok {
		if json.Unmarshal(raw, &l.SID) != nil || l.SID == "" || len(l.SID) > MaxIDBytes || !validID(l.SID) {
			return bad("sid must be a string of 1-%d bytes", MaxIDBytes)
		}
	}
	if c.HasSub {
		if l.Sub = string(c.Sub); !validID(l.Sub) {
			return bad("sub must be a string of 1-%d bytes", MaxIDBytes)
		}
	}
	if l.SID == "" && l.Sub == "" {
		return bad("a logout token names a sid or a sub")
	}
	l.Until = c.Iat + int64((b.cfg.MaxAge+b.cfg.Leeway+time.Second-1)/time.Second)
	if c.HasExp {
		l.Until = min(l.Until, c.Exp+int64((b.cfg.Leeway+time.Second-1)/time.Second))
	}
	return l, nil
}

// checkType accepts the typ header of a logout token: logout+jwt (in either
// spelling of RFC 7515 §4.1.9), or unless RequireType, none or JWT. Any
// other type is a token of another kind (an access token, an ID token
// typed as such) and is refused, against cross-JWT confusion.
func (b *Backchannel) checkType(typ *string) error {
	if typ != nil {
		switch t := strings.ToLower(*typ); {
		case t == "logout+jwt" || t == "application/logout+jwt":
			return nil
		case t == "jwt" && !b.cfg.RequireType:
			return nil
		}
		return fmt.Errorf("typ %.40q: a logout token's typ is logout+jwt", *typ)
	}
	if b.cfg.RequireType {
		return errors.New("typ logout+jwt is required")
	}
	return nil
}

func decodeSegment(s string) ([]byte, error) {
	b, err := base64.RawURLEncoding.Strict().DecodeString(s)
	if err != nil {
		return nil, errors.New("not base64url")
	}
	return b, nil
}

// topLevelMembers reads a JSON object's members, refusing one given twice.
func topLevelMembers(b []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, errors.New("not a JSON object")
	}
	out := map[string]json.RawMessage{}
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return nil, errors.New("not a JSON object")
		}
		name, _ := t.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, errors.New("not a JSON object")
		}
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("claim %.40q given twice", name)
		}
		out[name] = v
	}
	return out, nil
}

// checkEvents requires the events claim to be an object whose
// back-channel logout member is an object (§2.4).
func checkEvents(raw json.RawMessage) error {
	if raw == nil {
		return errors.New("the events claim is required")
	}
	var events map[string]json.RawMessage
	if json.Unmarshal(raw, &events) != nil || events == nil {
		return errors.New("events must be a JSON object")
	}
	ev, ok := events[BackchannelEvent]
	if !ok {
		return fmt.Errorf("events has no %s member: not a logout token", BackchannelEvent)
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(ev, &obj) != nil || obj == nil {
		return fmt.Errorf("events[%q] must be a JSON object", BackchannelEvent)
	}
	return nil
}

// reserve marks a logout token's jti as seen, refusing one seen before
// (§2.6 step 7: a replayed token). The mark is dropped again by release
// when the logout could not be written, so that the OP's retry works.
func (b *Backchannel) reserve(l Logout) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.now().Unix()
	k := replayKey{l.Iss, l.JTI}
	if e, ok := b.seen[k]; ok && e.until >= now {
		if e.pending {
			return fmt.Errorf("%w: the same logout token is being processed", ErrLogoutToken)
		}
		return fmt.Errorf("%w: this logout token (its jti) was already received", ErrLogoutToken)
	}
	b.expireLocked(now)
	if len(b.seen) >= b.cfg.MaxReplay {
		return errReplayFull
	}
	b.seen[k] = replayEntry{until: l.Until, pending: true}
	b.byAt = append(b.byAt, k)
	return nil
}

var errReplayFull = errors.New("too many logout tokens received recently to remember them against replay")

// expireLocked forgets the jtis of tokens that can no longer be accepted.
// Tokens arrive roughly in the order they expire (each lives MaxAge), so
// the oldest are at the front; an entry out of order waits for the ones
// before it.
func (b *Backchannel) expireLocked(now int64) {
	drop := 0
	for _, k := range b.byAt {
		e, ok := b.seen[k]
		if ok && (e.until >= now || e.pending) {
			break
		}
		if ok {
			delete(b.seen, k)
		}
		drop++
	}
	b.byAt = b.byAt[drop:] // the array is dropped when append next reallocates it
}

func (b *Backchannel) release(l Logout, done bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	k := replayKey{l.Iss, l.JTI}
	if done {
		b.seen[k] = replayEntry{until: l.Until}
		return
	}
	delete(b.seen, k)
}

// serveBackchannel is POST /v1/backchannel-logout (§2.5, §2.8): a form with
// one logout_token; 200 when the logout is written, else 400 with an OAuth
// error object. Responses are never cached.
func (s *Server) serveBackchannel(w http.ResponseWriter, r *http.Request) {
	b := s.Backchannel
	reply := func(code int, errCode string, err error) {
		result := "ok"
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		if err == nil {
			w.WriteHeader(code)
		} else {
			result = errCode
			h.Set("Content-Type", "application/json")
			w.WriteHeader(code)
			_ = json.NewEncoder(w).Encode(map[string]string{"error": errCode, "error_description": err.Error()})
			s.Logger.Warn("back-channel logout refused", "status", code, "error", errCode, "reason", err.Error(), "remote", r.RemoteAddr)
		}
		if s.Metrics != nil && s.Metrics.Backchannel != nil {
			s.Metrics.Backchannel.WithLabelValues(result).Inc()
		}
	}
	invalid := func(err error) { reply(http.StatusBadRequest, "invalid_request", err) }

	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		invalid(errors.New("the request is a form: content-type application/x-www-form-urlencoded, with logout_token"))
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBackchannelBody)
	body, err := io.ReadAll(r.Body)
	if err != nil {
		invalid(fmt.Errorf("the request body is over %d bytes", maxBackchannelBody))
		return
	}
	form, err := parseForm(body)
	if err != nil {
		invalid(err)
		return
	}
	tokens := form["logout_token"]
	if len(tokens) != 1 || tokens[0] == "" {
		invalid(errors.New("the form has no logout_token, or more than one"))
		return
	}
	l, err := b.Validate(r.Context(), tokens[0])
	switch {
	case errors.Is(err, ErrLogoutToken):
		invalid(err)
		return
	case err != nil:
		reply(http.StatusBadRequest, "temporarily_unavailable", err)
		return
	}
	if err := b.reserve(l); err != nil {
		if errors.Is(err, errReplayFull) {
			reply(http.StatusBadRequest, "temporarily_unavailable", err)
		} else {
			invalid(err)
		}
		return
	}
	version, what, err := s.applyLogout(r.Context(), l)
	b.release(l, err == nil)
	if err != nil {
		if s.Metrics != nil {
			s.Metrics.StoreErrors.WithLabelValues("write").Inc()
		}
		reply(http.StatusBadRequest, "temporarily_unavailable", fmt.Errorf("the logout could not be stored: %w", err))
		return
	}
	s.Logger.Info("back-channel logout", "revoked", what, "iss", l.Iss, "sub", l.Sub, "sid", l.SID,
		"logout_jti", l.JTI, "remote", r.RemoteAddr, "version", version)
	reply(http.StatusOK, "", nil)
}

// parseForm reads an x-www-form-urlencoded body.
func parseForm(body []byte) (map[string][]string, error) {
	q, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, errors.New("the request body is not a form")
	}
	return q, nil
}

// applyLogout writes the entry a logout asks for: a sid entry, or for a
// subject alone a cutoff at the logout token's iat. Both expire after the
// longest session lifetime; neither shortens or moves back what is held.
func (s *Server) applyLogout(ctx context.Context, l Logout) (version, what string, err error) {
	b := s.Backchannel
	iss := l.Iss
	if b.cfg.AnyIssuer {
		iss = ""
	}
	exp := b.now().Add(b.cfg.SessionLifetime).Unix()
	exp += 1 // rounded up: the entry must not end before the session can
	if exp > MaxUnixSeconds {
		exp = 0
	}
	if l.SID != "" {
		e := ClaimEntry(iss, "sid", l.SID, exp)
		version, err := s.revokeClaim(ctx, e)
		if err != nil {
			return "", "", err
		}
		return version, "sid", nil
	}
	// A cutoff replaces the one held: merge here, so that a logout never
	// moves a subject's cutoff back or ends it sooner. One at a time, so
	// that two logouts of one subject cannot both read the old cutoff.
	b.cutoffMu.Lock()
	defer b.cutoffMu.Unlock()
	c := Cutoff{Sub: l.Sub, Iss: iss, RevokedBefore: l.Iat, Exp: exp}
	if old, ok := s.Index.Cutoff(c.Key()); ok {
		c.RevokedBefore = max(c.RevokedBefore, old.RevokedBefore)
		c.Exp = longerExp(c.Exp, old.Exp)
	}
	if err := s.Store.RevokeSubject(ctx, c); err != nil {
		return "", "", err
	}
	return s.Index.Apply([]Change{{Op: OpPutCutoff, Cutoff: c}}), "sub", nil
}
