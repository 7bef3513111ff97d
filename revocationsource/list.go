package revocationsource

import (
	"container/heap"
	"sort"
	"strings"
)

// ListFilter selects the items Index.List returns.
type ListFilter struct {
	Entries, Cutoffs bool    // which kinds; a filter on a field of one kind leaves out the other
	JTIPrefix        string  // jti entries whose jti starts with this
	Claim            string  // claim entries of this claim
	Value            string  // with Claim: the claim entry of exactly this value
	Sub              string  // the cutoffs of this subject
	Iss              *string // items of exactly this issuer ("" = no issuer); nil = any
}

func (f ListFilter) entry(k EntryKey) bool {
	if !f.Entries || f.Sub != "" || f.Iss != nil && *f.Iss != k.Iss {
		return false
	}
	switch {
	case f.Claim != "":
		return k.Claim == f.Claim && (f.Value == "" || k.JTI == f.Value)
	case f.JTIPrefix != "":
		return k.Claim == "" && strings.HasPrefix(k.JTI, f.JTIPrefix)
	}
	return true
}

func (f ListFilter) cutoff(k CutoffKey) bool {
	return f.Cutoffs && f.JTIPrefix == "" && f.Claim == "" && (f.Sub == "" || f.Sub == k.Sub) && (f.Iss == nil || *f.Iss == k.Iss)
}

// ListPos is a place in the listing order, which is the order of the
// snapshot: jti entries by (jti, iss), claim entries by (claim, value, iss),
// then cutoffs by (sub, iss). A page starts after the last item of the one
// before, so changes between pages never repeat or skip the items that
// stayed.
type ListPos struct {
	Cutoff bool
	Claim  string // a claim entry's claim
	ID     string // jti, claim value or sub
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
			from = &listKey{after.Claim, after.ID, after.Iss}
		}
		top := topK{k: limit + 1}
		for k := range x.entries {
			if key := (listKey{k.Claim, k.JTI, k.Iss}); f.entry(k) && (from == nil || lessKey(*from, key)) {
				top.offer(key)
			}
		}
		for _, key := range top.sorted() {
			k := EntryKey{Claim: key.c, JTI: key.a, Iss: key.b}
			entries = append(entries, k.Entry(x.entries[k]))
		}
		if len(entries) > limit {
			return version, entries[:limit], nil, true
		}
	}
	room := limit - len(entries)
	var from *listKey
	if after != nil && after.Cutoff {
		from = &listKey{"", after.ID, after.Iss}
	}
	top := topK{k: room + 1}
	for k := range x.cutoffs {
		if key := (listKey{"", k.Sub, k.Iss}); f.cutoff(k) && (from == nil || lessKey(*from, key)) {
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

// listKey orders the items of one kind: c is a claim entry's claim ("" for
// jti entries and cutoffs), a the jti, value or sub, b the iss.
type listKey struct{ c, a, b string }

func lessKey(p, q listKey) bool {
	if p.c != q.c {
		return p.c < q.c
	}
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
