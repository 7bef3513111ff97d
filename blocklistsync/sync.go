package blocklistsync

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jtiguard/jtiguard/internal/abi"
)

// Host is what the syncer needs of the proxy besides shared data: HTTP callouts, logs and
// metrics. The filter passes internal/abi's functions; tests pass fakes.
type Host interface {
	DispatchHTTPCall(cluster string, headers [][2]string, body []byte, timeoutMillis uint32, cb func(numHeaders, bodySize, numTrailers int)) (uint32, error)
	GetHTTPCallResponseHeaders() ([][2]string, error)
	GetHTTPCallResponseBody(start, maxSize int) ([]byte, error)
	Log(level abi.LogLevel, msg string)
	DefineCounter(name string) abi.Counter
	DefineGauge(name string) abi.Gauge
}

// SyncOptions wire a Syncer to its host.
type SyncOptions struct {
	Keys  Keys
	Store SharedData
	Host  Host
	Now   func() time.Time
	// KeyedByIssuer hashes (iss, jti) instead of jti alone; it must match the filter's keys.
	KeyedByIssuer bool
	// Grace keeps entries this long past their expiry: the filter's clock leeway.
	Grace         time.Duration
	MetricsPrefix string
	// HolderID names this VM in the lease; 0 picks a random one.
	HolderID uint64
	// Rand returns a float in [0,1) for jitter; nil uses math/rand/v2.
	Rand func() float64
}

// compactEvery is how often an unchanged list is rebuilt to drop entries that expired.
const compactEvery = 10 * time.Minute

// Syncer keeps the shared blocklist fresh. One per worker VM; Tick on every proxy_on_tick.
type Syncer struct {
	cfg    Config
	o      SyncOptions
	reader *Reader
	m      syncMetrics

	inFlight      bool
	inFlightSince time.Time
	// resync asks the next poll for a full snapshot (no since, no if-none-match).
	resync bool
}

type syncMetrics struct {
	attempts, successes, failures, notModified, rejected, resyncs abi.Counter
	entries, cutoffs, stalenessMs                                 abi.Gauge
}

// NewSyncer returns a Syncer; cfg must have passed Validate.
func NewSyncer(cfg Config, o SyncOptions) *Syncer {
	if o.HolderID == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		o.HolderID = binary.LittleEndian.Uint64(b[:]) | 1
	}
	if o.Rand == nil {
		o.Rand = mrand.Float64
	}
	c := func(n string) abi.Counter { return o.Host.DefineCounter(o.MetricsPrefix + n) }
	g := func(n string) abi.Gauge { return o.Host.DefineGauge(o.MetricsPrefix + n) }
	return &Syncer{
		cfg:    cfg,
		o:      o,
		reader: NewReader(o.Store, o.Keys),
		m: syncMetrics{
			attempts: c("sync.attempts"), successes: c("sync.successes"), failures: c("sync.failures"),
			notModified: c("sync.not_modified"), rejected: c("sync.rejected"), resyncs: c("sync.resyncs"),
			entries: g("blocklist.entries"), cutoffs: g("blocklist.cutoffs"), stalenessMs: g("sync.staleness_ms"),
		},
	}
}

// TickPeriod is how often Tick should run: a fraction of the interval, so jitter and backoff
// have a resolution finer than the interval itself, and a lease is renewed well within its TTL.
func (s *Syncer) TickPeriod() time.Duration {
	return min(max(s.cfg.Interval.D()/5, 20*time.Millisecond), time.Second)
}

// Tick takes or renews the lease and, if this VM holds it and a poll is due, polls.
func (s *Syncer) Tick() {
	now := s.o.Now()
	if s.inFlight && now.Sub(s.inFlightSince) > s.cfg.Timeout.D()+s.cfg.Interval.D() {
		// Envoy always answers a callout, if only with a timeout; this guards against a host
		// that lost one, so the VM does not stay silent forever.
		s.inFlight = false
		s.log(abi.LogLevelWarn, "sync: no reply to the last poll; polling again")
	}
	l, held, err := acquire(s.o.Store, s.o.Keys.Lease, s.o.HolderID, now, s.cfg.LeaseTTL.D())
	if err != nil {
		s.log(abi.LogLevelError, "sync: lease: "+err.Error())
		return
	}
	if !held {
		return
	}
	_, freshAt, _ := s.reader.Refresh()
	if !freshAt.IsZero() {
		s.m.stalenessMs.Set(now.Sub(freshAt).Milliseconds())
	}
	if s.inFlight || now.Before(l.nextDue) {
		return
	}
	s.poll(now, l.failures)
}

func (s *Syncer) poll(now time.Time, failures uint32) {
	snap, _, _ := s.reader.Refresh()
	path := s.cfg.Path
	headers := [][2]string{{":method", "GET"}, {":authority", s.cfg.Authority}, {"accept", "application/json, text/plain"}}
	if snap != nil && !s.resync {
		if snap.Version != "" {
			sep := "?"
			if strings.Contains(path, "?") {
				sep = "&"
			}
			path += sep + "since=" + url.QueryEscape(snap.Version)
		}
		if snap.ETag != "" {
			headers = append(headers, [2]string{"if-none-match", snap.ETag})
		}
	}
	headers = append(headers, [2]string{":path", path})
	names := make([]string, 0, len(s.cfg.Headers))
	for name := range s.cfg.Headers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		headers = append(headers, [2]string{strings.ToLower(name), s.cfg.Headers[name]})
	}
	s.m.attempts.Increment(1)
	if _, err := s.o.Host.DispatchHTTPCall(s.cfg.Cluster, headers, nil, uint32(s.cfg.Timeout.D().Milliseconds()), s.onResponse); err != nil {
		s.fail(now, failures, "dispatch to cluster "+strconv.Quote(s.cfg.Cluster)+": "+err.Error(), false)
		return
	}
	s.inFlight, s.inFlightSince = true, now
}

func header(headers [][2]string, name string) string {
	for _, h := range headers {
		if strings.EqualFold(h[0], name) {
			return h[1]
		}
	}
	return ""
}

// onResponse handles the reply on the VM that polled.
func (s *Syncer) onResponse(numHeaders, bodySize, _ int) {
	s.inFlight = false
	now := s.o.Now()
	failures := s.currentFailures()
	if numHeaders == 0 {
		s.fail(now, failures, "no response from the revocation source (connection reset or timeout)", false)
		return
	}
	headers, err := s.o.Host.GetHTTPCallResponseHeaders()
	if err != nil {
		s.fail(now, failures, "read response headers: "+err.Error(), false)
		return
	}
	switch status := header(headers, ":status"); status {
	case "304":
		if s.reader.Snapshot() == nil {
			s.fail(now, failures, "304 Not Modified but no list is held", true)
			return
		}
		s.m.notModified.Increment(1)
		if err := s.touch(now); err != nil {
			s.fail(now, failures, "record success: "+err.Error(), false)
			return
		}
		s.succeed(now)
	case "200":
		if bodySize > s.cfg.MaxBodyBytes {
			s.fail(now, failures, fmt.Sprintf("response body of %d bytes exceeds max_body_bytes %d", bodySize, s.cfg.MaxBodyBytes), true)
			return
		}
		var body []byte
		if bodySize > 0 {
			if body, err = s.o.Host.GetHTTPCallResponseBody(0, bodySize); err != nil {
				s.fail(now, failures, "read response body: "+err.Error(), false)
				return
			}
		}
		upd, err := ParseFeed(body, header(headers, "content-type"), FeedLimits{MaxEntries: s.cfg.MaxEntries, KeyedByIssuer: s.o.KeyedByIssuer})
		if err != nil {
			s.fail(now, failures, err.Error(), true)
			return
		}
		etag := header(headers, "etag")
		if len(etag) > MaxVersionLen {
			etag = "" // too long to keep: the next poll simply does not ask for 304
		}
		if err := s.apply(now, upd, etag); err != nil {
			if errors.Is(err, errResync) {
				s.m.resyncs.Increment(1)
				s.log(abi.LogLevelInfo, "sync: "+err.Error()+"; asking for a full snapshot")
				s.schedule(now, 0, failures) // resync at once, without counting a failure
				return
			}
			s.fail(now, failures, err.Error(), errors.Is(err, ErrBadFeed))
			return
		}
		s.succeed(now)
	default:
		s.fail(now, failures, "revocation source answered status "+strconv.Quote(status), false)
	}
}

var errResync = errors.New("delta does not apply to the list held")

// apply turns an update into a new snapshot and publishes it: snapshot first, generation
// record second (see layout.go).
func (s *Syncer) apply(now time.Time, upd *Update, etag string) error {
	snap, _, err := s.reader.Refresh()
	if err != nil && !errors.Is(err, ErrNoList) {
		return fmt.Errorf("read the current list: %w", err)
	}
	notBefore := clampSeconds(now.Add(-s.o.Grace))
	var list List
	switch upd.Kind {
	case KindSnapshot:
		list = upd.Add
		list.Normalize(notBefore)
	case KindDelta:
		if snap == nil || s.resync || snap.Version == "" || snap.Version != upd.Base {
			s.resync = true
			return fmt.Errorf("%w (base %q)", errResync, upd.Base)
		}
		list = mergeDelta(snap, upd, notBefore)
	}
	if n := len(list.Entries) + len(list.Cutoffs); n > s.cfg.MaxEntries {
		return fmt.Errorf("%w: %d entries and cutoffs after applying, more than max_entries %d", ErrBadFeed, n, s.cfg.MaxEntries)
	}
	if err := s.publish(now, &list, upd.Version, etag); err != nil {
		return err
	}
	s.resync = false
	return nil
}

// publish writes list as the next generation.
func (s *Syncer) publish(now time.Time, list *List, version, etag string) error {
	gen := s.reader.gen.Number
	if snap := s.reader.Snapshot(); snap != nil {
		gen = max(gen, snap.Generation)
	}
	gen++
	raw, err := list.Encode(Meta{Generation: gen, Built: now, Version: version, ETag: etag, KeyedByIssuer: s.o.KeyedByIssuer})
	if err != nil {
		return err
	}
	cas := uint32(0)
	if s.reader.Snapshot() != nil {
		cas = s.reader.snapCAS
	}
	if err := s.o.Store.SetSharedData(s.o.Keys.Snapshot, raw, cas); err != nil {
		return fmt.Errorf("write snapshot: %w", err)
	}
	g := Generation{Number: gen, LastSuccess: now, Entries: uint32(len(list.Entries)), Cutoffs: uint32(len(list.Cutoffs))}
	if err := s.updateGeneration(func(cur *Generation) bool {
		if cur.Number > gen {
			return false
		}
		*cur = g
		return true
	}); err != nil {
		return fmt.Errorf("write generation: %w", err)
	}
	s.m.entries.Set(int64(g.Entries))
	s.m.cutoffs.Set(int64(g.Cutoffs))
	s.reader.Refresh() // adopt our own snapshot (and its CAS) for the next delta
	return nil
}

// touch records a successful poll that changed nothing; now and then it also compacts the
// list, dropping expired entries.
func (s *Syncer) touch(now time.Time) error {
	if snap := s.reader.Snapshot(); snap != nil && now.Sub(snap.Built) > compactEvery {
		list := List{Entries: make([]Entry, 0, snap.Len()), Cutoffs: snap.CutoffList()}
		snap.Entries(func(e Entry) bool { list.Entries = append(list.Entries, e); return true })
		list.Normalize(clampSeconds(now.Add(-s.o.Grace)))
		return s.publish(now, &list, snap.Version, snap.ETag)
	}
	number := s.reader.Snapshot().Generation
	return s.updateGeneration(func(cur *Generation) bool {
		if cur.Number != number {
			return false // a newer list was published meanwhile; its own time stands
		}
		cur.LastSuccess = now
		return true
	})
}

// updateGeneration applies change to the generation record under CAS, retrying a few times.
func (s *Syncer) updateGeneration(change func(*Generation) bool) error {
	for range 4 {
		raw, cas, err := s.o.Store.GetSharedData(s.o.Keys.Generation)
		var cur Generation
		switch {
		case errors.Is(err, types.ErrorStatusNotFound):
			cas = 0
		case err != nil:
			return err
		default:
			if cur, err = ParseGeneration(raw); err != nil {
				cur = Generation{}
			}
		}
		if !change(&cur) {
			return nil
		}
		err = s.o.Store.SetSharedData(s.o.Keys.Generation, cur.MarshalBinary(), cas)
		if !errors.Is(err, types.ErrorStatusCasMismatch) {
			return err
		}
	}
	return types.ErrorStatusCasMismatch
}

// mergeDelta applies a delta to a snapshot in one linear pass over the held entries.
func mergeDelta(snap *Snapshot, upd *Update, notBefore uint32) List {
	adds := normalizeEntries(upd.Add.Entries, 0)
	removed := make(map[uint64]struct{}, len(upd.Remove))
	for _, k := range upd.Remove {
		removed[k] = struct{}{}
	}
	out := make([]Entry, 0, snap.Len()+len(adds))
	i := 0
	emit := func(e Entry) {
		if _, gone := removed[e.Key]; !gone && live(e.Exp, notBefore) {
			out = append(out, e)
		}
	}
	snap.Entries(func(e Entry) bool {
		for ; i < len(adds) && adds[i].Key < e.Key; i++ {
			emit(adds[i])
		}
		if i < len(adds) && adds[i].Key == e.Key {
			e.Exp = laterExp(e.Exp, adds[i].Exp)
			i++
		}
		emit(e)
		return true
	})
	for ; i < len(adds); i++ {
		emit(adds[i])
	}

	cuts := map[uint64]Cutoff{}
	for _, c := range snap.CutoffList() {
		cuts[c.Key] = c
	}
	for _, k := range upd.RemoveCutoffs {
		delete(cuts, k)
	}
	for _, c := range upd.Add.Cutoffs {
		cuts[c.Key] = c // an added cutoff replaces the one held
	}
	cutoffs := make([]Cutoff, 0, len(cuts))
	for _, c := range cuts {
		cutoffs = append(cutoffs, c)
	}
	return List{Entries: out, Cutoffs: normalizeCutoffs(cutoffs, notBefore)}
}

func (s *Syncer) currentFailures() uint32 {
	raw, _, err := s.o.Store.GetSharedData(s.o.Keys.Lease)
	if err != nil {
		return 0
	}
	l, err := parseLease(raw)
	if err != nil {
		return 0
	}
	return l.failures
}

func (s *Syncer) succeed(now time.Time) {
	s.m.successes.Increment(1)
	s.schedule(now, s.jitter(s.cfg.Interval.D()), 0)
}

// fail counts a failure and backs off: the retry waits interval × 2^(failures-1), capped at
// max_backoff. The list in shared data is untouched.
func (s *Syncer) fail(now time.Time, failures uint32, reason string, rejected bool) {
	s.m.failures.Increment(1)
	if rejected {
		s.m.rejected.Increment(1)
	}
	failures++
	delay := s.cfg.MaxBackoff.D()
	if failures < 32 {
		delay = min(s.cfg.Interval.D()<<(failures-1), delay)
	}
	delay = s.jitter(delay)
	s.log(abi.LogLevelWarn, fmt.Sprintf("sync: poll failed (%d in a row), keeping the last good list, retry in %s: %s",
		failures, delay.Round(time.Millisecond), reason))
	s.schedule(now, delay, failures)
}

func (s *Syncer) schedule(now time.Time, delay time.Duration, failures uint32) {
	if err := updateSchedule(s.o.Store, s.o.Keys.Lease, s.o.HolderID, now.Add(delay), failures); err != nil {
		s.log(abi.LogLevelError, "sync: write schedule: "+err.Error())
	}
}

func (s *Syncer) jitter(d time.Duration) time.Duration {
	if s.cfg.Jitter == 0 {
		return d
	}
	return time.Duration(float64(d) * (1 + s.cfg.Jitter*(2*s.o.Rand()-1)))
}

func (s *Syncer) log(level abi.LogLevel, msg string) { s.o.Host.Log(level, "jtiguard: "+msg) }

func clampSeconds(t time.Time) uint32 {
	return uint32(min(max(t.Unix(), 0), 1<<32-1))
}
