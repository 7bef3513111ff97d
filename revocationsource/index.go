package revocationsource

import (
	"container/heap"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
)

// DefaultMaxLog is the default number of changes the index remembers for
// deltas. A poller further behind than that gets a snapshot.
const DefaultMaxLog = 100_000

// DefaultExpiryGrace is how long an entry stays in the list past its exp. A
// filter with a clock leeway accepts a token until exp + leeway, so the list
// must hold the entry at least that long; 1h is the largest leeway the filter
// allows.
const DefaultExpiryGrace = time.Hour

// Index is the in-memory mirror of a store plus a bounded change log.
//
// Versions are a digest of the content rather than a counter: two replicas
// (or one replica before and after a restart) that hold the same content name
// it the same way, so a filter load-balanced across stateless replicas still
// gets 304s and deltas instead of a full snapshot on every switch, and a
// version can never be mistaken for a different state after a restart — a
// version only ever names one content. A delta is served only from a version
// that this process has itself passed through since it started (it is in the
// change log), so it is always exact.
type Index struct {
	now    func() time.Time
	maxLog int
	grace  int64 // seconds an item outlives its exp
	// OnInvalid is called (under the index lock, keep it cheap) for each item
	// dropped because it breaks the feed's limits.
	OnInvalid func()

	mu      sync.RWMutex
	entries map[EntryKey]int64 // jti and claim entries
	claims  int                // how many of entries are claim entries
	// claimNames counts the claim entries of each claim name: a filter reads at most
	// MaxClaimNames of them (blocklistsync.MaxClaimNames), so a revocation by one more is
	// refused before it could make every filter reject the feed.
	claimNames map[string]int
	cutoffs    map[CutoffKey]cutoffVal
	sumA       uint64
	sumB       uint64
	seq        uint64
	log        []logged
	versions   map[string]uint64
	vring      []versionAt
	version    string
	exps       expHeap
	hbuf       []byte
	// held items are gone from the store because their time came (a Redis
	// TTL, an eviction, a cleanup job) but stay in the list until exp +
	// grace. Holding is not content: it does not change the version.
	heldE map[EntryKey]struct{}
	heldC map[CutoffKey]struct{}
	// changed is closed, and replaced, whenever the version changes: every
	// long poll waiting on the list (Server) wakes at once, whichever store
	// or admin request made the change, and nothing runs while it does not.
	changed chan struct{}

	nextExp atomic.Int64
}

type cutoffVal struct{ revokedBefore, exp int64 }

type logged struct {
	seq uint64
	ch  Change
}

type versionAt struct {
	seq     uint64
	version string
}

// NewIndex returns an empty index. now is the clock (inject a fake one in
// tests); maxLog bounds the change log (<= 0 means DefaultMaxLog).
func NewIndex(now func() time.Time, maxLog int) *Index {
	if now == nil {
		now = time.Now
	}
	if maxLog <= 0 {
		maxLog = DefaultMaxLog
	}
	x := &Index{
		now:      now,
		maxLog:   maxLog,
		grace:    int64(DefaultExpiryGrace / time.Second),
		entries:  make(map[EntryKey]int64),
		cutoffs:  make(map[CutoffKey]cutoffVal),
		versions: make(map[string]uint64),
		heldE:    make(map[EntryKey]struct{}),
		heldC:    make(map[CutoffKey]struct{}),
		changed:  make(chan struct{}),
	}
	x.nextExp.Store(math.MaxInt64)
	x.recordVersionLocked()
	return x
}

// SetExpiryGrace sets how long items stay past their exp (default
// DefaultExpiryGrace; rounded up to a second). Call it before first use.
func (x *Index) SetExpiryGrace(d time.Duration) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.grace = int64((max(d, 0) + time.Second - 1) / time.Second)
	x.updateNextExpLocked()
}

// ExpiryGrace is the grace set with SetExpiryGrace.
func (x *Index) ExpiryGrace() time.Duration {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return time.Duration(x.grace) * time.Second
}

// gone reports whether an item with this exp has left the list at now.
func (x *Index) gone(exp, now int64) bool { return exp != 0 && exp+x.grace <= now }

// Held is the number of entries and cutoffs that the store no longer has
// and that the index keeps until exp + grace.
func (x *Index) Held() (entries, cutoffs int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.heldE), len(x.heldC)
}

// Version is the name of the current content.
func (x *Index) Version() string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.version
}

// Watch returns the current version and a channel that is closed when the
// version next changes. Both are read under one lock, so a change made just
// after the version was read cannot be missed.
func (x *Index) Watch() (string, <-chan struct{}) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.version, x.changed
}

// Seq is the number of changes applied so far.
func (x *Index) Seq() uint64 {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.seq
}

// Len returns the number of entries (jti and claim entries) and cutoffs.
func (x *Index) Len() (entries, cutoffs int) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return len(x.entries), len(x.cutoffs)
}

// Claims returns how many of the entries are claim entries.
func (x *Index) Claims() int {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.claims
}

// ClaimNames returns the claim names the claim entries revoke by, ascending.
func (x *Index) ClaimNames() []string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return slices.Sorted(maps.Keys(x.claimNames))
}

// Cutoff returns the cutoff held for k, if any.
func (x *Index) Cutoff(k CutoffKey) (Cutoff, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	v, ok := x.cutoffs[k]
	return Cutoff{Sub: k.Sub, Iss: k.Iss, RevokedBefore: v.revokedBefore, Exp: v.exp}, ok
}

// Apply applies changes as one step and returns the resulting version.
func (x *Index) Apply(changes []Change) string {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.applyBatchLocked(changes)
	return x.version
}

// MaybeExpire drops entries and cutoffs whose exp + grace has passed. It is
// cheap when nothing is due, so the HTTP handler calls it on every request.
func (x *Index) MaybeExpire() {
	now := x.now().Unix()
	if now < x.nextExp.Load() {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.expireLocked(now)
}

func (x *Index) expireLocked(now int64) {
	var changes []Change
	for x.exps.Len() > 0 && x.gone(x.exps[0].exp, now) {
		it := heap.Pop(&x.exps).(expItem)
		if it.cutoff {
			k := CutoffKey{Iss: it.a, Sub: it.b}
			if v, ok := x.cutoffs[k]; ok && v.exp == it.exp {
				changes = append(changes, Change{Op: OpRemoveCutoff, Cutoff: Cutoff{Iss: k.Iss, Sub: k.Sub}})
			}
			continue
		}
		k := EntryKey{Iss: it.a, JTI: it.b, Claim: it.c}
		if exp, ok := x.entries[k]; ok && exp == it.exp {
			changes = append(changes, Change{Op: OpRemoveEntry, Entry: k.Entry(0)})
		}
	}
	if len(changes) > 0 {
		x.applyBatchLocked(changes)
	}
	x.updateNextExpLocked()
}

func (x *Index) updateNextExpLocked() {
	if x.exps.Len() == 0 {
		x.nextExp.Store(math.MaxInt64)
		return
	}
	x.nextExp.Store(x.exps[0].exp + x.grace)
}

// applyBatchLocked applies changes; a batch with at least one effective
// change becomes one new version.
func (x *Index) applyBatchLocked(changes []Change) {
	now := x.now().Unix()
	bulk := len(changes) > x.maxLog
	before := x.seq
	for _, ch := range changes {
		if x.applyOneLocked(ch, now) && !bulk {
			x.log = append(x.log, logged{seq: x.seq, ch: x.logFormLocked(ch)})
		}
	}
	if x.seq == before {
		return
	}
	if bulk {
		// Logging a bulk load would only push out everything else: no
		// poller can be at a version inside it anyway.
		x.log = nil
		x.versions = make(map[string]uint64)
		x.vring = nil
	}
	x.recordVersionLocked()
	x.trimLocked()
	if x.exps.Len() > 2*(len(x.entries)+len(x.cutoffs))+1024 {
		x.rebuildHeapLocked()
	}
	x.updateNextExpLocked()
}

// logFormLocked returns the change as it now stands in the index (a merged
// put logs the resulting expiry).
func (x *Index) logFormLocked(ch Change) Change {
	switch ch.Op {
	case OpPutEntry:
		if exp, ok := x.entries[ch.Entry.Key()]; ok {
			ch.Entry.Exp = exp
			ch.Merge = false
			return ch
		}
		// The put removed an entry because it was already expired.
		return Change{Op: OpRemoveEntry, Entry: ch.Entry.Key().Entry(0)}
	case OpPutCutoff:
		if v, ok := x.cutoffs[ch.Cutoff.Key()]; ok {
			ch.Cutoff.RevokedBefore, ch.Cutoff.Exp = v.revokedBefore, v.exp
			return ch
		}
		return Change{Op: OpRemoveCutoff, Cutoff: Cutoff{Iss: ch.Cutoff.Iss, Sub: ch.Cutoff.Sub}}
	}
	return ch
}

func longerExp(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	return max(a, b)
}

// applyOneLocked returns whether the change had an effect.
func (x *Index) applyOneLocked(ch Change, now int64) bool {
	switch ch.Op {
	case OpPutEntry:
		e := ch.Entry
		if e.Validate() != nil {
			x.invalid()
			return false
		}
		k := e.Key()
		old, had := x.entries[k]
		if had && ch.Merge {
			e.Exp = longerExp(old, e.Exp)
		}
		delete(x.heldE, k) // the store has it (again)
		if x.gone(e.Exp, now) {
			if !had {
				return false
			}
			return x.removeEntryLocked(k)
		}
		if had && old == e.Exp {
			return false
		}
		if had {
			x.subLocked(x.entryHash(k, old))
		} else if k.Claim != "" {
			x.claims++
			if x.claimNames == nil {
				x.claimNames = make(map[string]int)
			}
			x.claimNames[k.Claim]++
		}
		x.entries[k] = e.Exp
		x.addLocked(x.entryHash(k, e.Exp))
		if e.Exp != 0 {
			heap.Push(&x.exps, expItem{exp: e.Exp, a: k.Iss, b: k.JTI, c: k.Claim})
		}
		x.seq++
		return true
	case OpRemoveEntry:
		k := ch.Entry.Key()
		if _, had := x.entries[k]; had && ch.Expired {
			x.heldE[k] = struct{}{}
			return false
		}
		return x.removeEntryLocked(k)
	case OpPutCutoff:
		c := ch.Cutoff
		if c.Validate() != nil {
			x.invalid()
			return false
		}
		k := c.Key()
		old, had := x.cutoffs[k]
		delete(x.heldC, k)
		if x.gone(c.Exp, now) {
			if !had {
				return false
			}
			return x.removeCutoffLocked(k)
		}
		nv := cutoffVal{revokedBefore: c.RevokedBefore, exp: c.Exp}
		if had && old == nv {
			return false
		}
		if had {
			x.subLocked(x.cutoffHash(k, old))
		}
		x.cutoffs[k] = nv
		x.addLocked(x.cutoffHash(k, nv))
		if c.Exp != 0 {
			heap.Push(&x.exps, expItem{exp: c.Exp, cutoff: true, a: k.Iss, b: k.Sub})
		}
		x.seq++
		return true
	case OpRemoveCutoff:
		k := ch.Cutoff.Key()
		if _, had := x.cutoffs[k]; had && ch.Expired {
			x.heldC[k] = struct{}{}
			return false
		}
		return x.removeCutoffLocked(k)
	}
	return false
}

func (x *Index) invalid() {
	if x.OnInvalid != nil {
		x.OnInvalid()
	}
}

func (x *Index) removeEntryLocked(k EntryKey) bool {
	old, had := x.entries[k]
	if !had {
		return false
	}
	x.subLocked(x.entryHash(k, old))
	delete(x.entries, k)
	delete(x.heldE, k)
	if k.Claim != "" {
		x.claims--
		if x.claimNames[k.Claim]--; x.claimNames[k.Claim] == 0 {
			delete(x.claimNames, k.Claim)
		}
	}
	x.seq++
	return true
}

func (x *Index) removeCutoffLocked(k CutoffKey) bool {
	old, had := x.cutoffs[k]
	if !had {
		return false
	}
	x.subLocked(x.cutoffHash(k, old))
	delete(x.cutoffs, k)
	delete(x.heldC, k)
	x.seq++
	return true
}

// The content digest is a sum of per-item hashes, so it is independent of
// order and updated in O(1) per change. Two 64-bit lanes make an accidental
// collision negligible.
func (x *Index) addLocked(a, b uint64) { x.sumA += a; x.sumB += b }
func (x *Index) subLocked(a, b uint64) { x.sumA -= a; x.sumB -= b }

func (x *Index) itemHash(kind byte, s1, s2 string, v1, v2 int64) (uint64, uint64) {
	b := append(x.hbuf[:0], 0, kind)
	b = append(b, s1...)
	b = append(b, 0)
	b = append(b, s2...)
	b = append(b, 0)
	b = strconv.AppendInt(b, v1, 10)
	b = append(b, '/')
	b = strconv.AppendInt(b, v2, 10)
	x.hbuf = b
	h1 := xxhash.Sum64(b)
	b[0] = 1
	return h1, xxhash.Sum64(b)
}

func (x *Index) entryHash(k EntryKey, exp int64) (uint64, uint64) {
	if k.Claim != "" {
		// A claim name has no NUL (ValidClaimName), so claim ‖ 0 ‖ value is
		// unambiguous, and kind 'k' keeps it apart from any jti entry.
		return x.itemHash('k', k.Iss, k.Claim+"\x00"+k.JTI, exp, 0)
	}
	return x.itemHash('e', k.Iss, k.JTI, exp, 0)
}

func (x *Index) cutoffHash(k CutoffKey, v cutoffVal) (uint64, uint64) {
	return x.itemHash('c', k.Iss, k.Sub, v.revokedBefore, v.exp)
}

func (x *Index) recordVersionLocked() {
	v := fmt.Sprintf("c1.%016x%016x", x.sumA, x.sumB)
	if v != x.version && x.changed != nil {
		close(x.changed)
		x.changed = make(chan struct{})
	}
	x.version = v
	x.versions[x.version] = x.seq
	x.vring = append(x.vring, versionAt{seq: x.seq, version: x.version})
}

// trimLocked bounds the log to maxLog changes. It drops a quarter at a time
// so the copy is amortized.
func (x *Index) trimLocked() {
	if len(x.log) <= x.maxLog {
		return
	}
	drop := len(x.log) - x.maxLog*3/4
	x.log = append([]logged(nil), x.log[drop:]...)
	// A version at seq s can serve a delta only if every change after s is
	// still in the log.
	minSeq := x.log[0].seq - 1
	i := 0
	for i < len(x.vring) && x.vring[i].seq < minSeq {
		v := x.vring[i]
		if x.versions[v.version] == v.seq {
			delete(x.versions, v.version)
		}
		i++
	}
	x.vring = append([]versionAt(nil), x.vring[i:]...)
}

func (x *Index) rebuildHeapLocked() {
	h := make(expHeap, 0, len(x.entries)/2)
	for k, exp := range x.entries {
		if exp != 0 {
			h = append(h, expItem{exp: exp, a: k.Iss, b: k.JTI, c: k.Claim})
		}
	}
	for k, v := range x.cutoffs {
		if v.exp != 0 {
			h = append(h, expItem{exp: v.exp, cutoff: true, a: k.Iss, b: k.Sub})
		}
	}
	heap.Init(&h)
	x.exps = h
}

// Snapshot returns the current content, sorted so that the same content
// always encodes to the same bytes.
func (x *Index) Snapshot() (version string, entries []Entry, cutoffs []Cutoff) {
	x.MaybeExpire()
	x.mu.RLock()
	version = x.version
	entries = make([]Entry, 0, len(x.entries))
	for k, exp := range x.entries {
		entries = append(entries, k.Entry(exp))
	}
	cutoffs = make([]Cutoff, 0, len(x.cutoffs))
	for k, v := range x.cutoffs {
		cutoffs = append(cutoffs, Cutoff{Sub: k.Sub, Iss: k.Iss, RevokedBefore: v.revokedBefore, Exp: v.exp})
	}
	x.mu.RUnlock()
	sort.Slice(entries, func(i, j int) bool { return lessEntryKey(entries[i].Key(), entries[j].Key()) })
	sort.Slice(cutoffs, func(i, j int) bool {
		if cutoffs[i].Sub != cutoffs[j].Sub {
			return cutoffs[i].Sub < cutoffs[j].Sub
		}
		return cutoffs[i].Iss < cutoffs[j].Iss
	})
	return version, entries, cutoffs
}

// DeltaChanges is the net difference between two versions.
type DeltaChanges struct {
	Added          []Entry
	Removed        []EntryKey
	CutoffsAdded   []Cutoff
	CutoffsRemoved []CutoffKey
}

// Len is the number of items in the delta.
func (d DeltaChanges) Len() int {
	return len(d.Added) + len(d.Removed) + len(d.CutoffsAdded) + len(d.CutoffsRemoved)
}

// Delta returns the net changes from since to the current version. ok is
// false when since is not a version this process passed through within the
// log, or when the delta would be larger than a snapshot.
func (x *Index) Delta(since string) (version string, d DeltaChanges, ok bool) {
	x.MaybeExpire()
	x.mu.RLock()
	defer x.mu.RUnlock()
	s, known := x.versions[since]
	if !known {
		return x.version, d, false
	}
	version = x.version
	start := sort.Search(len(x.log), func(i int) bool { return x.log[i].seq > s })
	if len(x.log)-start > 2*(len(x.entries)+len(x.cutoffs))+16 {
		return version, d, false
	}
	lastE := make(map[EntryKey]Change)
	lastC := make(map[CutoffKey]Change)
	for _, l := range x.log[start:] {
		switch l.ch.Op {
		case OpPutEntry, OpRemoveEntry:
			lastE[l.ch.Entry.Key()] = l.ch
		case OpPutCutoff, OpRemoveCutoff:
			lastC[l.ch.Cutoff.Key()] = l.ch
		}
	}
	if len(lastE)+len(lastC) > len(x.entries)+len(x.cutoffs)+16 {
		return version, d, false
	}
	for k, ch := range lastE {
		if ch.Op == OpPutEntry {
			d.Added = append(d.Added, ch.Entry)
		} else {
			d.Removed = append(d.Removed, k)
		}
	}
	for k, ch := range lastC {
		if ch.Op == OpPutCutoff {
			d.CutoffsAdded = append(d.CutoffsAdded, ch.Cutoff)
		} else {
			d.CutoffsRemoved = append(d.CutoffsRemoved, k)
		}
	}
	sort.Slice(d.Added, func(i, j int) bool { return lessEntryKey(d.Added[i].Key(), d.Added[j].Key()) })
	sort.Slice(d.Removed, func(i, j int) bool { return lessEntryKey(d.Removed[i], d.Removed[j]) })
	sort.Slice(d.CutoffsAdded, func(i, j int) bool { return lessCutoffKey(d.CutoffsAdded[i].Key(), d.CutoffsAdded[j].Key()) })
	sort.Slice(d.CutoffsRemoved, func(i, j int) bool { return lessCutoffKey(d.CutoffsRemoved[i], d.CutoffsRemoved[j]) })
	return version, d, true
}

// lessEntryKey orders jti entries (by jti, then iss) before claim entries (by
// claim, value, iss): the order of snapshots, deltas and the admin list.
func lessEntryKey(a, b EntryKey) bool {
	if a.Claim != b.Claim {
		return a.Claim < b.Claim
	}
	if a.JTI != b.JTI {
		return a.JTI < b.JTI
	}
	return a.Iss < b.Iss
}

func lessCutoffKey(a, b CutoffKey) bool {
	if a.Sub != b.Sub {
		return a.Sub < b.Sub
	}
	return a.Iss < b.Iss
}

// Reconcile makes the index equal to st, a full read of the store that
// started when the index was at since. Keys changed after since are left
// alone: the read may predate those changes and would otherwise undo them.
func (x *Index) Reconcile(st State, since uint64) error {
	return x.reconcile(st, since, scopeJTIs|scopeClaims|scopeCutoffs)
}

// ReconcileCutoffs is Reconcile for the cutoffs only.
func (x *Index) ReconcileCutoffs(cs []Cutoff, since uint64) error {
	return x.reconcile(State{Cutoffs: cs}, since, scopeCutoffs)
}

// ReconcileClaims is Reconcile for the claim entries only: es are every
// claim entry the store holds (jti entries among them are ignored).
func (x *Index) ReconcileClaims(es []Entry, since uint64) error {
	return x.reconcile(State{Entries: es}, since, scopeClaims)
}

// scope says which items a reconciliation replaces.
type scope uint8

const (
	scopeJTIs scope = 1 << iota
	scopeClaims
	scopeCutoffs
)

// entries reports whether entries of this key are in the scope.
func (sc scope) entries(k EntryKey) bool {
	if k.Claim != "" {
		return sc&scopeClaims != 0
	}
	return sc&scopeJTIs != 0
}

func (x *Index) reconcile(st State, since uint64, sc scope) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.seq > since && (len(x.log) == 0 || x.log[0].seq > since+1) {
		return fmt.Errorf("%w: read started at change %d, log starts later", ErrStaleReconcile, since)
	}
	now := x.now().Unix()
	touchedE := make(map[EntryKey]bool)
	touchedC := make(map[CutoffKey]bool)
	start := sort.Search(len(x.log), func(i int) bool { return x.log[i].seq > since })
	for _, l := range x.log[start:] {
		switch l.ch.Op {
		case OpPutEntry, OpRemoveEntry:
			touchedE[l.ch.Entry.Key()] = true
		default:
			touchedC[l.ch.Cutoff.Key()] = true
		}
	}
	var changes []Change
	if sc&(scopeJTIs|scopeClaims) != 0 {
		want := make(map[EntryKey]int64, len(st.Entries))
		for _, e := range st.Entries {
			k := e.Key()
			if !sc.entries(k) {
				continue
			}
			if old, ok := want[k]; ok {
				e.Exp = longerExp(old, e.Exp)
			}
			want[k] = e.Exp
		}
		for k, exp := range want {
			if touchedE[k] {
				continue
			}
			delete(x.heldE, k) // the store has it: no longer held
			if cur, ok := x.entries[k]; !ok || cur != exp {
				changes = append(changes, Change{Op: OpPutEntry, Entry: k.Entry(exp)})
			}
		}
		for k, exp := range x.entries {
			if _, held := x.heldE[k]; held || !sc.entries(k) {
				continue
			}
			if _, ok := want[k]; !ok && !touchedE[k] {
				changes = append(changes, Change{Op: OpRemoveEntry, Entry: k.Entry(0),
					Expired: timeCame(exp, now)})
			}
		}
	}
	if sc&scopeCutoffs != 0 {
		wantC := make(map[CutoffKey]cutoffVal, len(st.Cutoffs))
		for _, c := range st.Cutoffs {
			wantC[c.Key()] = cutoffVal{revokedBefore: c.RevokedBefore, exp: c.Exp}
		}
		for k, v := range wantC {
			if touchedC[k] {
				continue
			}
			delete(x.heldC, k)
			if cur, ok := x.cutoffs[k]; !ok || cur != v {
				changes = append(changes, Change{Op: OpPutCutoff, Cutoff: Cutoff{Sub: k.Sub, Iss: k.Iss, RevokedBefore: v.revokedBefore, Exp: v.exp}})
			}
		}
		for k, v := range x.cutoffs {
			if _, held := x.heldC[k]; held {
				continue
			}
			if _, ok := wantC[k]; !ok && !touchedC[k] {
				changes = append(changes, Change{Op: OpRemoveCutoff, Cutoff: Cutoff{Sub: k.Sub, Iss: k.Iss},
					Expired: timeCame(v.exp, now)})
			}
		}
	}
	if len(changes) > 0 {
		x.applyBatchLocked(changes)
	}
	return nil
}

// timeCame reports whether an item missing from a full read of the store
// most likely left it because its exp came (Redis deletes a key at its TTL,
// rounded here to the second above; an app may clean up expired rows): it is
// then held until exp + grace rather than dropped.
func timeCame(exp, now int64) bool { return exp != 0 && exp <= now+1 }

type expItem struct {
	exp     int64
	cutoff  bool
	a, b, c string // iss, jti or sub, and a claim entry's claim
}

type expHeap []expItem

func (h expHeap) Len() int           { return len(h) }
func (h expHeap) Less(i, j int) bool { return h[i].exp < h[j].exp }
func (h expHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expHeap) Push(v any)        { *h = append(*h, v.(expItem)) }
func (h *expHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}
