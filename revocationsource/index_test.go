package revocationsource

import (
	"errors"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeClock is a settable clock, safe for concurrent use.
type fakeClock struct{ unix atomic.Int64 }

func newFakeClock(unix int64) *fakeClock { c := &fakeClock{}; c.unix.Store(unix); return c }
func (c *fakeClock) Now() time.Time      { return time.Unix(c.unix.Load(), 0) }
func (c *fakeClock) Add(d int64)         { c.unix.Add(d) }

const t0 = 1_700_000_000

func put(jti string, exp int64) Change {
	return Change{Op: OpPutEntry, Entry: Entry{JTI: jti, Exp: exp}}
}
func del(jti string) Change { return Change{Op: OpRemoveEntry, Entry: Entry{JTI: jti}} }

func TestIndexVersionIsContentDigest(t *testing.T) {
	a := NewIndex(newFakeClock(t0).Now, 0)
	b := NewIndex(newFakeClock(t0).Now, 0)
	if a.Version() != b.Version() {
		t.Fatalf("empty indexes differ: %s %s", a.Version(), b.Version())
	}
	empty := a.Version()
	a.Apply([]Change{put("x", t0+10), put("y", 0)})
	b.Apply([]Change{put("y", 0)})
	b.Apply([]Change{put("x", t0+10)})
	if a.Version() != b.Version() {
		t.Fatalf("same content, different order gave %s and %s", a.Version(), b.Version())
	}
	b.Apply([]Change{put("x", t0+11)})
	if a.Version() == b.Version() {
		t.Fatal("different exp gave the same version")
	}
	a.Apply([]Change{del("x"), del("y")})
	if a.Version() != empty {
		t.Fatalf("back to empty: got %s want %s", a.Version(), empty)
	}
	if len(a.Version()) > MaxVersionBytes {
		t.Fatal("version too long")
	}
}

func TestIndexDelta(t *testing.T) {
	clk := newFakeClock(t0)
	tests := []struct {
		name        string
		before      []Change
		after       []Change
		wantAdded   []string
		wantRemoved []string
	}{
		{"add", nil, []Change{put("a", 0)}, []string{"a"}, nil},
		{"remove", []Change{put("a", 0)}, []Change{del("a")}, nil, []string{"a"}},
		// Back at the base content, so the base version itself is current.
		{"add then remove is no change", nil, []Change{put("a", 0), del("a")}, nil, nil},
		{"add then remove then other", nil, []Change{put("a", 0), del("a"), put("b", 0)}, []string{"b"}, nil},
		{"replace exp", []Change{put("a", t0+5)}, []Change{put("a", t0+50)}, []string{"a"}, nil},
		{"no-op put", []Change{put("a", 0)}, []Change{put("a", 0)}, nil, nil},
		{"remove absent", nil, []Change{del("zz")}, nil, nil},
		{"already expired put is dropped", nil, []Change{put("old", t0-3600)}, nil, nil},
		{"put expired within the grace is kept", nil, []Change{put("leeway", t0-1)}, []string{"leeway"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := NewIndex(clk.Now, 0)
			x.Apply(tt.before)
			base := x.Version()
			for _, ch := range tt.after {
				x.Apply([]Change{ch})
			}
			version, d, ok := x.Delta(base)
			if !ok {
				t.Fatal("delta from a known version refused")
			}
			if version != x.Version() {
				t.Fatalf("delta version %s, index %s", version, x.Version())
			}
			var added, removed []string
			for _, e := range d.Added {
				added = append(added, e.JTI)
			}
			for _, k := range d.Removed {
				removed = append(removed, k.JTI)
			}
			if !equalStrings(added, tt.wantAdded) || !equalStrings(removed, tt.wantRemoved) {
				t.Fatalf("added %v removed %v, want %v %v", added, removed, tt.wantAdded, tt.wantRemoved)
			}
		})
	}
}

func equalStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestIndexUnknownAndTruncatedVersions(t *testing.T) {
	x := NewIndex(newFakeClock(t0).Now, 8)
	if _, _, ok := x.Delta("c1.nope"); ok {
		t.Fatal("delta from an unknown version")
	}
	x.Apply([]Change{put("first", 0)})
	old := x.Version()
	for i := range 20 {
		x.Apply([]Change{put(string(rune('a'+i)), 0)})
	}
	if _, _, ok := x.Delta(old); ok {
		t.Fatal("delta from a version older than the log")
	}
	recent := x.Version()
	x.Apply([]Change{put("last", 0)})
	if _, d, ok := x.Delta(recent); !ok || len(d.Added) != 1 || d.Added[0].JTI != "last" {
		t.Fatalf("recent delta: ok=%v %+v", ok, d)
	}
}

func TestIndexExpiry(t *testing.T) {
	clk := newFakeClock(t0)
	x := NewIndex(clk.Now, 0)
	x.SetExpiryGrace(0)
	x.Apply([]Change{put("short", t0+10), put("long", t0+100), put("forever", 0),
		{Op: OpPutCutoff, Cutoff: Cutoff{Sub: "u", RevokedBefore: t0, Exp: t0 + 10}}})
	base := x.Version()
	clk.Add(10) // exp is exclusive: at exp the token is no longer valid
	_, entries, cutoffs := x.Snapshot()
	if len(entries) != 2 || entries[0].JTI != "forever" || entries[1].JTI != "long" || len(cutoffs) != 0 {
		t.Fatalf("after expiry: %+v %+v", entries, cutoffs)
	}
	_, d, ok := x.Delta(base)
	if !ok || len(d.Removed) != 1 || d.Removed[0].JTI != "short" || len(d.CutoffsRemoved) != 1 {
		t.Fatalf("expiry delta: ok=%v %+v", ok, d)
	}
}

func TestIndexDropsInvalid(t *testing.T) {
	var invalid int
	x := NewIndex(newFakeClock(t0).Now, 0)
	x.OnInvalid = func() { invalid++ }
	long := string(make([]byte, MaxIDBytes+1))
	x.Apply([]Change{put("", 0), put(long, 0), put("\xff", 0), put("ok", MaxUnixSeconds+1), put("fine", 0)})
	if n, _ := x.Len(); n != 1 || invalid != 4 {
		t.Fatalf("entries %d invalid %d", n, invalid)
	}
}

func TestIndexMerge(t *testing.T) {
	x := NewIndex(newFakeClock(t0).Now, 0)
	x.Apply([]Change{{Op: OpPutEntry, Entry: Entry{JTI: "a", Exp: t0 + 100}, Merge: true}})
	x.Apply([]Change{{Op: OpPutEntry, Entry: Entry{JTI: "a", Exp: t0 + 50}, Merge: true}})
	_, e, _ := x.Snapshot()
	if e[0].Exp != t0+100 {
		t.Fatalf("merge kept %d", e[0].Exp)
	}
	x.Apply([]Change{{Op: OpPutEntry, Entry: Entry{JTI: "a"}, Merge: true}})
	if _, e, _ = x.Snapshot(); e[0].Exp != 0 {
		t.Fatalf("no expiry should win, got %d", e[0].Exp)
	}
}

func TestReconcileKeepsConcurrentChanges(t *testing.T) {
	x := NewIndex(newFakeClock(t0).Now, 0)
	x.Apply([]Change{put("stays", 0), put("goes", 0), put("deleted-meanwhile", 0)})
	since := x.Seq()
	// The store read below started at since; meanwhile an admin revoked
	// "new" and unrevoked "deleted-meanwhile".
	x.Apply([]Change{put("new", 0), del("deleted-meanwhile")})
	stale := State{Entries: []Entry{{JTI: "stays"}, {JTI: "deleted-meanwhile"}, {JTI: "from-store"}}}
	if err := x.Reconcile(stale, since); err != nil {
		t.Fatal(err)
	}
	_, e, _ := x.Snapshot()
	var got []string
	for _, en := range e {
		got = append(got, en.JTI)
	}
	if want := []string{"from-store", "new", "stays"}; !equalStrings(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
}

func TestReconcileStale(t *testing.T) {
	x := NewIndex(newFakeClock(t0).Now, 4)
	since := x.Seq()
	for i := range 10 {
		x.Apply([]Change{put(string(rune('a'+i)), 0)})
	}
	if err := x.Reconcile(State{}, since); !errors.Is(err, ErrStaleReconcile) {
		t.Fatalf("got %v", err)
	}
}

// TestIndexHammer runs writers, readers and delta clients at once; -race
// checks the locking, and every delta is replayed onto a client copy that
// must end equal to the index.
func TestIndexHammer(t *testing.T) {
	clk := newFakeClock(t0)
	x := NewIndex(clk.Now, 1000)
	const writers, loops = 8, 300
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range loops {
				jti := string(rune('A'+w)) + "-" + string(rune('a'+i%26))
				if i%3 == 2 {
					x.Apply([]Change{del(jti)})
				} else {
					x.Apply([]Change{put(jti, int64(t0+1000+i))})
				}
			}
		}()
	}
	stop := make(chan struct{})
	var deltas atomic.Int64
	var readers sync.WaitGroup
	for range 4 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			client := map[EntryKey]int64{}
			version, entries, _ := x.Snapshot()
			for _, e := range entries {
				client[e.Key()] = e.Exp
			}
			for done := false; !done; {
				select {
				case <-stop:
					done = true // one last catch-up after the writers ended
				default:
				}
				v, d, ok := x.Delta(version)
				if !ok {
					// Log overrun or delta bigger than a snapshot: resync
					// as the filter would.
					var entries []Entry
					version, entries, _ = x.Snapshot()
					clear(client)
					for _, e := range entries {
						client[e.Key()] = e.Exp
					}
					continue
				}
				deltas.Add(1)
				for _, k := range d.Removed {
					delete(client, k)
				}
				for _, e := range d.Added {
					client[e.Key()] = e.Exp
				}
				version = v
				runtime.Gosched()
			}
			_, want, _ := x.Snapshot()
			if len(want) != len(client) {
				t.Errorf("client replaying deltas holds %d entries, snapshot %d", len(client), len(want))
			}
			for _, e := range want {
				if exp, ok := client[e.Key()]; !ok || exp != e.Exp {
					t.Errorf("client lacks %+v", e)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	if deltas.Load() == 0 {
		t.Fatal("no delta was ever served")
	}
	// Final check: a delta from the empty version equals the snapshot.
	_, entries, _ := x.Snapshot()
	n, _ := x.Len()
	if len(entries) != n {
		t.Fatalf("snapshot %d entries, index %d", len(entries), n)
	}
	if want := writers * 26; n > want || n == 0 {
		t.Fatalf("unexpected entry count %d", n)
	}
}

func jtis(x *Index) []string {
	_, e, _ := x.Snapshot()
	var out []string
	for _, en := range e {
		out = append(out, en.JTI)
	}
	return out
}

// TestIndexExpiryGrace: with a clock leeway the filter accepts a token until
// exp + leeway, so the list keeps its entry (and a cutoff) until exp + grace.
func TestIndexExpiryGrace(t *testing.T) {
	clk := newFakeClock(t0)
	x := NewIndex(clk.Now, 0)
	if x.ExpiryGrace() != DefaultExpiryGrace {
		t.Fatalf("default grace %s", x.ExpiryGrace())
	}
	x.SetExpiryGrace(60 * time.Second)
	x.Apply([]Change{put("a", t0+10), {Op: OpPutCutoff, Cutoff: Cutoff{Sub: "u", RevokedBefore: t0, Exp: t0 + 10}}})
	for _, at := range []int64{t0 + 10, t0 + 69} {
		clk.unix.Store(at)
		if got := jtis(x); !equalStrings(got, []string{"a"}) {
			t.Fatalf("at exp+%d: %v", at-t0-10, got)
		}
		if _, c := x.Len(); c != 1 {
			t.Fatalf("cutoff gone at exp+%d", at-t0-10)
		}
	}
	clk.unix.Store(t0 + 70)
	if got := jtis(x); len(got) != 0 {
		t.Fatalf("at exp+grace: %v", got)
	}
	if _, c := x.Len(); c != 0 {
		t.Fatal("cutoff kept past exp+grace")
	}
	// A put that arrives late but within the grace is served; one past it is not.
	x.Apply([]Change{put("late", t0+11), put("too-late", t0+10)})
	if got := jtis(x); !equalStrings(got, []string{"late"}) {
		t.Fatalf("late puts: %v", got)
	}
}

// TestIndexHoldsItemsWhoseTimeCame: a store that drops an item because its
// time came (a Redis TTL, an eviction, a cleanup of expired rows) must not
// take it out of the list before exp + grace; an unrevoke must.
func TestIndexHoldsItemsWhoseTimeCame(t *testing.T) {
	clk := newFakeClock(t0)
	x := NewIndex(clk.Now, 0)
	x.SetExpiryGrace(60 * time.Second)
	x.Apply([]Change{put("ttl", t0+10), put("evicted", t0+1000), put("unrevoked", t0+1000), put("forever", 0)})
	v := x.Version()
	clk.unix.Store(t0 + 10)
	x.Apply([]Change{
		{Op: OpRemoveEntry, Entry: Entry{JTI: "ttl"}, Expired: true},
		{Op: OpRemoveEntry, Entry: Entry{JTI: "evicted"}, Expired: true},
		del("unrevoked"),
	})
	if got := jtis(x); !equalStrings(got, []string{"evicted", "forever", "ttl"}) {
		t.Fatalf("after removals: %v", got)
	}
	if e, _ := x.Held(); e != 2 {
		t.Fatalf("held %d", e)
	}
	// A full read that no longer has the held items does not drop them.
	if err := x.Reconcile(State{Entries: []Entry{{JTI: "forever"}}}, x.Seq()); err != nil {
		t.Fatal(err)
	}
	if got := jtis(x); !equalStrings(got, []string{"evicted", "forever", "ttl"}) {
		t.Fatalf("after reconcile: %v", got)
	}
	clk.unix.Store(t0 + 70)
	if got := jtis(x); !equalStrings(got, []string{"evicted", "forever"}) {
		t.Fatalf("at ttl's exp+grace: %v", got)
	}
	// The app deletes the evicted key outright: that is an unrevoke.
	x.Apply([]Change{del("evicted")})
	if got := jtis(x); !equalStrings(got, []string{"forever"}) {
		t.Fatalf("after explicit delete of a held entry: %v", got)
	}
	if e, _ := x.Held(); e != 0 {
		t.Fatalf("held %d after everything left", e)
	}
	if x.Version() == v {
		t.Fatal("version unchanged")
	}
}

// TestReconcileHoldsExpiredMissingItems: a full read without an item whose
// exp has come (Redis deleted the key at its TTL, and the notification was
// lost) holds it; one whose exp is still ahead was deleted, and goes.
func TestReconcileHoldsExpiredMissingItems(t *testing.T) {
	clk := newFakeClock(t0)
	x := NewIndex(clk.Now, 0)
	x.SetExpiryGrace(60 * time.Second)
	x.Apply([]Change{put("expired", t0+5), put("deleted", t0+500),
		{Op: OpPutCutoff, Cutoff: Cutoff{Sub: "u", RevokedBefore: t0, Exp: t0 + 5}}})
	clk.unix.Store(t0 + 5)
	v := x.Version()
	if err := x.Reconcile(State{}, x.Seq()); err != nil {
		t.Fatal(err)
	}
	if got := jtis(x); !equalStrings(got, []string{"expired"}) {
		t.Fatalf("after reconcile: %v", got)
	}
	if _, c := x.Len(); c != 1 {
		t.Fatal("expired cutoff dropped before exp+grace")
	}
	if x.Version() == v {
		t.Fatal("the deletion did not change the version")
	}
	// The store has the held item again (re-revoked): it is no longer held,
	// so a later explicit delete removes it at once.
	x.Apply([]Change{put("expired", t0+5)})
	if e, _ := x.Held(); e != 0 {
		t.Fatalf("held %d after the store put it back", e)
	}
}

// TestIndexNeverDropsBeforeExpPlusGrace is a randomized property: whatever
// mix of puts, expiry-caused removals, reconciles and clock steps, an entry
// that was put and never explicitly removed is in the list while now <
// exp + grace.
func TestIndexNeverDropsBeforeExpPlusGrace(t *testing.T) {
	const grace = 30
	for seed := range int64(200) {
		r := rand.New(rand.NewPCG(uint64(seed), 1))
		clk := newFakeClock(t0)
		x := NewIndex(clk.Now, 16)
		x.SetExpiryGrace(grace * time.Second)
		model := map[string]int64{} // jti -> exp of entries that must stay until exp+grace
		store := map[string]int64{}
		for range 200 {
			jti := string(rune('a' + r.IntN(8)))
			now := clk.Now().Unix()
			switch r.IntN(5) {
			case 0: // the store gets a revocation
				exp := now + int64(r.IntN(40))
				store[jti] = exp
				x.Apply([]Change{put(jti, exp)})
				model[jti] = exp
			case 1: // the store drops an item whose time came
				if exp, ok := store[jti]; ok && exp <= now {
					delete(store, jti)
					x.Apply([]Change{{Op: OpRemoveEntry, Entry: Entry{JTI: jti}, Expired: true}})
				}
			case 2: // a full read of the store
				st := State{}
				for j, exp := range store {
					if exp > now { // a TTL store no longer lists expired keys
						st.Entries = append(st.Entries, Entry{JTI: j, Exp: exp})
					}
				}
				if err := x.Reconcile(st, x.Seq()); err != nil {
					t.Fatal(err)
				}
			case 3:
				clk.Add(int64(r.IntN(10)))
			case 4: // an unrevoke
				delete(store, jti)
				delete(model, jti)
				x.Apply([]Change{del(jti)})
			}
			have := map[string]bool{}
			for _, j := range jtis(x) {
				have[j] = true
			}
			for j, exp := range model {
				if clk.Now().Unix() < exp+grace && !have[j] {
					t.Fatalf("seed %d: %q (exp %d) dropped at %d, before exp+grace", seed, j, exp-t0, clk.Now().Unix()-t0)
				}
			}
		}
	}
}
