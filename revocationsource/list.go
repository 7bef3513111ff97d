package revocationsource

import (
	"container/heap"
	"sort"
	"strings"
)

// ListFilter selects the items Index.List returns.
type ListFilter struct {
	Entries, Cutoffs bool    // which kinds; a filter on a field of one kind leaves out the other
	JTIPrefix        string  // entries whose jti starts with this
	Sub              string  // the cutoffs of this subject
	Iss              *string // items of exactly this issuer ("" = no issuer); nil = any
}

func (f ListFilter) entry(k EntryKey) bool {
	return f.Entries && f.Sub == "" && strings.HasPrefix(k.JTI, f.JTIPrefix) && (f.Iss == nil || *f.Iss == k.Iss)
}

func (f ListFilter) cutoff(k CutoffKey) bool {
	return f.Cutoffs && f.JTIPrefix == "" && (f.Sub == "" || f.Sub == k.Sub) && (f.Iss == nil || *f.Iss == k.Iss)
}

// ListPos is a place in the listing order, which is the order of the
// snapshot: entries by (jti, iss), then cutoffs by (sub, iss). A page
// starts after the last item of the one before, so changes between pages
// never repeat or skip the items that stayed.
type ListPos struct {
	Cutoff bool
	ID     string // jti or sub
	Iss    string
}

// List returns up to limit items after pos (nil: from the start) that
// match f, in listing order, and whether more follow. Each call scans the
// list once, keeping only the limit smallest keys, so a page costs O(n log
// limit) time and O(limit) memory however large the list: the admin API
// never builds the whole list for one answer.
func (x *Index) List(f ListFilter, after *ListPos, limit int) (version string, entries []Entry, cutoffs []Cutoff, more bool) {
	x.MaybeExpire()
	x.mu.RLock()
	defer x.mu.RUnlock()
	version = x.version
	if limit <= 0 {
		return version, nil, nil, false
	}
	if after == nil || !after.Cutoff {
		var from *listKey
		if after != nil {
			from = &listKey{after.ID, after.Iss}
		}
		top := topK{k: limit + 1}
		for k := range x.entries {
			if key := (listKey{k.JTI, k.Iss}); f.entry(k) && (from == nil || lessKey(*from, key)) {
				top.offer(key)
			}
		}
		for _, key := range top.sorted() {
			k := EntryKey{JTI: key.a, Iss: key.b}
			entries = append(entries, Entry{JTI: k.JTI, Iss: k.Iss, Exp: x.entries[k]})
		}
		if len(entries) > limit {
			return version, entries[:limit], nil, true
		}
	}
	room := limit - len(entries)
	var from *listKey
	if after != nil && after.Cutoff {
		from = &listKey{after.ID, after.Iss}
	}
	top := topK{k: room + 1}
	for k := range x.cutoffs {
		if key := (listKey{k.Sub, k.Iss}); f.cutoff(k) && (from == nil || lessKey(*from, key)) {
			top.offer(key)
		}
	}
	for _, key := range top.sorted() {
		k := CutoffKey{Sub: key.a, Iss: key.b}
		v := x.cutoffs[k]
		cutoffs = append(cutoffs, Cutoff{Sub: k.Sub, Iss: k.Iss, RevokedBefore: v.revokedBefore, Exp: v.exp})
	}
	if len(cutoffs) > room {
		return version, entries, cutoffs[:room], true
	}
	return version, entries, cutoffs, false
}

type listKey struct{ a, b string }

func lessKey(p, q listKey) bool {
	if p.a != q.a {
		return p.a < q.a
	}
	return p.b < q.b
}

// topK keeps the k smallest keys offered: a max-heap of at most k.
type topK struct {
	k int
	h []listKey
}

func (t *topK) Len() int           { return len(t.h) }
func (t *topK) Less(i, j int) bool { return lessKey(t.h[j], t.h[i]) }
func (t *topK) Swap(i, j int)      { t.h[i], t.h[j] = t.h[j], t.h[i] }
func (t *topK) Push(v any)         { t.h = append(t.h, v.(listKey)) }
func (t *topK) Pop() any {
	v := t.h[len(t.h)-1]
	t.h = t.h[:len(t.h)-1]
	return v
}

func (t *topK) offer(key listKey) {
	switch {
	case t.k <= 0:
	case len(t.h) < t.k:
		heap.Push(t, key)
	case lessKey(key, t.h[0]):
		t.h[0] = key
		heap.Fix(t, 0)
	}
}

func (t *topK) sorted() []listKey {
	sort.Slice(t.h, func(i, j int) bool { return lessKey(t.h[i], t.h[j]) })
	return t.h
}
