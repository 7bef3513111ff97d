package revocationsource

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Paths served.
const (
	FeedPath  = "/v1/revocations"
	AdminPath = "/v1/admin/revocations"
)

// MaxAdminBody bounds an admin request body: one item is well under 2 KiB.
const MaxAdminBody = 16 << 10

// DefaultDeltaCacheBytes bounds the cache of encoded deltas. A fleet of
// pollers is mostly at the same one or two versions, so a small cache absorbs
// them; the bound is in bytes because one delta can be as large as a
// snapshot.
const DefaultDeltaCacheBytes = 32 << 20

// Server serves the feed, the admin API and the health endpoints.
type Server struct {
	Index   *Index
	Store   Store
	Metrics *Metrics
	Logger  *slog.Logger
	// Now is the clock for admin validation (nil: time.Now).
	Now func() time.Time
	// AdminToken enables the admin API when non-empty.
	AdminToken string
	// FeedToken, when non-empty, is the bearer token the feed requires (the
	// filter sends it with sync.headers).
	FeedToken string
	// MetricsToken, when non-empty, is the bearer token /metrics requires.
	MetricsToken string
	// DeltaCacheBytes bounds the encoded deltas kept (0: DefaultDeltaCacheBytes).
	DeltaCacheBytes int
	// Ready reports whether the store has answered (nil: always ready).
	Ready func() bool
	// Gatherer serves /metrics (nil: no /metrics).
	Gatherer prometheus.Gatherer
	// MaxWait caps the wait of a long poll (0: DefaultMaxWait; < 0: long
	// polls are answered at once).
	MaxWait time.Duration
	// MaxWatchers bounds the long polls held at once (0:
	// DefaultMaxWatchers; < 0: none). Past it they are answered at once.
	MaxWatchers int
	// Backchannel, when set, serves OpenID Connect back-channel logout at
	// BackchannelPath (backchannel.go).
	Backchannel *Backchannel

	initOnce  sync.Once
	draining  chan struct{} // closed by Drain
	drainOnce sync.Once
	watchers  atomic.Int64

	snapMu sync.Mutex
	// claimMu serialises claim revocations (revokeClaim).
	claimMu sync.Mutex
	snap    *snapBuild

	deltaMu    sync.Mutex
	deltas     map[[2]string]*encoded
	deltaOrder [][2]string // insertion order, oldest first
	deltaBytes int
}

type snapBuild struct {
	key     string // the version asked for; read and written under snapMu
	version string // the version built, which may be later; set before done closes
	done    chan struct{}
	body    encoded
}

// encoded is one response body, with its gzip form made on first demand.
type encoded struct {
	plain  []byte
	gzOnce sync.Once
	gz     []byte
}

func (e *encoded) gzipped() []byte {
	e.gzOnce.Do(func() {
		var buf bytes.Buffer
		buf.Grow(len(e.plain) / 3)
		// BestSpeed: a snapshot is rebuilt after every change, and a
		// million entries at the default level cost seconds of CPU.
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		_, _ = zw.Write(e.plain)
		_ = zw.Close()
		e.gz = buf.Bytes()
	})
	return e.gz
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		if s.Logger == nil {
			s.Logger = slog.New(slog.DiscardHandler)
		}
		if s.Now == nil {
			s.Now = time.Now
		}
		s.draining = make(chan struct{})
	})
}

// Handler returns the HTTP routes.
func (s *Server) Handler() http.Handler {
	s.init()
	mux := http.NewServeMux()
	feed := http.HandlerFunc(s.serveFeed)
	mux.Handle("GET "+FeedPath, s.bearer(s.FeedToken, "feed", feed))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if s.Ready != nil && !s.Ready() {
			http.Error(w, "store has not answered yet", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	if s.Gatherer != nil {
		mux.Handle("GET /metrics", s.bearer(s.MetricsToken, "metrics", promhttp.HandlerFor(s.Gatherer, promhttp.HandlerOpts{})))
	}
	if s.Backchannel != nil {
		mux.HandleFunc("POST "+BackchannelPath, s.serveBackchannel)
	}
	if s.AdminToken != "" {
		mux.HandleFunc("POST "+AdminPath, s.admin(s.adminRevoke))
		mux.HandleFunc("DELETE "+AdminPath, s.admin(s.adminUnrevoke))
		mux.HandleFunc("GET "+AdminPath, s.adminRead(s.adminList))
		mux.HandleFunc("GET "+AdminStatusPath, s.adminRead(s.adminStatus))
	}
	return mux
}

// --- feed ---

func (s *Server) serveFeed(w http.ResponseWriter, r *http.Request) {
	if s.Ready != nil && !s.Ready() {
		s.countFeed("error", "identity", 0)
		http.Error(w, "store has not answered yet", http.StatusServiceUnavailable)
		return
	}
	q := r.URL.Query()
	since := q.Get("since")
	if len(since) > MaxVersionBytes {
		since = "" // never one of ours: a snapshot, as for any unknown version
	}
	wait, err := ParseWait(q.Get("wait"))
	if err != nil {
		s.countFeed("error", "identity", 0)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	s.Index.MaybeExpire()
	gz := acceptsGzip(r.Header.Get("Accept-Encoding"))
	enc := "identity"
	if gz {
		enc = "gzip"
	}
	h := w.Header()
	h.Set("Vary", "Accept-Encoding")
	h.Set("Cache-Control", "no-cache")
	if wait > 0 && clientAt(r, since, s.Index.Version()) {
		switch res, v, held := s.tryHold(w, r, since, wait); {
		case !held, res == holdChanged:
			// Answer as a normal poll does, from the version now current.
		case res == holdGone:
			s.countFeed("gone", enc, 0)
			return
		default:
			// The wait ended with the client still current: 304, with the
			// ETag of the version it holds, even when it sent only since.
			h.Set("ETag", etag("", v, gz))
			w.WriteHeader(http.StatusNotModified)
			s.countFeed("not_modified", enc, 0)
			return
		}
	}
	cur := s.Index.Version()
	if etagMatches(r.Header.Get("If-None-Match"), cur) {
		h.Set("ETag", etag("", cur, gz))
		w.WriteHeader(http.StatusNotModified)
		s.countFeed("not_modified", enc, 0)
		return
	}
	var (
		body *encoded
		kind string
		tag  string
	)
	if since != "" {
		if d, version, ok := s.delta(since); ok {
			body, kind, tag = d, "delta", etag(since, version, gz)
		}
	}
	if body == nil {
		var version string
		body, version = s.snapshot()
		kind, tag = "snapshot", etag("", version, gz)
	}
	b := body.plain
	if gz {
		b = body.gzipped()
		h.Set("Content-Encoding", "gzip")
	}
	h.Set("Content-Type", "application/json")
	h.Set("ETag", tag)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(b)
	}
	s.countFeed(kind, enc, len(b))
}

func (s *Server) countFeed(kind, enc string, n int) {
	if s.Metrics == nil {
		return
	}
	s.Metrics.FeedResponses.WithLabelValues(kind, enc).Inc()
	s.Metrics.FeedBytes.WithLabelValues(kind, enc).Add(float64(n))
}

// snapshot returns the encoded snapshot of the current version, building it
// at most once per version however many pollers ask at the same time.
func (s *Server) snapshot() (*encoded, string) {
	cur := s.Index.Version()
	s.snapMu.Lock()
	if b := s.snap; b != nil && b.key == cur {
		s.snapMu.Unlock()
		<-b.done
		return &b.body, b.version
	}
	b := &snapBuild{key: cur, done: make(chan struct{})}
	s.snap = b
	s.snapMu.Unlock()

	start := time.Now()
	version, entries, cutoffs := s.Index.Snapshot()
	b.version = version // the index may have moved on; label the body truly
	b.body.plain = AppendSnapshot(make([]byte, 0, 64*len(entries)+64*len(cutoffs)+128), version, entries, cutoffs)
	close(b.done)
	if s.Metrics != nil {
		s.Metrics.SnapshotBuild.Observe(time.Since(start).Seconds())
	}
	return &b.body, version
}

func (s *Server) delta(since string) (*encoded, string, bool) {
	cur := s.Index.Version()
	s.deltaMu.Lock()
	if e, ok := s.deltas[[2]string{since, cur}]; ok {
		s.deltaMu.Unlock()
		return e, cur, true
	}
	s.deltaMu.Unlock()
	version, d, ok := s.Index.Delta(since)
	if !ok {
		return nil, "", false
	}
	e := &encoded{plain: AppendDelta(nil, since, version, d)}
	s.cacheDelta([2]string{since, version}, e)
	return e, version, true
}

// deltaCost is what one cached delta may come to: the plain body and, made
// on demand, its gzip form (never much larger than the plain one).
func deltaCost(e *encoded) int { return 2*len(e.plain) + 256 }

// cacheDelta keeps e, dropping the oldest deltas to stay within the byte
// bound. A delta larger than an eighth of the bound is not kept at all.
func (s *Server) cacheDelta(key [2]string, e *encoded) {
	limit := s.DeltaCacheBytes
	if limit <= 0 {
		limit = DefaultDeltaCacheBytes
	}
	cost := deltaCost(e)
	if cost > limit/8 {
		return
	}
	s.deltaMu.Lock()
	defer s.deltaMu.Unlock()
	if s.deltas == nil {
		s.deltas = make(map[[2]string]*encoded)
	}
	if old, ok := s.deltas[key]; ok {
		s.deltaBytes -= deltaCost(old)
	} else {
		s.deltaOrder = append(s.deltaOrder, key)
	}
	s.deltas[key] = e
	s.deltaBytes += cost
	drop := 0
	for s.deltaBytes > limit && drop < len(s.deltaOrder) {
		k := s.deltaOrder[drop]
		drop++
		if old, ok := s.deltas[k]; ok {
			s.deltaBytes -= deltaCost(old)
			delete(s.deltas, k)
		}
	}
	if drop > 0 {
		s.deltaOrder = append([][2]string(nil), s.deltaOrder[drop:]...)
	}
}

// deltaCacheUsage reports the cached deltas and what they may take.
func (s *Server) deltaCacheUsage() (n, bytes int) {
	s.deltaMu.Lock()
	defer s.deltaMu.Unlock()
	return len(s.deltas), s.deltaBytes
}

// etag names a response: the version it brings the client to, the base for
// a delta, and the encoding, so that the tag changes whenever the bytes do.
func etag(base, version string, gz bool) string {
	t := version
	if base != "" {
		t = base + ".." + version
	}
	if gz {
		t += "+gzip"
	}
	return `"` + t + `"`
}

// etagMatches reports whether any tag in an If-None-Match header leaves the
// client at version cur, whatever response (delta or snapshot, encoding)
// carried it.
func etagMatches(header, cur string) bool {
	if header == "" {
		return false
	}
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimSpace(t)
		if t == "*" {
			return true
		}
		t = strings.TrimPrefix(t, "W/")
		t = strings.Trim(t, `"`)
		t = strings.TrimSuffix(t, "+gzip")
		if i := strings.LastIndex(t, ".."); i >= 0 {
			t = t[i+2:]
		}
		if t == cur {
			return true
		}
	}
	return false
}

func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		name = strings.ToLower(strings.TrimSpace(name))
		if name != "gzip" && name != "x-gzip" {
			continue
		}
		for _, p := range strings.Split(params, ";") {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			if strings.EqualFold(k, "q") {
				if q, err := strconv.ParseFloat(v, 64); err == nil && q == 0 {
					return false
				}
			}
		}
		return true
	}
	return false
}

// --- admin ---

// AdminRequest is the body of POST (and optionally DELETE) /v1/admin/revocations:
// a jti revocation, a claim entry (claim and value) or a subject cutoff.
type AdminRequest struct {
	JTI           string `json:"jti,omitempty"`
	Claim         string `json:"claim,omitempty"`
	Value         string `json:"value,omitempty"`
	Sub           string `json:"sub,omitempty"`
	Iss           string `json:"iss,omitempty"`
	Exp           int64  `json:"exp,omitempty"`
	RevokedBefore *int64 `json:"revoked_before,omitempty"`
}

var errBadRequest = errors.New("bad request")

// bearerMatches reports whether the Authorization header carries want as a
// bearer token. The scheme is matched case-insensitively (RFC 9110 §11.1),
// and comparing fixed-size digests keeps the comparison constant-time in the
// token's length too.
func bearerMatches(header string, want [sha256.Size]byte) bool {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(header), " ")
	got := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	match := subtle.ConstantTimeCompare(got[:], want[:]) == 1
	return ok && strings.EqualFold(scheme, "Bearer") && match
}

// bearer guards next with token when it is non-empty.
func (s *Server) bearer(token, what string, next http.Handler) http.Handler {
	if token == "" {
		return next
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !bearerMatches(r.Header.Get("Authorization"), want) {
			if what == "feed" {
				s.countFeed("unauthorized", "identity", 0)
			}
			w.Header().Set("WWW-Authenticate", `Bearer realm="revocation-source"`)
			http.Error(w, "missing or wrong bearer token for the "+what, http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// adminAuthorized checks the admin token, answering 401 when it is wrong.
func (s *Server) adminAuthorized(w http.ResponseWriter, r *http.Request) bool {
	want := sha256.Sum256([]byte(s.AdminToken))
	if bearerMatches(r.Header.Get("Authorization"), want) {
		return true
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="revocation-source"`)
	s.adminReply(w, r, http.StatusUnauthorized, "", errors.New("missing or wrong bearer token"))
	return false
}

func (s *Server) admin(next func(*http.Request) (int, error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.adminAuthorized(w, r) {
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, MaxAdminBody)
		code, err := next(r)
		s.adminReply(w, r, code, s.Index.Version(), err)
	}
}

func (s *Server) adminReply(w http.ResponseWriter, r *http.Request, code int, version string, err error) {
	if s.Metrics != nil {
		s.Metrics.AdminRequests.WithLabelValues(r.Method, strconv.Itoa(code)).Inc()
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	if err != nil {
		s.Logger.Warn("admin request failed", "method", r.Method, "status", code, "err", err)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	_ = json.NewEncoder(w).Encode(map[string]string{"version": version})
}

func decodeAdmin(r io.Reader) (AdminRequest, error) {
	var req AdminRequest
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return req, fmt.Errorf("%w: body: %v", errBadRequest, err)
	}
	if dec.More() {
		return req, fmt.Errorf("%w: body holds more than one JSON value", errBadRequest)
	}
	return req, nil
}

func (s *Server) validateAdmin(req *AdminRequest, revoke bool) error {
	if countSet(req.JTI != "", req.Claim != "" || req.Value != "", req.Sub != "") != 1 {
		return fmt.Errorf("%w: give exactly one of jti, claim (with value) and sub", errBadRequest)
	}
	if req.Claim != "" || req.Value != "" {
		if !ValidClaimName(req.Claim) || req.Value == "" {
			return fmt.Errorf("%w: a claim revocation needs claim, a name of 1-%d bytes of visible ASCII other than jti and sub (use jti, or sub for a cutoff), and value", errBadRequest, MaxClaimBytes)
		}
	}
	now := s.Now().Unix()
	grace := int64(s.Index.ExpiryGrace() / time.Second)
	if revoke && req.Exp != 0 && (req.Exp+grace <= now || req.Exp > MaxUnixSeconds) {
		return fmt.Errorf("%w: exp %d must be a Unix time in seconds later than now (%d) minus the expiry grace (%ds), below 2^32; for an hour from now use $(($(date +%%s)+3600))",
			errBadRequest, req.Exp, now, grace)
	}
	if req.Sub == "" && req.RevokedBefore != nil {
		return fmt.Errorf("%w: revoked_before applies to sub only", errBadRequest)
	}
	if req.Sub != "" && revoke && req.RevokedBefore == nil {
		req.RevokedBefore = &now // "log out everywhere, now"
	}
	var err error
	switch {
	case req.JTI != "":
		err = Entry{JTI: req.JTI, Iss: req.Iss, Exp: req.Exp}.Validate()
	case req.Claim != "":
		err = ClaimEntry(req.Iss, req.Claim, req.Value, req.Exp).Validate()
	default:
		c := Cutoff{Sub: req.Sub, Iss: req.Iss, Exp: req.Exp}
		if req.RevokedBefore != nil {
			c.RevokedBefore = *req.RevokedBefore
		}
		err = c.Validate()
	}
	if err != nil {
		return fmt.Errorf("%w: jti/value/sub must be 1-256 bytes of UTF-8, iss at most 512, times 0..2^32-1", errBadRequest)
	}
	return nil
}

func (s *Server) adminRevoke(r *http.Request) (int, error) {
	req, err := decodeAdmin(r.Body)
	if err == nil {
		err = s.validateAdmin(&req, true)
	}
	if err != nil {
		return http.StatusBadRequest, err
	}
	ctx := r.Context()
	var ch Change
	switch {
	case req.JTI != "":
		e := Entry{JTI: req.JTI, Iss: req.Iss, Exp: req.Exp}
		err = s.Store.RevokeToken(ctx, e)
		if eff, ok := s.Store.(EffectiveEntrier); ok {
			e = eff.EffectiveEntry(e)
		}
		// Stores keep the longest revocation of a jti; mirror that.
		ch = Change{Op: OpPutEntry, Entry: e, Merge: true}
	case req.Claim != "":
		e := ClaimEntry(req.Iss, req.Claim, req.Value, req.Exp)
		var version string
		if version, err = s.revokeClaim(ctx, e); err != nil {
			return s.storeFailure(err)
		}
		s.audit(r, "revoke", req, version)
		return http.StatusOK, nil
	default:
		c := Cutoff{Sub: req.Sub, Iss: req.Iss, RevokedBefore: *req.RevokedBefore, Exp: req.Exp}
		err = s.Store.RevokeSubject(ctx, c)
		ch = Change{Op: OpPutCutoff, Cutoff: c}
	}
	if err != nil {
		return s.storeFailure(err)
	}
	version := s.Index.Apply([]Change{ch})
	s.audit(r, "revoke", req, version)
	return http.StatusOK, nil
}

// audit logs one admin change: what was revoked or unrevoked and by which
// client address, never the bearer token.
func (s *Server) audit(r *http.Request, action string, req AdminRequest, version string) {
	attrs := []any{"action", action, "remote", r.RemoteAddr, "version", version}
	switch {
	case req.JTI != "":
		attrs = append(attrs, "jti", req.JTI)
	case req.Claim != "":
		attrs = append(attrs, "claim", req.Claim, "value", req.Value)
	default:
		attrs = append(attrs, "sub", req.Sub)
		if req.RevokedBefore != nil {
			attrs = append(attrs, "revoked_before", *req.RevokedBefore)
		}
	}
	if req.Iss != "" {
		attrs = append(attrs, "iss", req.Iss)
	}
	if req.Exp != 0 {
		attrs = append(attrs, "exp", req.Exp)
	}
	s.Logger.Info("admin "+action, attrs...)
}

func (s *Server) adminUnrevoke(r *http.Request) (int, error) {
	var req AdminRequest
	q := r.URL.Query()
	if q.Has("jti") || q.Has("sub") || q.Has("claim") || q.Has("value") {
		req = AdminRequest{JTI: q.Get("jti"), Claim: q.Get("claim"), Value: q.Get("value"), Sub: q.Get("sub"), Iss: q.Get("iss")}
	} else {
		var err error
		if req, err = decodeAdmin(r.Body); err != nil {
			return http.StatusBadRequest, err
		}
	}
	if err := s.validateAdmin(&req, false); err != nil {
		return http.StatusBadRequest, err
	}
	ctx := r.Context()
	var (
		ch  Change
		err error
	)
	switch {
	case req.JTI != "":
		k := EntryKey{JTI: req.JTI, Iss: req.Iss}
		err = s.Store.UnrevokeToken(ctx, k)
		ch = Change{Op: OpRemoveEntry, Entry: k.Entry(0)}
	case req.Claim != "":
		k := EntryKey{JTI: req.Value, Iss: req.Iss, Claim: req.Claim}
		if cs, ok := s.Store.(ClaimStore); ok {
			err = cs.UnrevokeClaim(ctx, k)
		} else {
			err = ErrClaimsUnsupported
		}
		ch = Change{Op: OpRemoveEntry, Entry: k.Entry(0)}
	default:
		k := CutoffKey{Sub: req.Sub, Iss: req.Iss}
		err = s.Store.UnrevokeSubject(ctx, k)
		ch = Change{Op: OpRemoveCutoff, Cutoff: Cutoff{Sub: k.Sub, Iss: k.Iss}}
	}
	if err != nil {
		return s.storeFailure(err)
	}
	version := s.Index.Apply([]Change{ch})
	s.audit(r, "unrevoke", req, version)
	return http.StatusOK, nil
}

// revokeClaim writes a claim entry to the store, when it can hold one, and applies it to the
// index; it returns the index's version. Claim revocations go one at a time from the bound
// check to the index, so two at once under new names cannot both pass at MaxClaimNames-1
// (a ninth name would make every filter refuse the feed).
func (s *Server) revokeClaim(ctx context.Context, e Entry) (string, error) {
	cs, ok := s.Store.(ClaimStore)
	if !ok {
		return "", ErrClaimsUnsupported
	}
	s.claimMu.Lock()
	defer s.claimMu.Unlock()
	if names := s.Index.ClaimNames(); len(names) >= MaxClaimNames && !slices.Contains(names, e.Claim) {
		return "", fmt.Errorf("%w: claim %q: the list already revokes by %d claims (%s), the most a filter reads",
			ErrInvalid, e.Claim, len(names), strings.Join(names, ", "))
	}
	if err := cs.RevokeClaim(ctx, e); err != nil {
		return "", err
	}
	return s.Index.Apply([]Change{{Op: OpPutEntry, Entry: e, Merge: true}}), nil
}

func (s *Server) storeFailure(err error) (int, error) {
	switch {
	case errors.Is(err, ErrReadOnly), errors.Is(err, ErrClaimsUnsupported):
		return http.StatusNotImplemented, err
	case errors.Is(err, ErrIssuerUnsupported), errors.Is(err, ErrInvalid):
		return http.StatusBadRequest, err
	case errors.Is(err, context.Canceled):
		return 499, err
	case errors.Is(err, ErrNotReady):
		return http.StatusServiceUnavailable, err
	}
	if s.Metrics != nil {
		s.Metrics.StoreErrors.WithLabelValues("write").Inc()
	}
	return http.StatusServiceUnavailable, fmt.Errorf("store write failed: %w", err)
}
