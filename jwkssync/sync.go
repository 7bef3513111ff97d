package jwkssync

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jtiguard/jtiguard/blocklistsync"
	"github.com/jtiguard/jtiguard/internal/abi"
	"github.com/jtiguard/jtiguard/jwtverify"
)

// Timing constants.
const (
	// DefaultLeaseTTL is how long a silent holder keeps the lease. The filter ticks at least
	// once a second, and the holder renews on every tick.
	DefaultLeaseTTL = 10 * time.Second
	// DefaultMissGap is the least time between two early fetches asked by kid misses, for the
	// whole proxy (shorter when refresh_interval is).
	DefaultMissGap = 30 * time.Second
	// retryBase and retryMax bound the backoff after failed fetches: 1 s, 2 s, 4 s … up to a
	// minute (or refresh_interval when shorter).
	retryBase = time.Second
	retryMax  = time.Minute
	// inFlightGrace is how long past its timeout a fetch may stay unanswered before the VM
	// stops waiting for it (Envoy always answers; this guards against a host that does not).
	inFlightGrace = 5 * time.Second
	// jitter spreads each scheduled refresh by ±10 %, so proxies started together do not
	// fetch together.
	jitter = 0.1
	// logEvery throttles repeated errors reading shared data.
	logEvery = time.Minute
)

// Options wire a Syncer to its host and its filter.
type Options struct {
	Keys  Keys
	Store blocklistsync.SharedData
	Host  blocklistsync.Host
	Now   func() time.Time
	// Builder holds the inline keys and the allowlist (NewBuilder).
	Builder *Builder
	// FailOpen is the filter's fail_mode: see Verdict.
	FailOpen bool
	// OnChange is called with the new key set (inline plus remote) whenever this VM adopts a
	// different one, on a tick, at Load, or when its own fetch publishes: the filter installs
	// it (jwtverify.Verifier.SetKeys) and forgets the tokens it verified with the old one.
	OnChange      func(*jwtverify.KeySet)
	MetricsPrefix string
	// HolderID names this VM in the lease; 0 picks a random one.
	HolderID uint64
	// Rand returns a float in [0,1) for jitter; nil uses math/rand/v2.
	Rand func() float64
	// LeaseTTL (0: DefaultLeaseTTL) and MissGap (0: DefaultMissGap, at most refresh_interval).
	LeaseTTL time.Duration
	MissGap  time.Duration
}

// Verdict is what the filter does with a token that failed verification.
type Verdict int

const (
	// Reject: the failure stands (the filter's usual invalid or expired reply).
	Reject Verdict = iota
	// Unavailable: no remote key set has arrived on this VM yet, the token failed at its
	// signature with an algorithm the configuration allows, and fail_mode is closed: the
	// filter answers its unavailable reply.
	Unavailable
	// Unchecked: the same with fail_mode open: the filter checks the token's claims without
	// its signature (jwtverify.Verifier.VerifyPayload) and lets it pass if they hold.
	Unchecked
)

// Syncer keeps one VM's key set in step with shared data, and fetches the JWKS while this VM
// holds the lease. One per worker VM; Tick on every proxy_on_tick.
type Syncer struct {
	cfg Config
	o   Options
	m   metrics

	// This VM's view: the key set installed, and the record it came from.
	set     *jwtverify.KeySet
	held    *Accepted // nil until a remote key set was adopted
	heldRec KeyRecord // Doc copied
	seen    Generation
	// failedBuild is a key-set record that could not be built here: not read again until
	// another is published.
	failedBuild uint64
	lastLogErr  time.Time

	// The fetch in flight (lease holder).
	inFlight      bool
	inFlightSince time.Time
	sentETag      bool
	firstLogged   bool

	// Request path: a kid miss noted here, written into the lease on the next tick.
	missPending bool
	missAt      time.Time
	// Requests counted on the request path, handed to the host on the next tick.
	unavailable, unchecked uint64
}

type metrics struct {
	fetches, successes, failures, notModified, rejected, early, unavailable, unchecked abi.Counter
	keys, stalenessMs                                                                  abi.Gauge
}

// NewSyncer returns a Syncer holding the inline keys alone; cfg must have passed Validate.
// It reads nothing and takes no lease: call Load for a key set another VM already published.
func NewSyncer(cfg Config, o Options) *Syncer {
	if o.HolderID == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		o.HolderID = binary.LittleEndian.Uint64(b[:]) | 1
	}
	if o.Rand == nil {
		o.Rand = mrand.Float64
	}
	if o.LeaseTTL <= 0 {
		o.LeaseTTL = DefaultLeaseTTL
	}
	if o.MissGap <= 0 {
		o.MissGap = DefaultMissGap
	}
	o.MissGap = min(o.MissGap, cfg.RefreshInterval.D())
	if o.OnChange == nil {
		o.OnChange = func(*jwtverify.KeySet) {}
	}
	c := func(n string) abi.Counter { return o.Host.DefineCounter(o.MetricsPrefix + n) }
	g := func(n string) abi.Gauge { return o.Host.DefineGauge(o.MetricsPrefix + n) }
	return &Syncer{
		cfg: cfg,
		o:   o,
		set: o.Builder.Inline(),
		m: metrics{
			fetches: c("jwks.fetches"), successes: c("jwks.fetch_successes"), failures: c("jwks.fetch_failures"),
			notModified: c("jwks.not_modified"), rejected: c("jwks.rejected"), early: c("jwks.early_fetches"),
			unavailable: c("jwks.fail_mode_closed"), unchecked: c("jwks.fail_mode_open"),
			keys: g("jwks.keys"), stalenessMs: g("jwks.staleness_ms"),
		},
	}
}

// KeySet is the key set this VM holds: the inline keys, plus the remote ones once adopted.
func (s *Syncer) KeySet() *jwtverify.KeySet { return s.set }

// HasRemote reports whether a remote key set has been adopted on this VM.
func (s *Syncer) HasRemote() bool { return s.held != nil }

// TickPeriod is the longest tick period the lease TTL allows: a tenth of it, at most a second.
func (s *Syncer) TickPeriod() time.Duration { return min(s.o.LeaseTTL/10, time.Second) }

// Load adopts the key set in shared data, if any. It takes no lease and fetches nothing:
// proxy_on_configure calls it, and Envoy also runs that on a configuration canary it kills
// at once, which must not hold the lease.
func (s *Syncer) Load() { s.adopt() }

// Tick hands the request path's counts to the host, writes a pending early-fetch request into
// the lease, adopts a new key set from shared data, and, holding the lease with a fetch due,
// fetches.
func (s *Syncer) Tick() {
	now := s.o.Now()
	s.flush()
	if s.inFlight && now.Sub(s.inFlightSince) > s.cfg.Timeout.D()+inFlightGrace {
		s.inFlight = false
		s.log(abi.LogLevelWarn, "no reply to the last fetch; fetching again when due")
	}
	if s.missPending {
		s.writeMiss(now)
	}
	s.adopt()
	l, held, err := acquire(s.o.Store, s.o.Keys.Lease, s.o.HolderID, now, s.o.LeaseTTL)
	if err != nil {
		s.logThrottled(now, "lease: "+err.Error())
		return
	}
	if !held {
		return
	}
	if !s.seen.LastSuccess.IsZero() && s.seen.BuildID != 0 {
		s.m.stalenessMs.Set(now.Sub(s.seen.LastSuccess).Milliseconds())
	}
	if s.inFlight || now.Before(l.nextDue) {
		return
	}
	s.fetch(now)
}

func (s *Syncer) flush() {
	if s.unavailable > 0 {
		s.m.unavailable.Increment(s.unavailable)
		s.unavailable = 0
	}
	if s.unchecked > 0 {
		s.m.unchecked.Increment(s.unchecked)
		s.unchecked = 0
	}
}

// OnVerifyFailure is the request path's hook, called with a token that failed verification
// and jwtverify's error. It allocates only for a failure at the signature (then it reads the
// token's header), never calls the host, and notes a kid miss for the next tick: a token of
// an allowed algorithm whose kid names no key held, or for whose algorithm no key is held.
func (s *Syncer) OnVerifyFailure(token string, err error) Verdict {
	if !signatureStage(err) {
		return Reject
	}
	if s.held != nil && !s.missAt.IsZero() && s.o.Now().Sub(s.missAt) < s.o.MissGap {
		return Reject // a flood of unknown kids: nothing to note, nothing to read
	}
	alg, kid, ok := peekHeader(token)
	if !ok || !slices.Contains(s.o.Builder.algorithms, alg) {
		return Reject // "none", or an algorithm the configuration refuses whatever the keys
	}
	noKey := errors.Is(err, jwtverify.ErrAlgorithmNotAllowed) || errors.Is(err, jwtverify.ErrTokenUnverifiable)
	if noKey || kid != "" && !s.o.Builder.KnowsKID(kid, s.held) {
		s.noteMiss()
	}
	switch {
	case s.held != nil:
		return Reject
	case errors.Is(err, jwtverify.ErrTokenSignatureInvalid) && kid != "" && slices.Contains(s.o.Builder.kids, kid):
		return Reject // the inline key of that kid refused it: no fetched key changes that
	case s.o.FailOpen:
		s.unchecked++
		return Unchecked
	default:
		s.unavailable++
		return Unavailable
	}
}

// signatureStage reports whether err is a failure at the algorithm or the signature: one that
// other keys could turn into a success. jwtverify's "no key of this kid" is
// ErrTokenUnverifiable with the signature message; its other unverifiable failures (kid not a
// string, crit) are about the header and stand.
func signatureStage(err error) bool {
	switch {
	case errors.Is(err, jwtverify.ErrTokenSignatureInvalid), errors.Is(err, jwtverify.ErrAlgorithmNotAllowed):
		return true
	case errors.Is(err, jwtverify.ErrTokenUnverifiable):
		return err.Error() == "Signature verification failed"
	}
	return false
}

// maxHeaderPeek bounds the header read on a failure.
const maxHeaderPeek = 4096

// peekHeader reads alg and kid from a token's header (members matched exactly).
func peekHeader(token string) (alg, kid string, ok bool) {
	seg, _, found := strings.Cut(token, ".")
	if !found || len(seg) > maxHeaderPeek {
		return "", "", false
	}
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return "", "", false
	}
	var h map[string]json.RawMessage
	if json.Unmarshal(raw, &h) != nil {
		return "", "", false
	}
	if json.Unmarshal(h["alg"], &alg) != nil {
		return "", "", false
	}
	if k, present := h["kid"]; present && json.Unmarshal(k, &kid) != nil {
		return "", "", false
	}
	return alg, kid, true
}

// noteMiss marks an early fetch for the next tick, at most once per MissGap per VM.
func (s *Syncer) noteMiss() {
	now := s.o.Now()
	if !s.missAt.IsZero() && now.Sub(s.missAt) < s.o.MissGap {
		return
	}
	s.missAt, s.missPending = now, true
}

// writeMiss asks the lease holder (perhaps this VM) for an early fetch.
func (s *Syncer) writeMiss(now time.Time) {
	res, err := askEarly(s.o.Store, s.o.Keys.Lease, now, s.o.MissGap)
	if err != nil {
		s.logThrottled(now, "lease: "+err.Error())
	}
	switch res {
	case earlyRetry:
		return // keep it pending
	case earlyAsked:
		s.m.early.Increment(1)
		s.log(abi.LogLevelInfo, "a token named a key that is not held: fetching the JWKS early")
	}
	s.missPending = false
}

// adopt reads the generation record and, when it names another build, the key-set record.
func (s *Syncer) adopt() {
	now := s.o.Now()
	var raw []byte
	var err error
	if v, ok := s.o.Store.(interface {
		GetSharedDataView(string) ([]byte, uint32, error)
	}); ok {
		raw, _, err = v.GetSharedDataView(s.o.Keys.Generation)
	} else {
		raw, _, err = s.o.Store.GetSharedData(s.o.Keys.Generation)
	}
	if errors.Is(err, types.ErrorStatusNotFound) || err == nil && len(raw) == 0 {
		return
	}
	if err != nil {
		s.logThrottled(now, "read the generation record: "+err.Error())
		return
	}
	g, err := ParseGeneration(raw)
	if err != nil {
		s.logThrottled(now, err.Error())
		return
	}
	changed := g.Number != s.seen.Number || g.BuildID != s.seen.BuildID
	s.seen = g
	if !changed || g.BuildID == s.heldRec.BuildID {
		return
	}
	raw, _, err = s.o.Store.GetSharedData(s.o.Keys.KeySet)
	if err != nil {
		s.logThrottled(now, "read the key set: "+err.Error())
		return
	}
	rec, err := ParseKeyRecord(raw)
	if err != nil {
		s.logThrottled(now, err.Error())
		return
	}
	if rec.BuildID == s.heldRec.BuildID || rec.BuildID == s.failedBuild {
		return
	}
	acc, err := s.o.Builder.Accept(rec.Doc)
	if err != nil {
		// Another plugin with this prefix and other algorithms, or a damaged record: keep
		// the key set held, say so once per record.
		s.failedBuild = rec.BuildID
		s.log(abi.LogLevelError, fmt.Sprintf("cannot use the key set of generation %d in shared data, keeping the one held: %v", rec.Number, err))
		return
	}
	s.install(rec, acc)
}

// install makes acc (from rec) this VM's key set; OnChange runs only when the keys differ.
func (s *Syncer) install(rec KeyRecord, acc *Accepted) {
	same := s.held != nil && bytes.Equal(s.heldRec.Doc, rec.Doc)
	rec.Doc = bytes.Clone(rec.Doc)
	s.heldRec, s.held, s.failedBuild = rec, acc, 0
	if same {
		return
	}
	// A kid miss noted before this set arrived is answered by it, or noted again.
	s.missPending = false
	s.set = acc.Set
	s.o.OnChange(acc.Set)
}

// fetch dispatches the callout.
func (s *Syncer) fetch(now time.Time) {
	headers := [][2]string{{":method", "GET"}, {":path", s.cfg.Path}, {":authority", s.cfg.Authority},
		{"accept", "application/jwk-set+json, application/json"}}
	s.sentETag = s.held != nil && s.heldRec.ETag != ""
	if s.sentETag {
		headers = append(headers, [2]string{"if-none-match", s.heldRec.ETag})
	}
	names := make([]string, 0, len(s.cfg.Headers))
	for name := range s.cfg.Headers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		headers = append(headers, [2]string{strings.ToLower(name), s.cfg.Headers[name]})
	}
	s.m.fetches.Increment(1)
	s.inFlightSince = now
	if _, err := s.o.Host.DispatchHTTPCall(s.cfg.Cluster, headers, nil, uint32(s.cfg.Timeout.D().Milliseconds()), s.onResponse); err != nil {
		s.fail(now, s.currentFailures(), "dispatch to cluster "+strconv.Quote(s.cfg.Cluster)+": "+err.Error(), false)
		return
	}
	s.inFlight = true
}

// onResponse handles the reply on the VM that fetched.
func (s *Syncer) onResponse(numHeaders, bodySize, _ int) {
	s.inFlight = false
	now := s.o.Now()
	failures := s.currentFailures()
	s.adopt()
	if numHeaders == 0 {
		s.fail(now, failures, "no response from the JWKS endpoint (connection reset or timeout)", false)
		return
	}
	headers, err := s.o.Host.GetHTTPCallResponseHeaders()
	if err != nil {
		s.fail(now, failures, "read response headers: "+err.Error(), false)
		return
	}
	switch status := header(headers, ":status"); status {
	case "304":
		if !s.sentETag || s.held == nil {
			s.fail(now, failures, "304 Not Modified to a fetch that named no key set", true)
			return
		}
		s.m.notModified.Increment(1)
		s.touch(now)
		s.succeed(now, failures)
	case "200":
		if bodySize > s.cfg.MaxBytes {
			s.fail(now, failures, fmt.Sprintf("response body of %d bytes exceeds max_bytes %d", bodySize, s.cfg.MaxBytes), true)
			return
		}
		var body []byte
		if bodySize > 0 {
			if body, err = s.o.Host.GetHTTPCallResponseBody(0, bodySize); err != nil {
				s.fail(now, failures, "read response body: "+err.Error(), false)
				return
			}
		}
		acc, err := s.o.Builder.Accept(body)
		if err != nil {
			s.fail(now, failures, err.Error(), true)
			return
		}
		if err := s.publish(now, acc, header(headers, "etag")); err != nil {
			s.fail(now, failures, err.Error(), false)
			return
		}
		s.succeed(now, failures)
	default:
		s.fail(now, failures, "JWKS endpoint answered status "+strconv.Quote(truncate(status, 16)), false)
	}
}

// publish writes acc as the next generation: key-set record first, generation record second.
// A document equal to the one held only renews the last success.
func (s *Syncer) publish(now time.Time, acc *Accepted, etag string) error {
	if s.held != nil && bytes.Equal(s.heldRec.Doc, acc.Doc) && s.heldRec.ETag == etag {
		s.touch(now)
		return nil
	}
	var id [8]byte
	if _, err := rand.Read(id[:]); err != nil {
		return fmt.Errorf("draw a build ID: %w", err)
	}
	rec := KeyRecord{
		Number:  max(s.seen.Number, s.heldRec.Number) + 1,
		BuildID: binary.LittleEndian.Uint64(id[:]) | 1,
		Fetched: now, Keys: acc.Keys, ETag: etag, Doc: acc.Doc,
	}
	if len(rec.ETag) > maxETagLen {
		rec.ETag = ""
	}
	if err := s.overwrite(s.o.Keys.KeySet, rec.MarshalBinary()); err != nil {
		return fmt.Errorf("write the key set: %w", err)
	}
	g := Generation{Number: rec.Number, BuildID: rec.BuildID, LastSuccess: now}
	if err := s.updateGeneration(func(cur *Generation) bool {
		if cur.Number > g.Number {
			return false // a newer key set was published meanwhile; readers take the record
		}
		*cur = g
		return true
	}); err != nil {
		return fmt.Errorf("write the generation record: %w", err)
	}
	s.seen = g
	first := s.held == nil
	changed := first || !bytes.Equal(s.heldRec.Doc, acc.Doc)
	s.install(rec, acc)
	s.m.keys.Set(int64(acc.Keys))
	if !changed {
		return nil
	}
	what := fmt.Sprintf("%d keys (kids %s)", acc.Keys, kidList(acc.KIDs))
	if len(acc.Skipped) > 0 {
		what += fmt.Sprintf("; %d skipped: %s", len(acc.Skipped), truncate(strings.Join(acc.Skipped, "; "), 1024))
	}
	if first && !s.firstLogged {
		s.firstLogged = true
		s.log(abi.LogLevelInfo, fmt.Sprintf("first key set fetched (generation %d): %s", rec.Number, what))
	} else {
		s.log(abi.LogLevelInfo, fmt.Sprintf("key set changed (generation %d): %s", rec.Number, what))
	}
	return nil
}

func kidList(kids []string) string {
	if len(kids) == 0 {
		return "none"
	}
	q := make([]string, 0, min(len(kids), 10))
	for _, k := range kids[:min(len(kids), 10)] {
		q = append(q, strconv.Quote(truncate(k, 64)))
	}
	if len(kids) > 10 {
		q = append(q, fmt.Sprintf("and %d more", len(kids)-10))
	}
	return strings.Join(q, ", ")
}

// touch records a fetch that changed nothing.
func (s *Syncer) touch(now time.Time) {
	build := s.heldRec.BuildID
	err := s.updateGeneration(func(cur *Generation) bool {
		if cur.BuildID != build {
			return false // another key set was published meanwhile; its own time stands
		}
		cur.LastSuccess = now
		return true
	})
	if err != nil {
		s.log(abi.LogLevelError, "record the fetch: "+err.Error())
	}
	if s.seen.BuildID == build {
		s.seen.LastSuccess = now
	}
}

// overwrite sets key to value whatever it holds, with the CAS of a fresh read rather than 0:
// Envoy takes 0 as "unconditional", the SDK's emulator as a CAS value.
func (s *Syncer) overwrite(key string, value []byte) error {
	_, err := blocklistsync.UpdateShared(s.o.Store, key, func([]byte, bool) []byte { return value })
	return err
}

// updateGeneration applies change to the generation record under CAS; a record that cannot
// be read is changed as an empty one.
func (s *Syncer) updateGeneration(change func(*Generation) bool) error {
	_, err := blocklistsync.UpdateShared(s.o.Store, s.o.Keys.Generation, func(raw []byte, _ bool) []byte {
		cur, err := ParseGeneration(raw)
		if err != nil {
			cur = Generation{}
		}
		if !change(&cur) {
			return nil
		}
		return cur.MarshalBinary()
	})
	return err
}

func (s *Syncer) currentFailures() uint32 {
	l, _, err := readLease(s.o.Store, s.o.Keys.Lease)
	if err != nil || l.holder != s.o.HolderID {
		return 0
	}
	return l.failures
}

// succeed resets the backoff; after failures it says so once.
func (s *Syncer) succeed(now time.Time, failures uint32) {
	s.m.successes.Increment(1)
	if failures > 0 {
		s.log(abi.LogLevelInfo, fmt.Sprintf("JWKS fetched again after %d failed fetches", failures))
	}
	d := s.cfg.RefreshInterval.D()
	d = time.Duration(float64(d) * (1 + jitter*(2*s.o.Rand()-1)))
	s.schedule(now.Add(d), 0)
}

// fail counts a failure, keeps the key set held, and retries after a backoff: 1 s doubling
// up to a minute (or refresh_interval when shorter).
func (s *Syncer) fail(now time.Time, failures uint32, reason string, rejected bool) {
	s.m.failures.Increment(1)
	if rejected {
		s.m.rejected.Increment(1)
	}
	failures++
	limit := min(retryMax, s.cfg.RefreshInterval.D())
	delay := limit
	if failures < 32 {
		delay = min(retryBase<<(failures-1), limit)
	}
	state := "no remote key set yet"
	if s.held != nil {
		state = fmt.Sprintf("keeping the key set held (generation %d, %d keys)", s.heldRec.Number, s.heldRec.Keys)
	}
	s.log(abi.LogLevelWarn, fmt.Sprintf("JWKS fetch failed (%d in a row), %s, retry in %s: %s", failures, state, delay, reason))
	s.schedule(now.Add(delay), failures)
}

func (s *Syncer) schedule(due time.Time, failures uint32) {
	if err := updateSchedule(s.o.Store, s.o.Keys.Lease, s.o.HolderID, due, failures); err != nil {
		s.log(abi.LogLevelError, "write the fetch schedule: "+err.Error())
	}
}

func header(headers [][2]string, name string) string {
	for _, h := range headers {
		if strings.EqualFold(h[0], name) {
			return h[1]
		}
	}
	return ""
}

func (s *Syncer) log(level abi.LogLevel, msg string) { s.o.Host.Log(level, "jtiguard: jwks: "+msg) }

func (s *Syncer) logThrottled(now time.Time, msg string) {
	if now.Sub(s.lastLogErr) >= logEvery {
		s.lastLogErr = now
		s.log(abi.LogLevelError, msg)
	}
}
