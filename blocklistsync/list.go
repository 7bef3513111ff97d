package blocklistsync

import (
	"cmp"
	"slices"
)

// List is a blocklist being built by the sync side: from a full feed, or from the current
// snapshot plus a delta. It ends in a snapshot through Encode.
type List struct {
	Entries []Entry
	Cutoffs []Cutoff
}

// laterExp keeps the later of two expiries; 0 means "no known expiry" and outlives any time.
func laterExp(a, b uint32) uint32 {
	if a == 0 || b == 0 {
		return 0
	}
	return max(a, b)
}

// live reports whether an expiry is still in force at notBefore (Unix seconds).
func live(exp, notBefore uint32) bool { return exp == 0 || exp > notBefore }

// Normalize sorts by key, merges duplicates (the later expiry wins, a later cutoff time wins)
// and drops whatever expired at or before notBefore.
func (l *List) Normalize(notBefore uint32) {
	l.Entries = normalizeEntries(l.Entries, notBefore)
	l.Cutoffs = normalizeCutoffs(l.Cutoffs, notBefore)
}

func normalizeEntries(entries []Entry, notBefore uint32) []Entry {
	slices.SortFunc(entries, func(a, b Entry) int { return cmp.Compare(a.Key, b.Key) })
	out := entries[:0]
	for _, e := range entries {
		if n := len(out); n > 0 && out[n-1].Key == e.Key {
			out[n-1].Exp = laterExp(out[n-1].Exp, e.Exp)
			continue
		}
		out = append(out, e)
	}
	return slices.DeleteFunc(out, func(e Entry) bool { return !live(e.Exp, notBefore) })
}

func normalizeCutoffs(cutoffs []Cutoff, notBefore uint32) []Cutoff {
	slices.SortFunc(cutoffs, func(a, b Cutoff) int { return cmp.Compare(a.Key, b.Key) })
	out := cutoffs[:0]
	for _, c := range cutoffs {
		if n := len(out); n > 0 && out[n-1].Key == c.Key {
			out[n-1].RevokedBefore = max(out[n-1].RevokedBefore, c.RevokedBefore)
			out[n-1].Exp = laterExp(out[n-1].Exp, c.Exp)
			continue
		}
		out = append(out, c)
	}
	return slices.DeleteFunc(out, func(c Cutoff) bool { return !live(c.Exp, notBefore) })
}

// Encode writes the list (already normalized) as a snapshot.
func (l *List) Encode(meta Meta) ([]byte, error) { return EncodeSnapshot(meta, l.Entries, l.Cutoffs) }
