package localproxytest

import (
	"time"

	"github.com/jtiguard/jtiguard/blocklistsync"
)

// Store is a shared-data store: the harness's (through HarnessStore) or the SDK emulator's.
type Store interface {
	GetSharedData(key string) ([]byte, uint32, error)
	SetSharedData(key string, value []byte, cas uint32) error
}

// List is what Publish writes: revoked jtis (any issuer) and subject cutoffs.
type List struct {
	JTIs    []string
	Cutoffs map[string]time.Time // sub → revoked_before
	// Exp is every entry's expiry (zero: none known).
	Exp time.Time
}

// Encode returns the snapshot of l as the syncer would write it for generation gen, fresh
// as of now, and the matching generation record.
func (l List) Encode(gen uint64, now time.Time) (snapshot, generation []byte, err error) {
	var bl blocklistsync.List
	var exp uint32
	if !l.Exp.IsZero() {
		exp = uint32(l.Exp.Unix())
	}
	for _, jti := range l.JTIs {
		bl.Entries = append(bl.Entries, blocklistsync.Entry{Key: blocklistsync.TokenKey("", jti), Exp: exp})
	}
	for sub, before := range l.Cutoffs {
		bl.Cutoffs = append(bl.Cutoffs, blocklistsync.Cutoff{Key: blocklistsync.SubjectKey("", sub), RevokedBefore: uint32(before.Unix())})
	}
	bl.Normalize(0)
	snapshot, err = bl.Encode(blocklistsync.Meta{Generation: gen, Built: now})
	if err != nil {
		return nil, nil, err
	}
	generation = blocklistsync.Generation{Number: gen, LastSuccess: now,
		Entries: uint32(len(bl.Entries)), Cutoffs: uint32(len(bl.Cutoffs))}.MarshalBinary()
	return snapshot, generation, nil
}

// Publish writes l into store under prefix as the next generation, snapshot first and
// generation record second (the order blocklistsync's layout requires).
func Publish(store Store, prefix string, l List) error {
	keys := blocklistsync.KeysFor(prefix)
	var gen uint64 = 1
	if raw, _, err := store.GetSharedData(keys.Generation); err == nil {
		if g, err := blocklistsync.ParseGeneration(raw); err == nil {
			gen = g.Number + 1
		}
	}
	snap, genRec, err := l.Encode(gen, time.Now())
	if err != nil {
		return err
	}
	for _, kv := range []struct {
		key string
		val []byte
	}{{keys.Snapshot, snap}, {keys.Generation, genRec}} {
		_, cas, _ := store.GetSharedData(kv.key)
		if err := store.SetSharedData(kv.key, kv.val, cas); err != nil {
			return err
		}
	}
	return nil
}
