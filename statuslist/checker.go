package statuslist

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
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

// Host is blocklistsync's: HTTP callouts, logs and metrics. The filter's hostCalls serves both.
type Host = blocklistsync.Host

// SharedData is blocklistsync's: the host's shared key-value store with Envoy's CAS rules.
type SharedData = blocklistsync.SharedData

// KeySource gives the key set that verifies a list's tokens, at each fetch. An entry's inline
// keys (*ListConfig) are one; a remote JWKS kept fresh by its own syncer will be another,
// returning nil until its first key set arrived (a fetch then fails and is retried).
type KeySource interface {
	KeySet() *jwtverify.KeySet
}

// Options wire a Checker to its host.
type Options struct {
	// Prefix is the filter's prefix: of the shared-data keys and of the metric names.
	Prefix string
	Store  SharedData
	Host   Host
	Now    func() time.Time
	// Leeway widens a list token's iat, nbf and exp checks and its expiry: the filter's
	// jwt.leeway, but at least MinLeeway.
	Leeway time.Duration
	// KeySource, when set, may give an entry another source of keys than its inline ones
	// (a remote JWKS); returning nil keeps the inline keys.
	KeySource func(entry int, l *ListConfig) KeySource
	// HolderID names this VM in the leases; 0 picks a random one.
	HolderID uint64
	// Rand returns a float in [0,1) for jitter; nil uses math/rand/v2.
	Rand func() float64
}

// MinLeeway is the least clock leeway a Status List Token gets: it is signed by another
// party's clock and fetched seconds later, so an issuer a second ahead would otherwise see
// every fresh list refused as "not yet valid (iat)". It also lets a list be used this long past
// its exp.
const MinLeeway = 30 * time.Second

// Timing of the directory and the fetches.
const (
	// fastTick is the tick period a Checker asks for while a list it needs is on its way.
	fastTick = 100 * time.Millisecond
	slowTick = time.Second
	// startupWindow is how long after a list was first named the fast ticks go on.
	startupWindow = 30 * time.Second
	// evictIdle: a slot unused this long may be given to another uri.
	evictIdle = 10 * time.Minute
	// evictGrace: a slot whose list is not usable may be given to another uri once it was
	// added and last used this long ago, so a flood of uris cannot starve one being fetched.
	evictGrace = 30 * time.Second
	// usedEvery is how often a VM writes that it used a slot into the directory.
	usedEvery = time.Minute
	// pendingTTL: a uri that found no slot is forgotten after this (asked again by the next
	// token that names it).
	pendingTTL = time.Minute
	// maxRedirects bounds the 3xx responses followed in one fetch (RFC 9110 15.4 warns of loops).
	maxRedirects = 3
	// leaseSlack is added to the timeout for the lease TTL.
	leaseSlack = 5 * time.Second
)

// Checker checks Referenced Tokens against status lists kept in shared data. One per worker
// VM: Tick on every proxy_on_tick, Check (or Evaluate) on the request path. It is not safe for
// concurrent use; a VM runs one callback at a time.
type Checker struct {
	cfg     *Config
	o       Options
	dirKey  string
	sources []KeySource // per configured entry

	slots   []slot
	index   map[string]int // uri → slot, for the slots this configuration allows
	dirRaw  []byte         // the directory as last decoded
	dirUsed []time.Time    // last-used times the directory holds, per slot

	pending map[string]time.Time // uris named by tokens that have no slot yet → when first named

	counts counts
	m      metrics
	logged map[string]time.Time // throttled log lines → when last written
}

// slot is this VM's view of one directory slot.
type slot struct {
	uri       string
	entry     int // index in cfg.Lists; -1 when this configuration does not allow uri
	id        ID
	keys      slotKeys
	firstSeen time.Time

	held      bool
	list      List
	m         meta
	failedGen uint64 // generation record whose list could not be adopted (not retried until it moves)

	usedAt        time.Time
	inFlight      bool
	inFlightSince time.Time
	lastHop       string // the uri the last redirect led to
	firstLogged   bool
}

// counts are the request path's counters, handed to the host on Tick.
type counts struct {
	valid, invalid, suspended, other, unavailable, notAllowed, outOfRange, malformed uint64
}

type metrics struct {
	valid, invalid, suspended, other, unavailable, notAllowed, outOfRange, malformed abi.Counter
	fetches, failures, rejected, published, directoryFull                            abi.Counter
}

// NewChecker returns a Checker for cfg (from ParseConfig). It touches no shared data and makes
// no callout: Envoy also runs proxy_on_configure on a VM it discards at once, which must not
// hold a lease. The first Tick starts the work.
func NewChecker(cfg *Config, o Options) *Checker {
	if o.HolderID == 0 {
		var b [8]byte
		_, _ = rand.Read(b[:])
		o.HolderID = binary.LittleEndian.Uint64(b[:]) | 1
	}
	if o.Rand == nil {
		o.Rand = mrand.Float64
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	o.Leeway = max(o.Leeway, MinLeeway)
	c := &Checker{
		cfg:     cfg,
		o:       o,
		dirKey:  dirKey(o.Prefix),
		slots:   make([]slot, cfg.MaxLists),
		dirUsed: make([]time.Time, cfg.MaxLists),
		index:   make(map[string]int, cfg.MaxLists),
		pending: make(map[string]time.Time),
		logged:  make(map[string]time.Time),
	}
	for i := range cfg.Lists {
		l := &cfg.Lists[i]
		var src KeySource = l
		if o.KeySource != nil {
			if s := o.KeySource(i, l); s != nil {
				src = s
			}
		}
		c.sources = append(c.sources, src)
		if l.URI != "" {
			c.pending[l.URI] = time.Time{} // exact uris are fetched from the start
		}
	}
	for i := range c.slots {
		c.slots[i] = slot{entry: -1, keys: keysFor(o.Prefix, i)}
	}
	m := func(n string) abi.Counter { return o.Host.DefineCounter(o.Prefix + "statuslist." + n) }
	c.m = metrics{
		valid: m("checks.valid"), invalid: m("checks.invalid"), suspended: m("checks.suspended"),
		other: m("checks.other"), unavailable: m("checks.unavailable"), notAllowed: m("checks.not_allowed"),
		outOfRange: m("checks.out_of_range"), malformed: m("checks.malformed"),
		fetches: m("fetches"), failures: m("fetch_failures"), rejected: m("tokens_rejected"),
		published: m("lists_published"), directoryFull: m("directory_full"),
	}
	return c
}

// Check returns the status of idx in the list uri names, as this VM holds it. It reads no
// shared data and allocates nothing, except the first time this VM sees an allowed uri that
// has no slot yet: it then remembers to place it (on the next Tick) and answers ErrUnavailable.
//
// Errors: ErrNotAllowed (no entry allows uri), ErrUnavailable (allowed, but no usable list is
// held: never fetched, expired past exp plus the leeway, or not fetched successfully for
// max_age), ErrOutOfRange.
func (c *Checker) Check(uri string, idx uint64, now time.Time) (Status, error) {
	i, ok := c.index[uri]
	if !ok {
		if !c.cfg.allowed(uri) {
			c.counts.notAllowed++
			return 0, ErrNotAllowed
		}
		c.want(uri, now)
		c.counts.unavailable++
		return 0, ErrUnavailable
	}
	s := &c.slots[i]
	s.usedAt = now
	if !c.usable(s, now) {
		c.counts.unavailable++
		return 0, ErrUnavailable
	}
	st, err := s.list.At(idx)
	if err != nil {
		c.counts.outOfRange++
		return 0, err
	}
	switch st {
	case Valid:
		c.counts.valid++
	case Invalid:
		c.counts.invalid++
	case Suspended:
		c.counts.suspended++
	default:
		c.counts.other++
	}
	return st, nil
}

// Action is what the filter does with a token, from its status.
type Action uint8

// Actions, from the mildest to the strongest: Evaluate returns the strongest over all
// references of a payload.
const (
	// Pass: every reference is VALID, or a policy allows it.
	Pass Action = iota
	// Unavailable: a list is not held; the filter's fail_mode decides (closed: its unavailable
	// reply; open: the request goes on).
	Unavailable
	// Deny: the filter refuses the token with Verdict.Message (its invalid reply).
	Deny
	// Revoke: the filter answers its revoked reply.
	Revoke
)

// Verdict is Evaluate's answer.
type Verdict struct {
	Action Action
	// Message explains a Deny; constant strings, never the uri or a claim.
	Message string
}

// Messages of Deny verdicts.
const (
	MsgNotAllowed = "Token status list is not trusted"
	MsgMalformed  = "Token status reference is malformed"
	MsgTooMany    = "Token carries too many status references"
	MsgOutOfRange = "Token status index is out of range"
	MsgSuspended  = "Token is suspended"
	MsgStatus     = "Token status is not accepted"
)

// Evaluate checks every reference of a payload and applies the configured policies: INVALID
// revokes; SUSPENDED and other statuses follow suspended and other_status; a uri no entry
// allows and a malformed reference follow unknown_list; an index out of range is denied
// (section 8.3); a list not held is Unavailable. It allocates nothing (see Check).
func (c *Checker) Evaluate(r *Refs, now time.Time) Verdict {
	v := Verdict{}
	worse := func(w Verdict) {
		if w.Action > v.Action {
			v = w
		}
	}
	if r.Overflow {
		c.counts.malformed++
		worse(Verdict{Deny, MsgTooMany})
	}
	if r.Malformed {
		c.counts.malformed++
		worse(c.policy(c.cfg.UnknownList, MsgMalformed))
	}
	for i := 0; i < r.n; i++ {
		ref := &r.refs[i]
		st, err := c.Check(ref.URI, ref.Idx, now)
		switch {
		case errors.Is(err, ErrNotAllowed):
			worse(c.policy(c.cfg.UnknownList, MsgNotAllowed))
		case errors.Is(err, ErrUnavailable):
			worse(Verdict{Action: Unavailable})
		case err != nil: // ErrOutOfRange
			worse(Verdict{Deny, MsgOutOfRange})
		case st == Valid:
		case st == Invalid:
			worse(Verdict{Action: Revoke})
		case st == Suspended:
			worse(c.policy(c.cfg.Suspended, MsgSuspended))
		default:
			worse(c.policy(c.cfg.OtherStatus, MsgStatus))
		}
	}
	return v
}

func (c *Checker) policy(p Policy, msg string) Verdict {
	switch p {
	case PolicyAllow:
		return Verdict{}
	case PolicyRevoked:
		return Verdict{Action: Revoke}
	}
	return Verdict{Deny, msg}
}

// usable is the precise rule of "a list this VM can answer from": one is held, it has not
// expired (exp plus the leeway), and its last successful fetch is at most max_age old.
func (c *Checker) usable(s *slot, now time.Time) bool {
	if !s.held {
		return false
	}
	if !s.m.exp.IsZero() && !now.Before(s.m.exp.Add(c.o.Leeway)) {
		return false
	}
	return c.cfg.MaxAge == 0 || now.Sub(s.m.fetched) <= c.cfg.MaxAge.D()
}

// usableUntil is when a held list stops being usable, if nothing is fetched.
func (c *Checker) usableUntil(s *slot) time.Time {
	var t time.Time
	if !s.m.exp.IsZero() {
		t = s.m.exp.Add(c.o.Leeway)
	}
	if c.cfg.MaxAge != 0 {
		if a := s.m.fetched.Add(c.cfg.MaxAge.D()); t.IsZero() || a.Before(t) {
			t = a
		}
	}
	return t
}

// want remembers an allowed uri that has no slot, bounded: a flood of uris costs at most
// maxPending entries, each forgotten after pendingTTL.
func (c *Checker) want(uri string, now time.Time) {
	if _, ok := c.pending[uri]; ok {
		return
	}
	if len(c.pending) >= c.maxPending() {
		return
	}
	c.pending[strings.Clone(uri)] = now
}

func (c *Checker) maxPending() int { return max(2*c.cfg.MaxLists, 16) }

// TickPeriod is the tick period the Checker wants now: fast while a list it was asked for is
// on its way, so the first requests that name a new list wait one fetch, not one second more.
func (c *Checker) TickPeriod() time.Duration {
	if len(c.pending) > 0 {
		return fastTick
	}
	now := c.o.Now()
	for i := range c.slots {
		s := &c.slots[i]
		if s.entry >= 0 && !c.usable(s, now) && now.Sub(s.firstSeen) < startupWindow {
			return fastTick
		}
	}
	return slowTick
}

// Tick reads the directory and every slot's generation record, places uris tokens named,
// fetches the lists whose lease this VM holds and that are due, and hands counters to the
// host. Every worker VM ticks.
func (c *Checker) Tick() {
	now := c.o.Now()
	c.readDir(now)
	c.place(now)
	for i := range c.slots {
		if c.slots[i].entry < 0 {
			continue
		}
		c.refresh(i)
		c.schedule(i, now)
	}
	c.recordUse(now)
	c.flush()
}

// sharedDataViewer is a SharedData that can lend a value for the current callback instead of
// copying it (internal/abi on wasip1).
type sharedDataViewer interface {
	GetSharedDataView(key string) ([]byte, uint32, error)
}

func (c *Checker) view(key string) ([]byte, uint32, error) {
	if v, ok := c.o.Store.(sharedDataViewer); ok {
		return v.GetSharedDataView(key)
	}
	return c.o.Store.GetSharedData(key)
}

// readDir adopts the directory when it changed.
func (c *Checker) readDir(now time.Time) {
	raw, _, err := c.view(c.dirKey)
	if errors.Is(err, types.ErrorStatusNotFound) || err == nil && len(raw) == 0 {
		raw = nil
	} else if err != nil {
		c.logEvery("dir-read", abi.LogLevelError, "status list: read the directory: "+err.Error())
		return
	}
	if bytes.Equal(raw, c.dirRaw) && (raw != nil || c.dirRaw != nil) {
		return
	}
	slots, err := c.decodeDir(raw)
	if err != nil {
		c.logEvery("dir-bad", abi.LogLevelWarn, "status list: "+err.Error()+"; it will be rewritten")
	}
	c.dirRaw = append(c.dirRaw[:0], raw...)
	c.applyDir(slots, now)
}

func (c *Checker) decodeDir(raw []byte) ([]dirSlot, error) {
	if raw == nil {
		return nil, nil
	}
	return decodeDir(raw)
}

// applyDir makes the local view match the directory: a slot whose uri changed loses its list.
func (c *Checker) applyDir(slots []dirSlot, now time.Time) {
	clear(c.index)
	for i := range c.slots {
		var d dirSlot
		if i < len(slots) {
			d = slots[i]
		}
		c.dirUsed[i] = d.lastUsed
		s := &c.slots[i]
		if s.uri != d.uri {
			*s = slot{uri: d.uri, entry: -1, keys: s.keys, firstSeen: now}
			if d.uri != "" {
				if e := c.entryOf(d.uri); e >= 0 {
					s.entry = e
					s.id = listID(d.uri, c.cfg.Lists[e].fingerprint)
				}
			}
		}
		if s.entry >= 0 {
			c.index[s.uri] = i
			delete(c.pending, s.uri)
		}
	}
}

// entryOf is the configured entry that allows uri, or -1.
func (c *Checker) entryOf(uri string) int {
	if i := c.cfg.exactIndex(uri); i >= 0 {
		return i
	}
	return c.cfg.prefixIndex(uri)
}

// place writes the uris tokens named (and the exact uris at start) into free or evictable
// slots of the directory, with CAS; those that find none wait, counted in directory_full.
func (c *Checker) place(now time.Time) {
	if len(c.pending) == 0 {
		return
	}
	for uri, since := range c.pending {
		if !since.IsZero() && now.Sub(since) > pendingTTL {
			delete(c.pending, uri)
		}
	}
	raw, cas, err := c.o.Store.GetSharedData(c.dirKey)
	if errors.Is(err, types.ErrorStatusNotFound) {
		raw, cas = nil, 0
	} else if err != nil {
		c.logEvery("dir-read", abi.LogLevelError, "status list: read the directory: "+err.Error())
		return
	}
	slots, err := c.decodeDir(raw)
	if err != nil {
		slots = nil // a broken directory is replaced whole
	}
	for len(slots) < c.cfg.MaxLists {
		slots = append(slots, dirSlot{})
	}
	uris := make([]string, 0, len(c.pending))
	for uri := range c.pending {
		uris = append(uris, uri)
	}
	// Exact uris first (they may evict any slot a token's uri took), then the oldest demand.
	slices.SortFunc(uris, func(a, b string) int {
		pa, pb := c.cfg.exactIndex(a) >= 0, c.cfg.exactIndex(b) >= 0
		if pa != pb {
			if pa {
				return -1
			}
			return 1
		}
		if d := c.pending[a].Compare(c.pending[b]); d != 0 {
			return d
		}
		return strings.Compare(a, b)
	})
	changed := false
	var evicted []int
	for _, uri := range uris {
		if slices.ContainsFunc(slots[:c.cfg.MaxLists], func(d dirSlot) bool { return d.uri == uri }) {
			continue
		}
		i := c.slotFor(slots, uri, now)
		if i < 0 {
			c.m.directoryFull.Increment(1)
			c.logEvery("dir-full", abi.LogLevelWarn, fmt.Sprintf(
				"status list: no free slot for %q: max_lists %d lists are in use; tokens naming it are answered as unavailable",
				uri, c.cfg.MaxLists))
			continue
		}
		if slots[i].uri != "" {
			evicted = append(evicted, i)
		}
		slots[i] = dirSlot{uri: uri, added: now, lastUsed: now}
		changed = true
	}
	if !changed {
		return
	}
	enc := encodeDir(slots)
	if err := c.o.Store.SetSharedData(c.dirKey, enc, cas); err != nil {
		if !errors.Is(err, types.ErrorStatusCasMismatch) {
			c.logEvery("dir-write", abi.LogLevelError, "status list: write the directory: "+err.Error())
		}
		return // another VM moved first: look again next tick
	}
	for _, i := range evicted {
		// Shared data has no delete; an empty value frees the evicted list's memory.
		k := keysFor(c.o.Prefix, i)
		_ = c.o.Store.SetSharedData(k.list, nil, 0)
		_ = c.o.Store.SetSharedData(k.gen, nil, 0)
	}
	c.dirRaw = append(c.dirRaw[:0], enc...)
	c.applyDir(slots, now)
}

// slotFor picks the slot for uri: a free one, else the least recently used slot that may be
// evicted (see evictable), else -1.
func (c *Checker) slotFor(slots []dirSlot, uri string, now time.Time) int {
	pinned := c.cfg.exactIndex(uri) >= 0
	best := -1
	for i := range slots[:c.cfg.MaxLists] {
		d := &slots[i]
		if d.uri == "" {
			return i
		}
		if c.cfg.exactIndex(d.uri) >= 0 || !(pinned || c.evictable(i, d, now)) {
			continue
		}
		if best < 0 || d.lastUsed.Before(slots[best].lastUsed) {
			best = i
		}
	}
	return best
}

// evictable: a slot this configuration does not allow; one unused for evictIdle; or one whose
// list is not usable here, added and last used at least evictGrace ago. A list in use is never
// taken from its tokens by a flood of others.
func (c *Checker) evictable(i int, d *dirSlot, now time.Time) bool {
	if c.entryOf(d.uri) < 0 || now.Sub(d.lastUsed) >= evictIdle {
		return true
	}
	s := &c.slots[i]
	usable := s.uri == d.uri && c.usable(s, now)
	return !usable && now.Sub(d.added) >= evictGrace && now.Sub(d.lastUsed) >= evictGrace
}

// recordUse writes into the directory, at most every usedEvery per slot, that this VM used a
// slot: eviction picks the slots no VM uses.
func (c *Checker) recordUse(now time.Time) {
	stale := false
	for i := range c.slots {
		s := &c.slots[i]
		if s.entry >= 0 && s.usedAt.Sub(c.dirUsed[i]) >= usedEvery {
			stale = true
			break
		}
	}
	if !stale {
		return
	}
	raw, cas, err := c.o.Store.GetSharedData(c.dirKey)
	if err != nil {
		return
	}
	slots, err := decodeDir(raw)
	if err != nil {
		return
	}
	for i := range slots[:min(len(slots), len(c.slots))] {
		if s := &c.slots[i]; s.uri == slots[i].uri && s.usedAt.After(slots[i].lastUsed) {
			slots[i].lastUsed = s.usedAt
		}
	}
	enc := encodeDir(slots)
	if c.o.Store.SetSharedData(c.dirKey, enc, cas) == nil {
		c.dirRaw = append(c.dirRaw[:0], enc...)
		for i := range slots[:min(len(slots), len(c.slots))] {
			c.dirUsed[i] = slots[i].lastUsed
		}
	}
}

// refresh adopts a slot's newer list, or the newer times of the list held.
func (c *Checker) refresh(i int) {
	s := &c.slots[i]
	raw, _, err := c.view(s.keys.gen)
	if err != nil || len(raw) == 0 {
		return
	}
	g, err := decodeGen(raw)
	if err != nil || g.id != s.id {
		return
	}
	if s.held && g.generation == s.m.generation {
		if g.nonce == s.m.nonce && !g.fetched.Before(s.m.fetched) {
			s.m.fetched, s.m.exp, s.m.iat = g.fetched, g.exp, g.iat
		}
		return
	}
	if s.held && g.generation < s.m.generation || g.generation == s.failedGen {
		return
	}
	rec, _, err := c.o.Store.GetSharedData(s.keys.list)
	if err != nil {
		return
	}
	m, list, err := decodeList(rec)
	switch {
	case err != nil, m.id != s.id, s.held && m.generation <= s.m.generation:
		s.failedGen = g.generation
		return
	case len(list) > c.cfg.MaxListBytes:
		s.failedGen = g.generation
		c.logEvery("too-large-"+s.uri, abi.LogLevelWarn, fmt.Sprintf(
			"status list %q in shared data holds %d bytes, more than max_list_bytes %d; not used", s.uri, len(list), c.cfg.MaxListBytes))
		return
	}
	if m.generation == g.generation && m.nonce == g.nonce && g.fetched.After(m.fetched) {
		m.fetched, m.exp, m.iat = g.fetched, g.exp, g.iat
	}
	s.held, s.list, s.m, s.failedGen = true, List{Bits: m.bits, Bytes: list}, m, 0
}

// schedule takes or renews the slot's lease and fetches when due.
func (c *Checker) schedule(i int, now time.Time) {
	s := &c.slots[i]
	if s.inFlight && now.Sub(s.inFlightSince) > c.cfg.Timeout.D()+leaseSlack {
		// Envoy always answers a callout, if only with a timeout; this guards against a host
		// that lost one.
		s.inFlight = false
		c.logEvery("lost-"+s.uri, abi.LogLevelWarn, fmt.Sprintf("status list %q: no reply to the last fetch; fetching again", s.uri))
	}
	l, held, err := c.acquire(s, now)
	if err != nil {
		c.logEvery("lease", abi.LogLevelError, "status list: lease: "+err.Error())
		return
	}
	if !held || s.inFlight || now.Before(l.nextDue) {
		return
	}
	rt, ok := c.cfg.routeOf(s.uri)
	if !ok {
		return
	}
	c.dispatch(i, s.uri, rt, 0, now)
}

// acquire takes or renews slot s's lease for this VM; a lease of another list (the slot was
// reused) starts a fresh schedule, due now.
func (c *Checker) acquire(s *slot, now time.Time) (lease, bool, error) {
	raw, cas, err := c.o.Store.GetSharedData(s.keys.lease)
	var cur lease
	switch {
	case errors.Is(err, types.ErrorStatusNotFound):
		cas = 0
	case err != nil:
		return lease{}, false, err
	default:
		if cur, err = parseLease(raw); err != nil {
			cur = lease{} // a broken record is a free lease
		}
	}
	if cur.holder != 0 && cur.holder != c.o.HolderID && now.Before(cur.expires) && cur.id == s.id {
		return cur, false, nil
	}
	next := cur
	if cur.id != s.id {
		next = lease{id: s.id, nextDue: now}
	}
	next.holder, next.expires = c.o.HolderID, now.Add(c.cfg.Timeout.D()+leaseSlack)
	if err := c.o.Store.SetSharedData(s.keys.lease, next.marshal(), cas); err != nil {
		if errors.Is(err, types.ErrorStatusCasMismatch) {
			return cur, false, nil
		}
		return lease{}, false, err
	}
	return next, true, nil
}

// dispatch sends one GET for the list of slot i (uri) to rt; hops counts redirects followed.
func (c *Checker) dispatch(i int, uri string, rt route, hops int, now time.Time) {
	s := &c.slots[i]
	headers := [][2]string{
		{":method", "GET"}, {":path", rt.path}, {":authority", rt.list.Authority},
		{"accept", "application/statuslist+jwt"},
	}
	id := s.id
	if hops == 0 {
		c.m.fetches.Increment(1)
	}
	s.inFlight, s.inFlightSince = true, now
	cb := func(numHeaders, bodySize, _ int) { c.onResponse(i, id, uri, hops, numHeaders, bodySize) }
	if _, err := c.o.Host.DispatchHTTPCall(rt.list.Cluster, headers, nil, uint32(c.cfg.Timeout.D().Milliseconds()), cb); err != nil {
		s.inFlight = false
		c.fail(i, now, fmt.Sprintf("dispatch to cluster %q: %v", rt.list.Cluster, err), false)
	}
}

// onResponse handles a fetch's reply on the VM that sent it.
func (c *Checker) onResponse(i int, id ID, uri string, hops, numHeaders, bodySize int) {
	s := &c.slots[i]
	if s.id != id || s.uri != uri {
		return // the slot was given to another list meanwhile
	}
	s.inFlight = false
	now := c.o.Now()
	if numHeaders == 0 {
		c.fail(i, now, "no response (connection reset or timeout)", false)
		return
	}
	headers, err := c.o.Host.GetHTTPCallResponseHeaders()
	if err != nil {
		c.fail(i, now, "read response headers: "+err.Error(), false)
		return
	}
	status := header(headers, ":status")
	switch status {
	case "301", "302", "303", "307", "308":
		loc := header(headers, "location")
		target, ok := resolveRedirect(hopURI(uri, hops, s), loc)
		if !ok || hops >= maxRedirects {
			c.fail(i, now, fmt.Sprintf("redirect %s to %q not followed (absolute or path-absolute locations only, at most %d)", status, loc, maxRedirects), false)
			return
		}
		rt, ok := c.cfg.routeOf(target)
		if !ok {
			c.fail(i, now, fmt.Sprintf("redirect %s to %q, which no status_list.lists entry allows", status, target), false)
			return
		}
		s.redirectTo(target)
		c.dispatch(i, uri, rt, hops+1, now)
		return
	}
	if len(status) != 3 || status[0] != '2' {
		c.fail(i, now, "answered status "+strconv.Quote(status), false)
		return
	}
	if bodySize > c.cfg.MaxBodyBytes {
		c.fail(i, now, fmt.Sprintf("%v: response of %d bytes exceeds max_body_bytes %d", ErrTooLarge, bodySize, c.cfg.MaxBodyBytes), true)
		return
	}
	if ct := strings.ToLower(header(headers, "content-type")); strings.HasPrefix(ct, "application/statuslist+cwt") {
		c.fail(i, now, "served a CWT (application/statuslist+cwt); only JWT status lists are read", true)
		return
	}
	if ce := header(headers, "content-encoding"); ce != "" && !strings.EqualFold(ce, "identity") {
		c.fail(i, now, "served with content-encoding "+strconv.Quote(ce)+" (the callout asks for none)", true)
		return
	}
	var body []byte
	if bodySize > 0 {
		if body, err = c.o.Host.GetHTTPCallResponseBody(0, bodySize); err != nil {
			c.fail(i, now, "read response body: "+err.Error(), false)
			return
		}
	}
	ks := c.sources[s.entry].KeySet()
	if ks == nil {
		c.fail(i, now, "its signing keys are not available yet", false)
		return
	}
	tok, err := ParseToken(body, TokenOptions{URI: uri, Keys: ks, Leeway: c.o.Leeway, MaxListBytes: c.cfg.MaxListBytes, Now: c.o.Now})
	if err != nil {
		c.fail(i, now, err.Error(), true)
		return
	}
	if !s.m.iat.IsZero() && tok.IssuedAt.Before(s.m.iat) {
		// A replayed or stale copy (a CDN edge behind) must not undo a revocation the held
		// list already shows, and no more once the held list has aged past max_age: an
		// endpoint that fails until then and serves an old copy must not get it taken. The
		// list stays unusable (fail_mode) until one at least as new comes.
		c.fail(i, now, fmt.Sprintf("served a list issued at %s, older than the one held (%s); keeping the held one",
			tok.IssuedAt.UTC().Format(time.RFC3339), s.m.iat.UTC().Format(time.RFC3339)), true)
		return
	}
	if err := c.publish(i, tok, now); err != nil {
		c.fail(i, now, "publish: "+err.Error(), false)
		return
	}
	c.succeed(i, tok, now)
}

// hopURI is the uri the current hop fetched, for resolving a relative redirect.
func hopURI(uri string, hops int, s *slot) string {
	if hops == 0 || s.lastHop == "" {
		return uri
	}
	return s.lastHop
}

func (s *slot) redirectTo(target string) { s.lastHop = target }

// resolveRedirect resolves a Location against base: absolute (http, https), scheme-relative
// or path-absolute references only.
func resolveRedirect(base, loc string) (string, bool) {
	switch {
	case loc == "":
		return "", false
	case strings.HasPrefix(loc, "https://"), strings.HasPrefix(loc, "http://"):
		return loc, true
	}
	scheme, rest, ok := strings.Cut(base, "://")
	if !ok {
		return "", false
	}
	switch {
	case strings.HasPrefix(loc, "//"):
		return scheme + ":" + loc, true
	case strings.HasPrefix(loc, "/"):
		authority, _, _ := strings.Cut(rest, "/")
		return scheme + "://" + authority + loc, true
	}
	return "", false
}

// publish writes a verified list into the slot: only the generation record's times when the
// list is the one held, else the list and then the record of a new generation.
func (c *Checker) publish(i int, tok *Token, now time.Time) error {
	s := &c.slots[i]
	if s.held && s.list.Bits == tok.Bits && bytes.Equal(s.list.Bytes, tok.Bytes) {
		m := s.m
		m.fetched, m.exp, m.iat = now, tok.Expires, tok.IssuedAt
		done, err := c.updateGen(s, func(cur *meta, found bool) bool {
			return found && cur.id == s.id && cur.generation == m.generation && cur.nonce == m.nonce
		}, m)
		if err != nil {
			return err
		}
		if done {
			s.m = m
			return nil
		}
		// The record names another list now: publish this one as a new generation.
	}
	gen := s.m.generation
	if raw, _, err := c.o.Store.GetSharedData(s.keys.gen); err == nil {
		if g, err := decodeGen(raw); err == nil && g.generation > gen {
			gen = g.generation
		}
	}
	var nb [8]byte
	_, _ = rand.Read(nb[:])
	m := meta{
		bits: tok.Bits, id: s.id, generation: gen + 1, fetched: now, exp: tok.Expires, iat: tok.IssuedAt,
		length: uint32(len(tok.Bytes)), nonce: binary.LittleEndian.Uint64(nb[:]),
	}
	if err := c.o.Store.SetSharedData(s.keys.list, encodeList(m, tok.Bytes), 0); err != nil {
		return fmt.Errorf("write list: %w", err)
	}
	if _, err := c.updateGen(s, func(cur *meta, found bool) bool {
		return !found || cur.id != s.id || cur.generation < m.generation
	}, m); err != nil {
		return fmt.Errorf("write generation: %w", err)
	}
	if !s.held && !s.firstLogged {
		s.firstLogged = true
		c.log(abi.LogLevelInfo, fmt.Sprintf("status list %q: first list received: %d bits per token, %d indices",
			s.uri, tok.Bits, tok.List.Len()))
	}
	s.held, s.list, s.m, s.failedGen = true, tok.List, m, 0
	c.m.published.Increment(1)
	return nil
}

// updateGen writes m as slot s's generation record if ok says so of the current one, under
// CAS (blocklistsync.UpdateShared); it reports whether it wrote.
func (c *Checker) updateGen(s *slot, ok func(cur *meta, found bool) bool, m meta) (bool, error) {
	return blocklistsync.UpdateShared(c.o.Store, s.keys.gen, func(raw []byte, _ bool) []byte {
		var cur meta
		found := false
		if g, err := decodeGen(raw); err == nil {
			cur, found = g, true
		}
		if !ok(&cur, found) {
			return nil
		}
		return encodeGen(m)
	})
}

// refreshDue is when a list fetched at fetched is fetched again: after its ttl clamped to
// [min_ttl, max_ttl] (max_ttl without one), spread downwards by up to 10% so proxies started
// together do not fetch in step; and, when it has exp, once 4/5 of its remaining life has
// passed, so it is replaced before it expires; never sooner than a second after.
func (c *Checker) refreshDue(tok *Token, fetched time.Time) time.Time {
	ttl := tok.TTL
	if ttl == 0 {
		ttl = c.cfg.MaxTTL.D()
	}
	ttl = min(max(ttl, c.cfg.MinTTL.D()), c.cfg.MaxTTL.D())
	due := fetched.Add(time.Duration(float64(ttl) * (1 - 0.1*c.o.Rand())))
	if !tok.Expires.IsZero() {
		if before := fetched.Add(tok.Expires.Sub(fetched) * 4 / 5); before.Before(due) {
			due = before
		}
	}
	if floor := fetched.Add(time.Second); due.Before(floor) {
		due = floor
	}
	return due
}

func (c *Checker) succeed(i int, tok *Token, now time.Time) {
	s := &c.slots[i]
	failures := c.leaseFailures(s)
	if failures > 0 {
		c.log(abi.LogLevelInfo, fmt.Sprintf("status list %q: fetched again after %d failures", s.uri, failures))
	}
	c.setSchedule(s, c.refreshDue(tok, now), 0)
}

// unusableRetry caps the backoff while a list is not usable: a fail-closed filter answers
// 503 for its tokens meanwhile, and must stop soon after the list's server is back; a uri
// that never served a list (a token made it up) still costs its server only one fetch per
// this interval.
const unusableRetry = 30 * time.Second

// fail counts a failed fetch and schedules the retry: retry_interval × 2^(failures-1), capped
// at max_backoff, and at max(retry_interval, 30s) while the list is not usable; a list that
// would stop being usable before the retry is retried halfway to that moment instead. The
// list held in shared data is untouched.
func (c *Checker) fail(i int, now time.Time, reason string, rejected bool) {
	s := &c.slots[i]
	c.m.failures.Increment(1)
	if rejected {
		c.m.rejected.Increment(1)
	}
	failures := c.leaseFailures(s) + 1
	delay := c.cfg.MaxBackoff.D()
	if failures < 32 {
		delay = min(c.cfg.RetryInterval.D()<<(failures-1), delay)
	}
	state := "keeping the list held"
	if !c.usable(s, now) {
		delay, state = min(delay, max(c.cfg.RetryInterval.D(), unusableRetry)), "no usable list"
	} else if until := c.usableUntil(s); !until.IsZero() && until.Before(now.Add(delay)) {
		delay = max(c.cfg.RetryInterval.D(), min(delay, until.Sub(now)/2))
	}
	c.logEvery("fail-"+s.uri, abi.LogLevelWarn, fmt.Sprintf("status list %q: fetch failed (%d in a row), %s, retry in %s: %s",
		s.uri, failures, state, delay, reason))
	c.setSchedule(s, now.Add(delay), failures)
}

func (c *Checker) leaseFailures(s *slot) uint32 {
	raw, _, err := c.o.Store.GetSharedData(s.keys.lease)
	if err != nil {
		return 0
	}
	l, err := parseLease(raw)
	if err != nil || l.id != s.id {
		return 0
	}
	return l.failures
}

// setSchedule writes the next fetch time into the lease if this VM still holds it.
func (c *Checker) setSchedule(s *slot, due time.Time, failures uint32) {
	raw, cas, err := c.o.Store.GetSharedData(s.keys.lease)
	if err != nil {
		return
	}
	l, err := parseLease(raw)
	if err != nil || l.holder != c.o.HolderID || l.id != s.id {
		return
	}
	l.nextDue, l.failures = due, failures
	if err := c.o.Store.SetSharedData(s.keys.lease, l.marshal(), cas); err != nil && !errors.Is(err, types.ErrorStatusCasMismatch) {
		c.logEvery("lease", abi.LogLevelError, "status list: write schedule: "+err.Error())
	}
}

// flush hands the request path's counters to the host.
func (c *Checker) flush() {
	for _, x := range []struct {
		n *uint64
		m abi.Counter
	}{
		{&c.counts.valid, c.m.valid}, {&c.counts.invalid, c.m.invalid}, {&c.counts.suspended, c.m.suspended},
		{&c.counts.other, c.m.other}, {&c.counts.unavailable, c.m.unavailable}, {&c.counts.notAllowed, c.m.notAllowed},
		{&c.counts.outOfRange, c.m.outOfRange}, {&c.counts.malformed, c.m.malformed},
	} {
		if *x.n > 0 {
			x.m.Increment(*x.n)
			*x.n = 0
		}
	}
}

func (c *Checker) log(level abi.LogLevel, msg string) { c.o.Host.Log(level, "jtiguard: "+msg) }

// logEvery logs msg at most once a minute per key.
func (c *Checker) logEvery(key string, level abi.LogLevel, msg string) {
	now := c.o.Now()
	if last, ok := c.logged[key]; ok && now.Sub(last) < time.Minute {
		return
	}
	if len(c.logged) > 256 {
		clear(c.logged)
	}
	c.logged[key] = now
	c.log(level, msg)
}

func header(headers [][2]string, name string) string {
	for _, h := range headers {
		if strings.EqualFold(h[0], name) {
			return h[1]
		}
	}
	return ""
}
