package blocklistsync

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/jtiguard/jtiguard/internal/sharedtest"
)

// intoStore is a store that writes a value into the caller's buffer when it fits, as
// internal/abi does in the module, and counts the buffers it had to allocate.
type intoStore struct {
	*sharedtest.Store
	allocs int
}

func (s *intoStore) GetSharedDataInto(key string, dst []byte) ([]byte, uint32, error) {
	v, cas, err := s.GetSharedData(key)
	if err != nil {
		return nil, 0, err
	}
	if len(v) > cap(dst) {
		s.allocs++
		dst = make([]byte, 0, len(v)+len(v)/8)
	}
	return append(dst[:0], v...), cas, nil
}

// TestReaderReusesSnapshotMemory: a Reader whose store can write into its buffers reads every
// new generation into the memory of the one before the list it holds, so generations of a
// list whose size settles allocate no new buffer, and each is read right: the tokens of every
// generation, and only they, are revoked. A bad snapshot in between leaves the held list
// whole. A snapshot used after its memory went to a newer generation panics instead of
// answering from the newer one.
func TestReaderReusesSnapshotMemory(t *testing.T) {
	store := &intoStore{Store: sharedtest.New()}
	now := time.Unix(1_700_000_000, 0)
	var grown []int
	r := NewReader(store, KeysFor("p."), ReaderOptions{OnGrow: func(n int) { grown = append(grown, n) }})
	var held []*Snapshot
	for gen := uint64(1); gen <= 12; gen++ {
		jtis := []string{"gen-" + strconv.FormatUint(gen, 10)}
		for i := range 500 {
			jtis = append(jtis, fmt.Sprintf("filler-%d", i))
		}
		publishTo(t, store, "p.", gen, now, false, jtis...)
		if gen == 7 { // a broken snapshot under a newer record: kept out, the list held stays
			keys := KeysFor("p.")
			if err := store.SetSharedData(keys.Snapshot, []byte("JTIS broken"), 0); err != nil {
				t.Fatal(err)
			}
			if _, _, err := r.Refresh(); !errors.Is(err, ErrBadSnapshot) {
				t.Fatalf("generation 7 broken: Refresh = %v; want ErrBadSnapshot", err)
			}
			if s := r.Snapshot(); s == nil || s.Generation != 6 || !s.Revoked(testHasher.TokenKey("", "gen-6"), 0) {
				t.Fatalf("after a broken snapshot the reader holds %v; want generation 6, whole", s)
			}
			continue
		}
		s, _, err := r.Refresh()
		if err != nil || s == nil || s.Generation != gen {
			t.Fatalf("generation %d: Refresh = %v, %v", gen, s, err)
		}
		for g := uint64(1); g <= 12; g++ {
			want := g == gen
			if got := s.Revoked(testHasher.TokenKey("", "gen-"+strconv.FormatUint(g, 10)), 0); got != want {
				t.Errorf("generation %d: gen-%d revoked = %v; want %v", gen, g, got, want)
			}
		}
		held = append(held, s)
	}
	if store.allocs != 2 || len(grown) != 2 {
		t.Errorf("12 generations of one size allocated %d buffers (OnGrow told of %v); want 2, the two slots", store.allocs, grown)
	}
	// The snapshot before the one held is still readable (its memory is the spare, untouched
	// until the next generation); the one before that is gone.
	if !held[len(held)-2].Revoked(testHasher.TokenKey("", "gen-11"), 0) {
		t.Error("the snapshot before the held one no longer answers")
	}
	defer func() {
		if p := recover(); p != errReused {
			t.Errorf("a snapshot whose memory was reused answered (recover() = %v); want a panic with errReused", p)
		}
	}()
	held[len(held)-3].Revoked(testHasher.TokenKey("", "gen-10"), 0)
}

// BenchmarkReaderHeld reports what a worker VM's Reader holds per entry once it has taken two
// generations of a list through a store that reads into its buffers, as in the module: the
// list in use and the spare the next generation is read into, each with its bucket directory
// and an eighth of room to grow (README: the list's memory per worker VM).
func BenchmarkReaderHeld(b *testing.B) {
	const n = 100_000
	jtis := make([]string, n)
	for i := range jtis {
		jtis[i] = benchJTI(i)
	}
	now := time.Unix(1_700_000_000, 0)
	for b.Loop() {
		store := &intoStore{Store: sharedtest.New()}
		r := NewReader(store, KeysFor("p."), ReaderOptions{})
		// The store (shared data, the host's memory) holds one generation throughout, of the
		// same size: measured from after the first is published, only the Reader grows.
		publishTo(b, store, "p.", 1, now, false, jtis...)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for gen := uint64(1); gen <= 2; gen++ {
			if gen > 1 {
				publishTo(b, store, "p.", gen, now, false, jtis...)
			}
			if s, _, err := r.Refresh(); err != nil || s == nil || s.Generation != gen {
				b.Fatalf("generation %d: %v, %v", gen, s, err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(r)
		runtime.KeepAlive(store)
		b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/n, "vm-B/entry")
	}
}
