package filter

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestEntryTableMatchesAMap drives an entryTable and a Go map with the same random sets,
// gets and evictions, over keys chosen to crowd a few home slots (so probing, wrap-around and
// the backward shift of deletion are exercised), and checks after every step that they hold
// the same entries and that the table never fills more than half its slots.
func TestEntryTableMatchesAMap(t *testing.T) {
	for _, bound := range []int{1, 3, 16, 100, 1000} {
		r := rand.New(rand.NewPCG(uint64(bound), 7))
		tab := newEntryTable(bound)
		model := map[uint64]*entry{}
		keys := make([]uint64, 3*bound+5)
		for i := range keys {
			// Few distinct low bits, so that many keys share a home slot; some differ only
			// in bit 0, which the table stores as one key.
			keys[i] = r.Uint64()&^0xffff | uint64(r.IntN(8))<<1 | uint64(r.IntN(2))
		}
		for step := range 20000 {
			k := keys[r.IntN(len(keys))]
			switch op := r.IntN(10); {
			case op < 5:
				e := &entry{payload: "x"}
				if _, ok := model[slotKey(k)]; !ok && len(model) >= bound {
					tab.evictOne()
					evicted := 0
					for mk := range model {
						if tab.get(mk) == nil {
							delete(model, mk)
							evicted++
						}
					}
					if evicted != 1 {
						t.Fatalf("bound %d step %d: evictOne removed %d entries", bound, step, evicted)
					}
				}
				tab.set(k, e)
				model[slotKey(k)] = e
			default:
				if got, want := tab.get(k), model[slotKey(k)]; got != want {
					t.Fatalf("bound %d step %d: get(%#x) = %p; want %p", bound, step, k, got, want)
				}
			}
			if tab.len() != len(model) || tab.len() > bound {
				t.Fatalf("bound %d step %d: table holds %d entries, model %d, bound %d", bound, step, tab.len(), len(model), bound)
			}
			if 2*tab.len() > len(tab.keys) {
				t.Fatalf("bound %d step %d: %d entries in %d slots", bound, step, tab.len(), len(tab.keys))
			}
			if step%97 == 0 {
				for mk, e := range model {
					if tab.get(mk) != e {
						t.Fatalf("bound %d step %d: entry %#x lost", bound, step, mk)
					}
				}
			}
		}
	}
}

// TestCacheKeepsTokensInUse is the eviction policy's property: tokens that requests keep
// coming back with are never evicted for tokens seen once, however many of those come, as
// long as the tokens in use fit the cache. Random eviction lost one of them about once per
// hundred requests of the benchmarks' mix, each loss paying a second verification.
func TestCacheKeepsTokensInUse(t *testing.T) {
	for _, c := range []struct{ max, inUse int }{{64, 32}, {64, 63}, {1024, 300}, {1024, 1000}} {
		cache := newTokenCache(c.max)
		inUse := make([]string, c.inUse)
		for i := range inUse {
			inUse[i] = fmt.Sprintf("in-use-%d", i)
			cache.put(&entry{payload: inUse[i]})
		}
		for i := range 20 * c.max {
			cache.put(&entry{payload: fmt.Sprintf("once-%d", i)})
			// Every token in use comes back between two new ones.
			for _, p := range inUse {
				if cache.get(p) == nil {
					t.Fatalf("max %d, %d in use: %q evicted after %d tokens seen once", c.max, c.inUse, p, i+1)
				}
			}
			if cache.entries.len() > c.max {
				t.Fatalf("max %d: %d entries", c.max, cache.entries.len())
			}
		}
	}
}
