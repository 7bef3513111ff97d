package filter

// entryTable maps a payload's hash (words.Hash, seeded) to its cache entry. It replaces a
// Go map for the request path in wasm: the map hashes its uint64 key again with a 64×64→128-bit
// multiply, which wasm lacks, and a cold token's eviction (an iteration, a delete, an insert
// into a table full of tombstones) measured about 1 µs in the module; this costs a probe or
// two. Open addressing with linear probing over a power-of-two array kept at most half
// full, indexed by the key's own bits; deletion shifts the following entries back, so no
// tombstones accumulate; eviction takes the next occupied slot after a rotating hand,
// passing over entries used since its last turn (the clock algorithm, see evictOne).
type entryTable struct {
	keys []uint64 // 0 is an empty slot; stored keys are never 0 (see slotKey)
	vals []*entry
	n    int
	hand int
	max  int // the most slots the table grows to: twice the entry bound, rounded up
}

// minTableSlots is the first size of a table: it grows by doubling, as entries come, up to
// max; a configured bound of a million entries costs nothing until they are there.
const minTableSlots = 64

func newEntryTable(maxEntries int) entryTable {
	size := minTableSlots
	for size < 2*maxEntries {
		size *= 2
	}
	return entryTable{max: size}
}

// slotKey is key as stored: never 0, the empty slot. Two hashes that differ only in bit 0
// share a slot key, which is a collision like any other (the cache compares payloads).
func slotKey(key uint64) uint64 { return key | 1 }

func (t *entryTable) len() int { return t.n }

// home is the slot a stored key's probe starts at: from the bits above bit 0, which slotKey
// sets on every key (starting from the key itself would use only odd slots first, and probe
// about 12 % longer).
func home(k uint64, mask int) int { return int(k>>1) & mask }

// get returns the entry stored under key, or nil.
func (t *entryTable) get(key uint64) *entry {
	if t.n == 0 {
		return nil
	}
	k, mask := slotKey(key), len(t.keys)-1
	for i := home(k, mask); ; i = (i + 1) & mask {
		switch t.keys[i] {
		case k:
			return t.vals[i]
		case 0:
			return nil
		}
	}
}

// has reports whether an entry is stored under key.
func (t *entryTable) has(key uint64) bool { return t.get(key) != nil }

// set stores e under key, replacing the entry stored under it if any, which it returns.
func (t *entryTable) set(key uint64, e *entry) (replaced *entry) {
	if 2*(t.n+1) > len(t.keys) && len(t.keys) < t.max {
		t.grow()
	}
	k, mask := slotKey(key), len(t.keys)-1
	for i := home(k, mask); ; i = (i + 1) & mask {
		switch t.keys[i] {
		case k:
			replaced, t.vals[i] = t.vals[i], e
			return replaced
		case 0:
			t.keys[i], t.vals[i] = k, e
			t.n++
			return nil
		}
	}
}

func (t *entryTable) grow() {
	size := max(minTableSlots, 2*len(t.keys))
	old, oldVals := t.keys, t.vals
	t.keys, t.vals, t.n = make([]uint64, size), make([]*entry, size), 0
	mask := size - 1
	for j, k := range old {
		if k == 0 {
			continue
		}
		i := home(k, mask)
		for t.keys[i] != 0 {
			i = (i + 1) & mask
		}
		t.keys[i], t.vals[i] = k, oldVals[j]
		t.n++
	}
}

// evictOne removes one entry, by the clock algorithm ("second chance"): the hand passes over
// the slots in order; an entry used since the hand last passed (its used bit, set by the
// cache on every hit) loses the bit and stays, the first one not used is removed. A token
// that requests keep coming back with is thus not evicted for one that came once, which
// random eviction did about once in a hundred requests of a mixed load, paying a second
// verification each time (docs/benchmarks.md, the mix). Each pass over an entry clears a bit a
// hit set, so an eviction costs O(1) amortised; one full turn at most clears every bit.
// It returns the entry removed.
func (t *entryTable) evictOne() *entry {
	if t.n == 0 {
		return nil
	}
	mask := len(t.keys) - 1
	for {
		i := t.hand & mask
		t.hand++
		if t.keys[i] == 0 {
			continue
		}
		e := t.vals[i]
		if e.used {
			e.used = false
			continue
		}
		t.remove(i)
		return e
	}
}

// remove empties slot i and shifts back the entries after it that probing would no longer
// reach (Knuth's algorithm R for linear probing).
func (t *entryTable) remove(i int) {
	mask := len(t.keys) - 1
	t.n--
	for {
		t.keys[i], t.vals[i] = 0, nil
		j := i
		for {
			j = (j + 1) & mask
			if t.keys[j] == 0 {
				return
			}
			h := home(t.keys[j], mask)
			// The entry at j stays unless its home lies cyclically outside (i, j].
			if i <= j {
				if i < h && h <= j {
					continue
				}
			} else if i < h || h <= j {
				continue
			}
			break
		}
		t.keys[i], t.vals[i] = t.keys[j], t.vals[j]
		i = j
	}
}
