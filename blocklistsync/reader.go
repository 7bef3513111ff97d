package blocklistsync

import (
	"errors"
	"fmt"
	"time"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"
)

// SharedData is the host's shared key-value store as Envoy implements it: get returns a copy
// and a CAS token; set with a stale token fails with types.ErrorStatusCasMismatch; a missing
// key gets types.ErrorStatusNotFound. internal/abi provides it in the plugin; tests use an
// in-memory store with the same rules.
type SharedData interface {
	GetSharedData(key string) ([]byte, uint32, error)
	SetSharedData(key string, value []byte, cas uint32) error
}

// Reader is one worker VM's view of the shared blocklist. Refresh costs one small shared-data
// read; only when the generation number moved does it copy and index the new snapshot.
type Reader struct {
	store SharedData
	keys  Keys

	snap    *Snapshot
	snapCAS uint32 // CAS of the snapshot key when snap was read: the writer's guard
	gen     Generation
	// freshAt is the last successful sync that the held snapshot is known to reflect. It stays
	// put when a newer generation cannot be adopted, so a broken snapshot ages into
	// max_staleness instead of being reported fresh.
	freshAt time.Time
}

// NewReader returns a Reader of the blocklist under keys.
func NewReader(store SharedData, keys Keys) *Reader { return &Reader{store: store, keys: keys} }

// Refresh brings the local view up to date with shared data and returns it. It returns
// ErrNoList before any list was published; on a malformed record or snapshot it keeps the
// previous view and returns the error wrapped, so the caller can log it and carry on.
func (r *Reader) Refresh() (*Snapshot, time.Time, error) {
	raw, _, err := r.store.GetSharedData(r.keys.Generation)
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
	if r.snap != nil && r.snap.Generation >= gen.Number {
		if r.snap.Generation == gen.Number && gen.LastSuccess.After(r.freshAt) {
			r.freshAt = gen.LastSuccess
		}
		return r.snap, r.freshAt, nil
	}
	snap, cas, err := r.load(gen)
	if err != nil {
		return r.snap, r.freshAt, err
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

func (r *Reader) load(gen Generation) (*Snapshot, uint32, error) {
	raw, cas, err := r.store.GetSharedData(r.keys.Snapshot)
	if err != nil {
		return nil, 0, fmt.Errorf("read snapshot of generation %d: %w", gen.Number, err)
	}
	snap, err := DecodeSnapshot(raw)
	if err != nil {
		return nil, 0, err
	}
	if snap.Generation < gen.Number {
		return nil, 0, fmt.Errorf("%w: snapshot %d, record %d", ErrSnapshotTooOld, snap.Generation, gen.Number)
	}
	return snap, cas, nil
}

// Snapshot returns the view as of the last Refresh (nil before a list was seen).
func (r *Reader) Snapshot() *Snapshot { return r.snap }
