package blocklistsync

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// SharedData is the host's shared key-value store as Envoy implements it: get returns a copy
// and a CAS token; set with a stale token fails with types.ErrorStatusCasMismatch; a missing
// key gets types.ErrorStatusNotFound. internal/abi provides it in the plugin; tests use an
// in-memory store with the same rules. The Reader keeps the slice a get of the snapshot
// returns (it indexes it in place), so a store must not hand out memory it reuses.
type SharedData interface {
	GetSharedData(key string) ([]byte, uint32, error)
	SetSharedData(key string, value []byte, cas uint32) error
}

// sharedDataInto is a SharedData that can write a value into a buffer the caller hands back
// (internal/abi on wasip1): the Reader reads each new snapshot into the memory of the one before
// the snapshot it holds, so taking a new generation allocates nothing once the list's size
// settles, and the collector, which the filter runs only on ticks, has no snapshot garbage to
// find however many generations come between two ticks. It returns the value with the
// buffer's whole capacity (a new buffer when dst was too small).
type sharedDataInto interface {
	GetSharedDataInto(key string, dst []byte) ([]byte, uint32, error)
}

// UpdateShared changes one shared-data record under CAS, the way every record a VM rewrites
// is changed (generation records, key sets): it reads key, asks change for the new value (cur
// is nil and found false when the key is absent), and writes it with the CAS of that read,
// or with 0 when the key was absent (Envoy cannot create a key atomically). A write that lost
// the race to another VM reads again, up to four times. change returning nil leaves the
// record as it is; wrote reports whether a value was written.
func UpdateShared(store SharedData, key string, change func(cur []byte, found bool) []byte) (wrote bool, err error) {
	for range 4 {
		raw, cas, err := store.GetSharedData(key)
		found := true
		switch {
		case errors.Is(err, types.ErrorStatusNotFound):
			raw, cas, found = nil, 0, false
		case err != nil:
			return false, err
		}
		next := change(raw, found)
		if next == nil {
			return false, nil
		}
		err = store.SetSharedData(key, next, cas)
		if !errors.Is(err, types.ErrorStatusCasMismatch) {
			return err == nil, err
		}
	}
	return false, types.ErrorStatusCasMismatch
}

// MaxRecheck bounds ReaderOptions.RecheckEvery. A revocation must reach every worker within
// one sync interval plus 100 ms: the lease holder publishes within the interval, and a worker
// then sees the new generation at its next read of the record, at most this much later.
const MaxRecheck = 100 * time.Millisecond

// ReaderOptions configure a Reader.
type ReaderOptions struct {
	// KeyedByIssuer is how the filter computes its keys. A snapshot keyed the other way is
	// never returned: Refresh reports ErrKeyingMismatch and no list.
	KeyedByIssuer bool
	// RecheckEvery, when above 0, makes Refresh read the generation record at most this often
	// by Now, and answer from memory in between: no host call, no allocation. Values above
	// MaxRecheck are taken as MaxRecheck. 0 reads the record on every Refresh.
	RecheckEvery time.Duration
	// Now is the clock of RecheckEvery; required when it is set.
	Now func() time.Time
	// OnGrow, if set, is told how many bytes a snapshot buffer that had to be allocated
	// anew holds (the first two generations, and a list that outgrew its buffer): memory the
	// filter's collection pacer did not plan for. See sharedDataInto.
	OnGrow func(bytes int)
}

// Reader is one worker VM's view of the shared blocklist. Refresh costs one small shared-data
// read; only when the generation record moved does it copy and index the new snapshot.
type Reader struct {
	store SharedData
	keys  Keys
	o     ReaderOptions

	snap    *Snapshot
	snapCAS uint32 // CAS of the snapshot key when snap was read: the writer's guard
	gen     Generation
	// freshAt is the last successful sync that the held snapshot is known to reflect. It stays
	// put when a newer generation cannot be adopted, so a broken snapshot ages into
	// max_staleness instead of being reported fresh.
	freshAt time.Time
	// latest is the newest snapshot decoded, usable or not (keyed the other way): the lease
	// holder keeps its hash key and writes over it with the snapshot's CAS.
	latest    *Snapshot
	latestCAS uint32

	// failedAt is the generation record whose snapshot could not be used, and why: the
	// snapshot is not copied again until the record changes (a new list, or at least the
	// next successful poll's time), so a bad snapshot costs one copy per sync, not one per
	// request.
	failedAt  Generation
	failedErr error

	// rereadSnapshot makes the next read load the snapshot record even though the generation
	// record names the generation held (Invalidate): two VMs that both held the lease for a
	// tick can both write generation 1, the second over the first, and a reader that keeps
	// the first (and its CAS) would have its every write refused.
	rereadSnapshot bool

	// checkedAt and last are RecheckEvery's: when the record was last read (Unix nanoseconds,
	// 0 for never: an integer compare per request, where time.Time.Sub of a clock without a
	// monotonic reading took most of a cache hit's Refresh in wasm), and what Refresh answered then.
	checkedAt int64
	last      refreshResult

	// slots are the two buffers snapshots are read into, when the store can (sharedDataInto):
	// the one that holds snap, and the spare the next generation is read into.
	slots [2]snapSlot
}

// snapSlot is memory a snapshot is read into and indexed in, reused from generation to
// generation. epoch changes whenever the memory is about to be written again, and a Snapshot
// remembers the epoch it was decoded at: one used after its memory was reused panics (in a
// callback, a 500 for the request, never an answer from another list) instead of reading
// another generation's bytes.
type snapSlot struct {
	buf    []byte // the whole buffer
	entDir []uint32
	cutDir []uint32
	epoch  uint64
}

type refreshResult struct {
	snap    *Snapshot
	freshAt time.Time
	err     error
}

// NewReader returns a Reader of the blocklist under keys.
func NewReader(store SharedData, keys Keys, o ReaderOptions) *Reader {
	if o.RecheckEvery > MaxRecheck {
		o.RecheckEvery = MaxRecheck
	}
	if o.RecheckEvery > 0 && o.Now == nil {
		o.RecheckEvery = 0
	}
	return &Reader{store: store, keys: keys, o: o}
}

// Refresh brings the local view up to date with shared data (at most every RecheckEvery) and
// returns it with the time of the last successful sync it reflects. It returns ErrNoList
// before any list was published, and ErrKeyingMismatch with no snapshot when the list is
// keyed differently from this filter; on a malformed record or snapshot it keeps the previous
// view and returns the error wrapped, so the caller can log it and carry on.
//
// While no list is held, every Refresh reads the record: a VM answering fail_mode for want of
// a list takes the first one as soon as it is published, not up to RecheckEvery later.
func (r *Reader) Refresh() (*Snapshot, time.Time, error) {
	if r.o.RecheckEvery > 0 && r.last.snap != nil {
		now := r.o.Now().UnixNano()
		if d := now - r.checkedAt; r.checkedAt != 0 && d >= 0 && d < int64(r.o.RecheckEvery) {
			return r.last.snap, r.last.freshAt, r.last.err
		}
		r.checkedAt = now
	}
	snap, freshAt, err := r.read()
	r.last = refreshResult{snap, freshAt, err}
	return snap, freshAt, err
}

// Reload reads the generation record now, whatever RecheckEvery says: for ticks, and for the
// lease holder, which must see what it is about to replace.
func (r *Reader) Reload() (*Snapshot, time.Time, error) {
	if r.o.RecheckEvery > 0 {
		r.checkedAt = r.o.Now().UnixNano()
	}
	snap, freshAt, err := r.read()
	r.last = refreshResult{snap, freshAt, err}
	return snap, freshAt, err
}

// sharedDataViewer is a SharedData that can lend a value for the current callback instead of
// copying it (internal/abi on wasip1): the generation record is read that way, so a request
// that finds the list unchanged allocates nothing.
type sharedDataViewer interface {
	GetSharedDataView(key string) ([]byte, uint32, error)
}

func (r *Reader) read() (*Snapshot, time.Time, error) {
	var raw []byte
	var err error
	if v, ok := r.store.(sharedDataViewer); ok {
		raw, _, err = v.GetSharedDataView(r.keys.Generation)
	} else {
		raw, _, err = r.store.GetSharedData(r.keys.Generation)
	}
	if errors.Is(err, types.ErrorStatusNotFound) || (err == nil && len(raw) == 0) {
		return r.snap, r.freshAt, ErrNoList
	}
	if err != nil {
		return r.snap, r.freshAt, fmt.Errorf("read generation: %w", err)
	}
	gen, err := ParseGeneration(raw)
	if err != nil {
		return r.snap, r.freshAt, err
	}
	r.gen = gen
	reread := r.rereadSnapshot
	r.rereadSnapshot = false
	if r.snap != nil && r.snap.Generation >= gen.Number && !reread {
		if r.snap.Generation == gen.Number && gen.LastSuccess.After(r.freshAt) {
			r.freshAt = gen.LastSuccess
		}
		return r.snap, r.freshAt, nil
	}
	if r.failedErr != nil && gen == r.failedAt && !reread {
		return r.snap, r.freshAt, r.failedErr
	}
	snap, cas, err := r.load(gen)
	if err != nil {
		if errors.Is(err, ErrBadSnapshot) || errors.Is(err, ErrSnapshotTooOld) {
			// Shared data holds a snapshot that cannot be read: the lease holder overwrites
			// it (with its CAS) and draws a new hash key.
			r.failedAt, r.failedErr = gen, err
			r.latest, r.latestCAS = nil, cas
		}
		return r.snap, r.freshAt, err
	}
	r.latest, r.latestCAS = snap, cas
	if snap.KeyedByIssuer != r.o.KeyedByIssuer {
		// Lookups in it would silently miss every entry: no list at all is the honest answer,
		// and the filter's fail_mode decides.
		r.snap, r.snapCAS, r.freshAt = nil, 0, time.Time{}
		r.failedAt, r.failedErr = gen, fmt.Errorf("%w: generation %d is keyed %s, this filter %s",
			ErrKeyingMismatch, snap.Generation, keying(snap.KeyedByIssuer), keying(r.o.KeyedByIssuer))
		return nil, time.Time{}, r.failedErr
	}
	r.failedErr = nil
	if r.snap != nil && slices.Equal(snap.Meta.Claims, r.snap.Meta.Claims) {
		// The same slice while the names stay the same, so a caller that read a token's
		// claims for them can tell by identity, at no cost per request, that they still do.
		snap.Meta.Claims = r.snap.Meta.Claims
	}
	r.snap, r.snapCAS = snap, cas
	if snap.Generation == gen.Number {
		r.freshAt = gen.LastSuccess
	} else {
		// A newer snapshot whose generation record is not written yet: it is at least as
		// fresh as its build time.
		r.freshAt = snap.Built
	}
	return r.snap, r.freshAt, nil
}

func keying(byIssuer bool) string {
	if byIssuer {
		return "by (iss, jti)"
	}
	return "by jti alone"
}

func (r *Reader) load(gen Generation) (*Snapshot, uint32, error) {
	var snap *Snapshot
	raw, cas, slot, err := r.readSnapshot()
	if err != nil {
		return nil, 0, fmt.Errorf("read snapshot of generation %d: %w", gen.Number, err)
	}
	if slot != nil {
		snap, err = decodeSnapshot(raw, slot.entDir, slot.cutDir)
		if snap != nil {
			snap.slot, snap.epoch = slot, slot.epoch
			slot.entDir, slot.cutDir = snap.ent.dir, snap.cut.dir
		}
	} else {
		snap, err = DecodeSnapshot(raw)
	}
	if err != nil {
		return nil, cas, err
	}
	if snap.Generation < gen.Number {
		return nil, cas, fmt.Errorf("%w: snapshot %d, record %d", ErrSnapshotTooOld, snap.Generation, gen.Number)
	}
	return snap, cas, nil
}

// readSnapshot reads the snapshot record, into the spare slot when the store can: the slot
// not holding the list in use. Whatever was decoded in that slot before is dropped first (its
// epoch moves on), so that nothing reads it while it is overwritten.
func (r *Reader) readSnapshot() (raw []byte, cas uint32, slot *snapSlot, err error) {
	into, ok := r.store.(sharedDataInto)
	if !ok {
		raw, cas, err = r.store.GetSharedData(r.keys.Snapshot)
		return raw, cas, nil, err
	}
	slot = &r.slots[0]
	if r.snap != nil && r.snap.slot == slot {
		slot = &r.slots[1]
	}
	slot.epoch++
	if r.latest != nil && r.latest.slot == slot {
		r.latest = nil
	}
	if r.last.snap != nil && r.last.snap.slot == slot {
		r.last = refreshResult{}
	}
	had := cap(slot.buf)
	raw, cas, err = into.GetSharedDataInto(r.keys.Snapshot, slot.buf)
	if err != nil {
		return nil, 0, nil, err
	}
	if len(raw) > 0 && (had == 0 || &raw[:1][0] != &slot.buf[:1][0]) {
		slot.buf = raw[:cap(raw)]
		if r.o.OnGrow != nil {
			r.o.OnGrow(cap(raw))
		}
	}
	return raw, cas, slot, nil
}

// Invalidate makes the next Refresh or Reload read the snapshot record whatever the
// generation record says: for a writer whose CAS on it was refused, so that it learns what is
// there now and the CAS to write over it with.
func (r *Reader) Invalidate() {
	r.rereadSnapshot = true
	r.checkedAt = 0
}

// Snapshot returns the view as of the last Refresh (nil before a usable list was seen).
func (r *Reader) Snapshot() *Snapshot { return r.snap }
