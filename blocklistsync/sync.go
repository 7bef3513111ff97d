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
	Grace time.Duration
	// MaxStaleness is the filter's max_staleness: a list whose last successful sync is older
	// is unusable (the filter follows its fail_mode). While the list is unusable, or would
	// become so before the next backed-off retry, the lease holder retries at least once per
	// interval whatever the backoff. 0: a list never goes stale; only "no list" is unusable.
	MaxStaleness  time.Duration
	MetricsPrefix string
	// HolderID names this VM in the lease; 0 picks a random one.
	HolderID uint64
	// Rand returns a float in [0,1) for jitter; nil uses math/rand/v2.
	Rand func() float64
	// OnGrow is the reader's (ReaderOptions.OnGrow): the lease holder reads every snapshot it
	// publishes back.
	OnGrow func(bytes int)
}

// compactEvery is how often an unchanged list is rebuilt to drop entries that expired.
const compactEvery = 10 * time.Minute

// minGuardedShrink is the fewest removals the shrink guard looks at, so an administrator can
// still empty a small list (a few unrevocations) without tripping it.
const minGuardedShrink = 10

// watchBurst bounds the polls sent at once after an answer (a change, a long poll that was
// held, the first list): on average at most this many per interval, in bursts of at most this
// many. A broken source that answers every poll at once with a "change" cannot make the lease
// holder spin, and a storm of revocations is batched (each publication makes every worker VM
// copy the list) without holding any of them back by more than interval / watchBurst.
const watchBurst = 10

// minWatchWait is the shortest wait worth sending; a shorter one (a tight max_staleness) makes
// the poll a plain one.
const minWatchWait = 100 * time.Millisecond

// ErrShrinkRefused marks a new list refused because it shrinks the held one by more than
// sync.max_shrink while sync.refuse_shrink is set. It is reported wrapped in ErrBadFeed.
var ErrShrinkRefused = errors.New("list shrinks by more than max_shrink")

// Syncer keeps the shared blocklist fresh. One per worker VM; Tick on every proxy_on_tick.
type Syncer struct {
	cfg    Config
	o      SyncOptions
	reader *Reader
	m      syncMetrics

	inFlight      bool
	inFlightSince time.Time
	// inFlightTimeout is the callout timeout of the poll in flight: sync.timeout, plus the
	// wait for a long poll.
	inFlightTimeout time.Duration
	// inFlightWait is the wait the poll in flight sent; 0 for a plain poll.
	inFlightWait time.Duration
	// seq numbers this VM's polls: a reply to a poll given up on (see Tick) is ignored, so one
	// VM never has two polls in play.
	seq uint32
	// burstTAT is the rate limiter of the polls sent at once (the theoretical arrival time
	// of the generic cell rate algorithm, with watchBurst polls per interval in bursts of
	// watchBurst).
	burstTAT time.Time
	// conditional is whether the poll in flight named the list held (since= or
	// if-none-match): only then does a 304 mean "keep it".
	conditional bool
	// resync asks the next poll for a full snapshot (no since, no if-none-match).
	resync bool
	// askedFull is whether the poll in flight asked for a full snapshot: a delta in answer to
	// it is the source's fault, counted and backed off like any bad answer, not a reason to ask
	// again at once (a source answering every poll so would be polled as fast as it answers).
	askedFull bool
	// resyncFor is the generation record whose unusable snapshot was last reported, so each
	// is logged and counted once.
	resyncFor Generation
	// hasher is a key drawn for a list when shared data holds none that can be read.
	hasher Hasher
	// firstLogged: "first list received" is said once per VM.
	firstLogged bool
}

type syncMetrics struct {
	attempts, watches, successes, failures, notModified, rejected, resyncs, largeShrinks abi.Counter
	entries, cutoffs, stalenessMs                                                        abi.Gauge
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
		reader: NewReader(o.Store, o.Keys, ReaderOptions{KeyedByIssuer: o.KeyedByIssuer, OnGrow: o.OnGrow}),
		m: syncMetrics{
			attempts: c("sync.attempts"), watches: c("sync.watches"), successes: c("sync.successes"), failures: c("sync.failures"),
			notModified: c("sync.not_modified"), rejected: c("sync.rejected"), resyncs: c("sync.resyncs"),
			largeShrinks: c("sync.large_shrinks"),
			entries:      g("blocklist.entries"), cutoffs: g("blocklist.cutoffs"), stalenessMs: g("sync.staleness_ms"),
		},
	}
}

// TickPeriod is how often Tick should run: a fraction of the interval, so jitter and backoff
// have a resolution finer than the interval itself, and a lease is renewed well within its TTL.
// With the long poll on it is at most the pace of polls sent at once (interval / watchBurst):
// a poll held back by that limit waits for a tick.
func (s *Syncer) TickPeriod() time.Duration {
	d := s.cfg.Interval.D() / 5
	if s.cfg.Watch.Wait > 0 {
		d = s.cfg.Interval.D() / watchBurst
	}
	return min(max(d, 20*time.Millisecond), time.Second)
}

// Tick takes or renews the lease and, if this VM holds it and a poll is due, polls. The lease
// is renewed on every tick, also while a long poll is held, however long it is held.
func (s *Syncer) Tick() {
	now := s.o.Now()
	if s.inFlight && now.Sub(s.inFlightSince) > s.inFlightTimeout+s.cfg.Interval.D() {
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
	snap, freshAt, err := s.reader.Reload()
	s.checkHeld(err)
	if !freshAt.IsZero() {
		s.m.stalenessMs.Set(now.Sub(freshAt).Milliseconds())
	}
	if s.inFlight || now.Before(l.nextDue) {
		return
	}
	s.poll(now, l.failures, snap != nil && err == nil && !s.resync)
}

// checkHeld turns a list in shared data that cannot be used (keyed differently from this
// filter, an older layout, malformed) into a full resync, reported once per such list.
func (s *Syncer) checkHeld(err error) {
	if err == nil || errors.Is(err, ErrNoList) {
		return
	}
	if !errors.Is(err, ErrKeyingMismatch) && !errors.Is(err, ErrBadSnapshot) && !errors.Is(err, ErrSnapshotTooOld) {
		return // a failed read of the store: try again next tick
	}
	s.resync = true
	if s.reader.gen == s.resyncFor {
		return
	}
	s.resyncFor = s.reader.gen
	s.m.resyncs.Increment(1)
	s.log(abi.LogLevelWarn, "sync: the list in shared data cannot be used ("+err.Error()+
		"); asking the source for a full snapshot to replace it")
}

// watchWait is the wait a poll sent now may ask for: 0 (a plain poll) unless the long poll
// is on and the list held can be named (since or if-none-match). With a max_staleness the
// list's age at the end of the wait stays within half of it, so a held poll never lets the
// list go stale while the source is healthy.
func (s *Syncer) watchWait(now time.Time) time.Duration {
	wait := s.cfg.Watch.Wait.D()
	snap := s.reader.Snapshot()
	if wait <= 0 || snap == nil || s.resync || (snap.Version == "" && snap.ETag == "") {
		return 0
	}
	if s.o.MaxStaleness > 0 {
		wait = min(wait, s.o.MaxStaleness/2-now.Sub(s.reader.freshAt))
	}
	if wait = wait.Truncate(time.Millisecond); wait < minWatchWait {
		return 0
	}
	return wait
}

func (s *Syncer) poll(now time.Time, failures uint32, mergeable bool) {
	snap := s.reader.Snapshot()
	path := s.cfg.Path
	param := func(name, value string) {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		path += sep + name + "=" + url.QueryEscape(value)
	}
	headers := [][2]string{{":method", "GET"}, {":authority", s.cfg.Authority}, {"accept", "application/json, text/plain"}}
	s.conditional = false
	var wait time.Duration
	if mergeable {
		s.conditional = snap.Version != "" || snap.ETag != ""
		if snap.Version != "" {
			param("since", snap.Version)
		}
		if snap.ETag != "" {
			headers = append(headers, [2]string{"if-none-match", snap.ETag})
		}
		// A poll after a failure is a plain one: a source that came back answers it at once,
		// so recovery is as fast as without the long poll.
		if failures == 0 {
			wait = s.watchWait(now)
		}
		if wait > 0 {
			param("wait", wait.String())
		}
	}
	headers = append(headers, [2]string{":path", path})
	s.askedFull = !mergeable
	names := make([]string, 0, len(s.cfg.Headers))
	for name := range s.cfg.Headers {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		headers = append(headers, [2]string{strings.ToLower(name), s.cfg.Headers[name]})
	}
	s.m.attempts.Increment(1)
	if wait > 0 {
		s.m.watches.Increment(1)
	}
	s.inFlightSince, s.inFlightWait, s.inFlightTimeout = now, wait, wait+s.cfg.Timeout.D()
	s.seq++
	seq := s.seq
	cb := func(numHeaders, bodySize, numTrailers int) { s.onResponse(seq, numHeaders, bodySize, numTrailers) }
	if _, err := s.o.Host.DispatchHTTPCall(s.cfg.Cluster, headers, nil, uint32(s.inFlightTimeout.Milliseconds()), cb); err != nil {
		s.fail(now, failures, "dispatch to cluster "+strconv.Quote(s.cfg.Cluster)+": "+err.Error(), false)
		return
	}
	s.inFlight = true
}

func header(headers [][2]string, name string) string {
	for _, h := range headers {
		if strings.EqualFold(h[0], name) {
			return h[1]
		}
	}
	return ""
}

// onResponse handles the reply on the VM that polled, then sends the next poll at once if it
// is due (a long poll reopened after its answer), without waiting for a tick.
func (s *Syncer) onResponse(seq uint32, numHeaders, bodySize, numTrailers int) {
	if seq != s.seq || !s.inFlight {
		s.log(abi.LogLevelDebug, "sync: ignoring the reply to a poll given up on")
		return
	}
	s.inFlight = false
	s.handleResponse(numHeaders, bodySize, numTrailers)
	if !s.inFlight {
		s.Tick()
	}
}

func (s *Syncer) handleResponse(numHeaders, bodySize, _ int) {
	now := s.o.Now()
	failures := s.currentFailures()
	snap, freshAt, readErr := s.reader.Reload()
	s.checkHeld(readErr)
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
		if !s.conditional || snap == nil || readErr != nil {
			s.resync = true
			s.fail(now, failures, "304 Not Modified, but the poll named no usable list (no since, no if-none-match)", true)
			return
		}
		s.m.notModified.Increment(1)
		if err := s.touch(now); err != nil {
			s.fail(now, failures, "record success: "+err.Error(), false)
			return
		}
		s.succeed(now, failures, freshAt, false)
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
		h, err := s.hasherForNextList()
		if err != nil {
			s.fail(now, failures, err.Error(), false)
			return
		}
		upd, err := ParseFeed(body, header(headers, "content-type"),
			FeedLimits{MaxEntries: s.cfg.MaxEntries, KeyedByIssuer: s.o.KeyedByIssuer, Hasher: h})
		if err != nil {
			s.fail(now, failures, err.Error(), true)
			return
		}
		etag := header(headers, "etag")
		if len(etag) > MaxVersionLen {
			etag = "" // too long to keep: the next poll simply does not ask for 304
		}
		changed := snap == nil || readErr != nil || upd.Version != snap.Version || etag != snap.ETag
		if err := s.apply(now, upd, h, etag); err != nil {
			if errors.Is(err, errResync) && !s.askedFull {
				s.m.resyncs.Increment(1)
				s.log(abi.LogLevelInfo, "sync: "+err.Error()+"; asking for a full snapshot")
				// At once, without counting a failure, but within the burst limit.
				s.scheduleAt(s.burstLimit(now), failures)
				return
			}
			if errors.Is(err, errResync) {
				s.fail(now, failures, err.Error()+", in answer to a poll that asked for a full snapshot", true)
				return
			}
			s.fail(now, failures, err.Error(), errors.Is(err, ErrBadFeed))
			return
		}
		s.succeed(now, failures, freshAt, changed)
	default:
		reason := "revocation source answered status " + strconv.Quote(status)
		if s.inFlightWait > 0 && strings.HasPrefix(status, "4") {
			// The next poll, after a failure, is a plain one: the list stays fresh meanwhile.
			reason += " to a long poll (wait=" + s.inFlightWait.String() +
				"); a source that refuses the wait parameter needs sync.watch.wait \"0s\""
		}
		s.fail(now, failures, reason, false)
	}
}

// hasherForNextList keeps the hash key of the shared data's lifetime: the key of the newest
// snapshot that could be decoded, or, when there is none, one drawn once by this VM.
func (s *Syncer) hasherForNextList() (Hasher, error) {
	if l := s.reader.latest; l != nil {
		return l.Hasher(), nil
	}
	if s.hasher.IsZero() {
		h, err := NewHasher()
		if err != nil {
			return Hasher{}, err
		}
		s.hasher = h
	}
	return s.hasher, nil
}

var errResync = errors.New("delta does not apply to the list held")

// apply turns an update into a new snapshot and publishes it: snapshot, IDs, then generation
// record (see layout.go). h is the hasher the update was parsed with.
func (s *Syncer) apply(now time.Time, upd *Update, h Hasher, etag string) error {
	snap, _, err := s.reader.Reload()
	if err != nil && !errors.Is(err, ErrNoList) {
		s.checkHeld(err)
		snap = nil // unusable: a snapshot may replace it, a delta may not apply to it
	}
	hadList := !errors.Is(err, ErrNoList) || snap != nil
	notBefore := clampSeconds(now.Add(-s.o.Grace))
	var list List
	switch upd.Kind {
	case KindSnapshot:
		list = upd.Add
		list.Normalize(notBefore)
	case KindDelta:
		if snap == nil || s.resync || snap.Version == "" || snap.Version != upd.Base || snap.Hasher() != h {
			s.resync = true
			return fmt.Errorf("%w (base %q)", errResync, upd.Base)
		}
		held, err := s.loadIDs(snap)
		if err != nil {
			s.resync = true
			return fmt.Errorf("%w: %w", errResync, err)
		}
		list = mergeDelta(held, upd, notBefore)
		// The names only grow with deltas (a delta does not say which names its removals
		// retire); past the bound, a full snapshot carries only the names still in use.
		list.Claims = slices.Clone(snap.Claims())
		for _, c := range upd.Add.Claims {
			if err := list.addClaimName([]byte(c)); err != nil {
				s.resync = true
				return fmt.Errorf("%w: %w", errResync, err)
			}
		}
	}
	if n := len(list.Entries) + len(list.Cutoffs); n > s.cfg.MaxEntries {
		return fmt.Errorf("%w: %d entries and cutoffs after applying, more than max_entries %d", ErrBadFeed, n, s.cfg.MaxEntries)
	}
	list.foldSharedKeys()
	if snap != nil {
		if err := s.guardShrink(snap.liveCount(notBefore), len(list.Entries)+len(list.Cutoffs)); err != nil {
			return err
		}
	}
	if err := s.publish(now, &list, upd.Version, etag, h); err != nil {
		return err
	}
	s.resync = false
	if !hadList && !s.firstLogged {
		s.firstLogged = true
		s.log(abi.LogLevelInfo, fmt.Sprintf("sync: first list received: %d entries, %d cutoffs, version %q",
			len(list.Entries), len(list.Cutoffs), upd.Version))
	}
	return nil
}

// guardShrink warns about, or refuses, a list that loses more than max_shrink of the live
// entries and cutoffs held: a source that lost its data must not silently unrevoke tokens.
func (s *Syncer) guardShrink(held, next int) error {
	removed := held - next
	if removed < minGuardedShrink || float64(removed) <= s.cfg.MaxShrink*float64(held) {
		return nil
	}
	s.m.largeShrinks.Increment(1)
	what := fmt.Sprintf("the new list holds %d entries and cutoffs, %d fewer than the %d held (%.0f%%, more than max_shrink %g)",
		next, removed, held, 100*float64(removed)/float64(held), s.cfg.MaxShrink)
	if s.cfg.RefuseShrink {
		return fmt.Errorf("%w: %w: %s; refused (refuse_shrink)", ErrBadFeed, ErrShrinkRefused, what)
	}
	s.log(abi.LogLevelWarn, "sync: "+what+"; publishing it (set refuse_shrink to keep the held list instead)")
	return nil
}

// loadIDs reads the IDs of snap, which only the lease holder needs (to merge).
func (s *Syncer) loadIDs(snap *Snapshot) (withIDs, error) {
	raw, _, err := s.o.Store.GetSharedData(s.o.Keys.IDs)
	if err != nil {
		return withIDs{}, fmt.Errorf("%w: %w", errBadIDs, err)
	}
	return attachIDs(snap, raw)
}

// publish writes list as the next generation.
func (s *Syncer) publish(now time.Time, list *List, version, etag string, h Hasher) error {
	gen := s.reader.gen.Number
	if l := s.reader.latest; l != nil {
		gen = max(gen, l.Generation)
	}
	gen++
	enc, err := list.Encode(Meta{Generation: gen, Built: now, Version: version, ETag: etag, KeyedByIssuer: s.o.KeyedByIssuer, Hasher: h})
	if err != nil {
		return err
	}
	if err := s.o.Store.SetSharedData(s.o.Keys.Snapshot, enc.Snapshot, s.reader.latestCAS); err != nil {
		if errors.Is(err, types.ErrorStatusCasMismatch) {
			// Another VM wrote the snapshot since this one read it, possibly under the same
			// generation number (two holders for one tick at start-up): read what is there, so
			// that the next poll applies to it and writes over it with its CAS.
			s.reader.Invalidate()
		}
		return fmt.Errorf("write snapshot: %w", err)
	}
	// The IDs go second, only once the snapshot's CAS succeeded, so a writer that lost the
	// race leaves the winner's IDs alone. Whatever interleaving remains (unconditional first
	// writes, a VM stopped between the two) leaves IDs whose build ID is not the snapshot's:
	// the next merge sees that and resyncs, never merges wrongly.
	if err := s.o.Store.SetSharedData(s.o.Keys.IDs, enc.IDs, 0); err != nil {
		return fmt.Errorf("write ids: %w", err)
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
	s.reader.Reload() // adopt our own snapshot (and its CAS) for the next delta
	return nil
}

// touch records a successful poll that changed nothing; now and then it also compacts the
// list, dropping expired entries.
func (s *Syncer) touch(now time.Time) error {
	snap := s.reader.Snapshot()
	if now.Sub(snap.Built) > compactEvery {
		held, err := s.loadIDs(snap)
		if err == nil {
			list := held.list()
			list.Normalize(clampSeconds(now.Add(-s.o.Grace)))
			return s.publish(now, &list, snap.Version, snap.ETag, snap.Hasher())
		}
		s.resync = true // the list stays as it is; the next poll replaces it whole
		s.log(abi.LogLevelWarn, "sync: cannot compact the list ("+err.Error()+"); asking for a full snapshot next")
	}
	number := snap.Generation
	return s.updateGeneration(func(cur *Generation) bool {
		if cur.Number != number {
			return false // a newer list was published meanwhile; its own time stands
		}
		cur.LastSuccess = now
		return true
	})
}

// updateGeneration applies change to the generation record under CAS (UpdateShared); a
// record that cannot be read is changed as an empty one.
func (s *Syncer) updateGeneration(change func(*Generation) bool) error {
	_, err := UpdateShared(s.o.Store, s.o.Keys.Generation, func(raw []byte, _ bool) []byte {
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

// mergeDelta applies a delta to the held list in one linear pass. Entries are matched on
// (key, ID), never on the key alone: removing one of two entries whose keys collide leaves
// the other.
func mergeDelta(held withIDs, upd *Update, notBefore uint32) List {
	adds := normalizeEntries(upd.Add.Entries, 0)
	removed := slices.SortedFunc(slices.Values(upd.Remove), func(a, b Ref) int {
		return compareEntries(Entry{Key: a.Key, ID: a.ID}, Entry{Key: b.Key, ID: b.ID})
	})
	n := held.snap.Len()
	out := make([]Entry, 0, n+len(adds))
	i, r := 0, 0
	// emit is called in ascending (key, ID) order, so the sorted removals are walked alongside.
	emit := func(e Entry) {
		for r < len(removed) && pairLess(removed[r].Key, removed[r].ID, e.Key, e.ID) {
			r++
		}
		if r < len(removed) && removed[r] == (Ref{e.Key, e.ID}) {
			return
		}
		if live(e.Exp, notBefore) {
			out = append(out, e)
		}
	}
	for j := 0; j < n; j++ {
		e := held.entry(j)
		for ; i < len(adds) && compareEntries(adds[i], e) < 0; i++ {
			emit(adds[i])
		}
		if i < len(adds) && adds[i].Key == e.Key && adds[i].ID == e.ID {
			e.Exp = laterExp(e.Exp, adds[i].Exp)
			i++
		}
		emit(e)
	}
	for ; i < len(adds); i++ {
		emit(adds[i])
	}

	cuts := make(map[Ref]Cutoff, held.snap.Cutoffs()+len(upd.Add.Cutoffs))
	for j := 0; j < held.snap.Cutoffs(); j++ {
		c := held.cutoff(j)
		cuts[Ref{c.Key, c.ID}] = c
	}
	for _, r := range upd.RemoveCutoffs {
		delete(cuts, r)
	}
	for _, c := range upd.Add.Cutoffs {
		cuts[Ref{c.Key, c.ID}] = c // an added cutoff replaces the one held
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

// succeed resets the backoff; after failures it says how long the list went without a sync.
// changed is whether the answer brought a list other than the one held.
//
// With the long poll on, the next poll, a long poll, is sent at once after a change, after a
// long poll the source held (for at least half its wait), and after a plain poll (the first,
// or one after a failure) that it replaces. After an early answer without a change it is due
// one interval after this poll started, as without the long poll: a source that ignores wait
// is polled once per interval, no more. Polls sent at once are limited to watchBurst per
// interval, in bursts of watchBurst.
func (s *Syncer) succeed(now time.Time, failures uint32, freshBefore time.Time, changed bool) {
	s.m.successes.Increment(1)
	if failures > 0 {
		since := "there was no list before"
		if !freshBefore.IsZero() {
			since = "the list had not been synced for " + now.Sub(freshBefore).Round(time.Millisecond).String()
		}
		s.log(abi.LogLevelInfo, fmt.Sprintf("sync: recovered after %d failed polls; %s", failures, since))
	}
	s.reader.Reload() // the success just recorded is the list's new age, which bounds the wait
	if s.watchWait(now) == 0 {
		s.scheduleAt(now.Add(s.jitter(s.cfg.Interval.D())), 0)
		return
	}
	next := now
	if early := now.Sub(s.inFlightSince) < s.inFlightWait/2; early && !changed {
		// Answered early without a change: the source may ignore wait. Keep the plain poll's
		// pace, counted from this poll's start, so a source that holds polls for less than
		// half the wait but longer than the interval is still watched without a gap.
		next = s.inFlightSince.Add(s.jitter(s.cfg.Interval.D()))
	}
	if next.Equal(now) {
		next = s.burstLimit(now)
	}
	s.scheduleAt(next, 0)
}

// fail counts a failure and backs off: the retry waits interval × 2^(failures-1), capped at
// max_backoff. The list in shared data is untouched. While the list is unusable (none, or
// older than max_staleness), or would become so before that retry, the retry comes at least
// once per interval instead: a fail-closed filter answers 503 meanwhile, and must stop as
// soon as the source is back.
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
	next := now.Add(s.jitter(delay))
	snap, freshAt := s.reader.Snapshot(), s.reader.freshAt
	staleAt := freshAt.Add(s.o.MaxStaleness)
	state := "keeping the last good list"
	switch {
	case snap == nil:
		state = "no list yet"
		staleAt = time.Time{}
	case s.o.MaxStaleness <= 0:
		staleAt = next // never stale: the backoff stands
	case !staleAt.After(now):
		state = "keeping the last good list, stale for " + now.Sub(staleAt).Round(time.Millisecond).String()
	}
	if staleAt.Before(next) {
		// At least once per interval from the start of the poll that failed (a timeout may
		// have eaten much of it), and not before the list actually goes stale.
		retry := s.inFlightSince.Add(s.shorterJitter(s.cfg.Interval.D()))
		if staleAt.After(retry) {
			retry = staleAt
		}
		if retry.Before(now) {
			retry = now
		}
		if retry.Before(next) {
			next = retry
		}
	}
	s.log(abi.LogLevelWarn, fmt.Sprintf("sync: poll failed (%d in a row), %s, retry in %s: %s",
		failures, state, next.Sub(now).Round(time.Millisecond), reason))
	s.scheduleAt(next, failures)
}

// burstLimit returns when a poll wanted at once may start: now, or later when watchBurst
// polls went out at once in quick succession; the pace is then one per interval / watchBurst.
func (s *Syncer) burstLimit(now time.Time) time.Time {
	step := s.cfg.Interval.D() / watchBurst
	at := now
	if earliest := s.burstTAT.Add(-(watchBurst - 1) * step); earliest.After(at) {
		at = earliest
	}
	s.burstTAT = maxTime(s.burstTAT, at).Add(step)
	return at
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

func (s *Syncer) scheduleAt(due time.Time, failures uint32) {
	if err := updateSchedule(s.o.Store, s.o.Keys.Lease, s.o.HolderID, due, failures); err != nil {
		s.log(abi.LogLevelError, "sync: write schedule: "+err.Error())
	}
}

// shorterJitter spreads d by up to the jitter fraction, downwards only: a bound of "at least
// once per interval" holds whatever the draw.
func (s *Syncer) shorterJitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (1 - s.cfg.Jitter*s.o.Rand()))
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
