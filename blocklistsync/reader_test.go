package blocklistsync

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/tetratelabs/proxy-wasm-go-sdk/proxywasm/types"

	"github.com/jtiguard/jtiguard/internal/sharedtest"
)

// countingStore counts reads per key.
type countingStore struct {
	*sharedtest.Store
	reads map[string]int
}

func (s *countingStore) GetSharedData(key string) ([]byte, uint32, error) {
	s.reads[key]++
	return s.Store.GetSharedData(key)
}

func publishTo(t testing.TB, store SharedData, prefix string, gen uint64, at time.Time, byIssuer bool, jtis ...string) {
	t.Helper()
	var l List
	for _, j := range jtis {
		l.AddToken(testHasher, "", j, 0)
	}
	l.Normalize(0)
	enc, err := l.Encode(Meta{Generation: gen, Built: at, Hasher: testHasher, KeyedByIssuer: byIssuer})
	if err != nil {
		t.Fatal(err)
	}
	keys := KeysFor(prefix)
	for _, kv := range [][2]any{{keys.Snapshot, enc.Snapshot}, {keys.IDs, enc.IDs},
		{keys.Generation, Generation{Number: gen, LastSuccess: at, Entries: uint32(len(l.Entries))}.MarshalBinary()}} {
		if err := store.SetSharedData(kv[0].(string), kv[1].([]byte), 0); err != nil {
			t.Fatal(err)
		}
	}
}

// TestRecheckEveryBoundsReads: with RecheckEvery, Refresh reads the generation record at most
// that often, and a new generation is seen at most that long after it was published.
func TestRecheckEveryBoundsReads(t *testing.T) {
	store := &countingStore{sharedtest.New(), map[string]int{}}
	now := time.Unix(1_700_000_000, 0)
	r := NewReader(store, KeysFor("p."), ReaderOptions{RecheckEvery: time.Second, Now: func() time.Time { return now }})
	if r.o.RecheckEvery != MaxRecheck {
		t.Fatalf("RecheckEvery = %s; want it capped at %s", r.o.RecheckEvery, MaxRecheck)
	}
	// Without a list, every Refresh reads the record: the first list is taken at once.
	for range 3 {
		if _, _, err := r.Refresh(); !errors.Is(err, ErrNoList) {
			t.Fatalf("Refresh before any list = %v; want ErrNoList", err)
		}
	}
	publishTo(t, store, "p.", 1, now, false, "a")
	if snap, _, err := r.Refresh(); err != nil || snap.Len() != 1 {
		t.Fatalf("first Refresh = %v", err)
	}
	if got := store.reads[KeysFor("p.").Generation]; got != 4 {
		t.Fatalf("%d reads of the generation record while no list was held; want one per Refresh, 4", got)
	}
	store.reads[KeysFor("p.").Generation] = 1 // from here on, as with a list held from the start
	publishTo(t, store, "p.", 2, now, false, "a", "b")
	published := now
	for now.Sub(published) <= MaxRecheck {
		snap, _, _ := r.Refresh()
		if snap.Len() == 2 {
			break
		}
		now = now.Add(time.Millisecond)
	}
	if lag := now.Sub(published); lag > MaxRecheck {
		t.Fatalf("the new generation was seen %s after it was published; want at most %s", lag, MaxRecheck)
	}
	if got := store.reads[KeysFor("p.").Generation]; got != 2 {
		t.Fatalf("%d reads of the generation record in %s; want 2", got, MaxRecheck)
	}
	// Reload reads at once; a clock that goes backwards reads too.
	r.Reload()
	now = now.Add(-time.Second)
	r.Refresh()
	if got := store.reads[KeysFor("p.").Generation]; got != 4 {
		t.Fatalf("%d reads after Reload and a clock step back; want 4", got)
	}
}

// TestRefreshAllocatesNothingWhenNothingChanged: within RecheckEvery, Refresh makes no host
// call and no allocation; when it reads an unchanged record, it allocates nothing beyond the
// host's copy of the 32 bytes.
func TestRefreshAllocatesNothingWhenNothingChanged(t *testing.T) {
	store := sharedtest.New()
	now := time.Unix(1_700_000_000, 0)
	r := NewReader(store, KeysFor("p."), ReaderOptions{RecheckEvery: MaxRecheck, Now: func() time.Time { return now }})
	publishTo(t, store, "p.", 1, now, false, "a")
	if _, _, err := r.Refresh(); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Millisecond / 10)
		r.Refresh()
	}); n != 0 {
		t.Fatalf("Refresh within RecheckEvery: %v allocations; want 0", n)
	}
	hostCopy := testing.AllocsPerRun(1000, func() { store.GetSharedData(KeysFor("p.").Generation) })
	n := testing.AllocsPerRun(1000, func() {
		now = now.Add(MaxRecheck)
		if _, _, err := r.Refresh(); err != nil {
			t.Fatal(err)
		}
	})
	if n > hostCopy {
		t.Fatalf("Refresh reading an unchanged record: %v allocations; the host's copy alone makes %v", n, hostCopy)
	}
	t.Logf("allocations per Refresh: 0 within RecheckEvery; %v when it reads an unchanged record (the store's copy: %v)", n, hostCopy)
	plain := NewReader(store, KeysFor("p."), ReaderOptions{})
	plain.Refresh()
	if n := testing.AllocsPerRun(1000, func() { plain.Refresh() }); n > hostCopy {
		t.Fatalf("Refresh without RecheckEvery: %v allocations; the host's copy alone makes %v", n, hostCopy)
	}
}

// TestUnusableSnapshotIsCopiedOncePerRecord: a snapshot that cannot be used (keyed the other
// way, malformed) is not copied again on every Refresh, only when the record changes.
func TestUnusableSnapshotIsCopiedOncePerRecord(t *testing.T) {
	for name, prep := range map[string]func(store SharedData, at time.Time){
		"keyed the other way": func(store SharedData, at time.Time) { publishTo(t, store, "p.", 1, at, true, "a") },
		"old format": func(store SharedData, at time.Time) {
			store.SetSharedData(KeysFor("p.").Snapshot, formatOneSnapshot(1, 5), 0)
			store.SetSharedData(KeysFor("p.").Generation, Generation{Number: 1, LastSuccess: at}.MarshalBinary(), 0)
		},
	} {
		t.Run(name, func(t *testing.T) {
			store := &countingStore{sharedtest.New(), map[string]int{}}
			at := time.Unix(1_700_000_000, 0)
			prep(store, at)
			r := NewReader(store, KeysFor("p."), ReaderOptions{})
			for range 10 {
				if snap, _, err := r.Refresh(); snap != nil || err == nil || errors.Is(err, ErrNoList) {
					t.Fatalf("Refresh = %v, %v; want no list and an error", snap, err)
				}
			}
			if got := store.reads[KeysFor("p.").Snapshot]; got != 1 {
				t.Fatalf("snapshot copied %d times for one record; want 1", got)
			}
			// The next successful poll touches the record: one more try.
			store.SetSharedData(KeysFor("p.").Generation, Generation{Number: 1, LastSuccess: at.Add(time.Second)}.MarshalBinary(), 0)
			r.Refresh()
			if got := store.reads[KeysFor("p.").Snapshot]; got != 2 {
				t.Fatalf("snapshot copied %d times after the record changed; want 2", got)
			}
		})
	}
}

// racingStore lets another VM write key between a read and the write that follows it, races
// times.
type racingStore struct {
	SharedData
	key   string
	races int
}

func (r *racingStore) SetSharedData(key string, value []byte, cas uint32) error {
	if key == r.key && r.races > 0 {
		r.races--
		_, c, _ := r.SharedData.GetSharedData(key)
		if err := r.SharedData.SetSharedData(key, []byte("other"), c); err != nil {
			return err
		}
	}
	return r.SharedData.SetSharedData(key, value, cas)
}

func TestUpdateShared(t *testing.T) {
	store := &racingStore{SharedData: sharedtest.New(), key: "k"}
	var seen []string
	wrote, err := UpdateShared(store, "k", func(cur []byte, found bool) []byte {
		seen = append(seen, fmt.Sprintf("%q %v", cur, found))
		return []byte("first")
	})
	if !wrote || err != nil || len(seen) != 1 || seen[0] != `"" false` {
		t.Fatalf("an absent key: wrote %v, %v, change saw %q", wrote, err, seen)
	}
	// A write that loses the race reads again and changes what the other VM wrote.
	store.races, seen = 2, nil
	wrote, err = UpdateShared(store, "k", func(cur []byte, _ bool) []byte { seen = append(seen, string(cur)); return append(cur, '+') })
	if v, _, _ := store.GetSharedData("k"); !wrote || err != nil || string(v) != "other+" || len(seen) != 3 {
		t.Fatalf("after two lost races: wrote %v, %v, value %q, change saw %q", wrote, err, v, seen)
	}
	// nil leaves the record; four lost races in a row give up.
	if wrote, err := UpdateShared(store, "k", func([]byte, bool) []byte { return nil }); wrote || err != nil {
		t.Fatalf("change returning nil: wrote %v, %v", wrote, err)
	}
	store.races = 4
	if wrote, err := UpdateShared(store, "k", func([]byte, bool) []byte { return []byte("x") }); wrote || !errors.Is(err, types.ErrorStatusCasMismatch) {
		t.Fatalf("four lost races: wrote %v, %v; want the CAS mismatch", wrote, err)
	}
}
