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
	// KeyedByIssuer must match the filter's keying (it is when jwt.issuers is set), or the
	// filter refuses the list.
	KeyedByIssuer bool
}

// Encode returns the list as the syncer would write it for generation gen, fresh as of now,
// keyed by h: the snapshot, its ids record and the matching generation record.
func (l List) Encode(gen uint64, now time.Time, h blocklistsync.Hasher) (enc blocklistsync.Encoded, generation []byte, err error) {
	var bl blocklistsync.List
	var exp uint32
	if !l.Exp.IsZero() {
		exp = uint32(l.Exp.Unix())
	}
	for _, jti := range l.JTIs {
		bl.AddToken(h, "", jti, exp)
	}
	for sub, before := range l.Cutoffs {
		bl.AddCutoff(h, "", sub, uint32(before.Unix()), 0)
	}
	bl.Normalize(0)
	enc, err = bl.Encode(blocklistsync.Meta{Generation: gen, Built: now, Hasher: h, KeyedByIssuer: l.KeyedByIssuer})
	if err != nil {
		return blocklistsync.Encoded{}, nil, err
	}
	generation = blocklistsync.Generation{Number: gen, LastSuccess: now,
		Entries: uint32(len(bl.Entries)), Cutoffs: uint32(len(bl.Cutoffs))}.MarshalBinary()
	return enc, generation, nil
}

// Publish writes l into store under prefix as the next generation, in the order
// blocklistsync's layout requires (snapshot, ids, generation record). It keeps the hash key
// of the snapshot already there, as the syncer does, and draws one for the first list.
func Publish(store Store, prefix string, l List) error {
	keys := blocklistsync.KeysFor(prefix)
	var gen uint64 = 1
	if raw, _, err := store.GetSharedData(keys.Generation); err == nil {
		if g, err := blocklistsync.ParseGeneration(raw); err == nil {
			gen = g.Number + 1
		}
	}
	var h blocklistsync.Hasher
	if raw, _, err := store.GetSharedData(keys.Snapshot); err == nil {
		if s, err := blocklistsync.DecodeSnapshot(raw); err == nil {
			h = s.Hasher()
		}
	}
	if h.IsZero() {
		var err error
		if h, err = blocklistsync.NewHasher(); err != nil {
			return err
		}
	}
	enc, genRec, err := l.Encode(gen, time.Now(), h)
	if err != nil {
		return err
	}
	for _, kv := range []struct {
		key string
		val []byte
	}{{keys.Snapshot, enc.Snapshot}, {keys.IDs, enc.IDs}, {keys.Generation, genRec}} {
		_, cas, _ := store.GetSharedData(kv.key)
		if err := store.SetSharedData(kv.key, kv.val, cas); err != nil {
			return err
		}
	}
	return nil
}
