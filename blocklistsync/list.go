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

// AddToken adds a revoked (iss, jti) with its token's expiry (0: none known), keyed by h.
// iss is empty for an entry that matches the jti from any issuer, and always when the
// deployment does not key by issuer.
func (l *List) AddToken(h Hasher, iss, jti string, exp uint32) {
	k, id := keyAndID(h, domainToken, iss, jti)
	l.Entries = append(l.Entries, Entry{Key: k, ID: id, Exp: exp})
}

// AddCutoff adds a subject cutoff for (iss, sub), keyed by h; iss empty as for AddToken.
func (l *List) AddCutoff(h Hasher, iss, sub string, revokedBefore, exp uint32) {
	k, id := keyAndID(h, domainSubject, iss, sub)
	l.Cutoffs = append(l.Cutoffs, Cutoff{Key: k, ID: id, RevokedBefore: revokedBefore, Exp: exp})
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

// Normalize sorts by (Key, ID), merges what is the same entry listed twice (equal key and ID:
// the later expiry wins, a later cutoff time wins) and drops whatever expired at or before
// notBefore. Entries whose keys collide but whose IDs differ stay apart.
func (l *List) Normalize(notBefore uint32) {
	l.Entries = normalizeEntries(l.Entries, notBefore)
	l.Cutoffs = normalizeCutoffs(l.Cutoffs, notBefore)
}

func compareEntries(a, b Entry) int {
	if c := cmp.Compare(a.Key, b.Key); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

func compareCutoffs(a, b Cutoff) int {
	if c := cmp.Compare(a.Key, b.Key); c != 0 {
		return c
	}
	return cmp.Compare(a.ID, b.ID)
}

func normalizeEntries(entries []Entry, notBefore uint32) []Entry {
	slices.SortFunc(entries, compareEntries)
	out := entries[:0]
	for _, e := range entries {
		if n := len(out); n > 0 && out[n-1].Key == e.Key && out[n-1].ID == e.ID {
			out[n-1].Exp = laterExp(out[n-1].Exp, e.Exp)
			continue
		}
		out = append(out, e)
	}
	return slices.DeleteFunc(out, func(e Entry) bool { return !live(e.Exp, notBefore) })
}

func normalizeCutoffs(cutoffs []Cutoff, notBefore uint32) []Cutoff {
	slices.SortFunc(cutoffs, compareCutoffs)
	out := cutoffs[:0]
	for _, c := range cutoffs {
		if n := len(out); n > 0 && out[n-1].Key == c.Key && out[n-1].ID == c.ID {
			out[n-1].RevokedBefore = max(out[n-1].RevokedBefore, c.RevokedBefore)
			out[n-1].Exp = laterExp(out[n-1].Exp, c.Exp)
			continue
		}
		out = append(out, c)
	}
	return slices.DeleteFunc(out, func(c Cutoff) bool { return !live(c.Exp, notBefore) })
}

// Encode writes the list (already normalized) as a snapshot and its ids record.
func (l *List) Encode(meta Meta) (Encoded, error) { return EncodeSnapshot(meta, l.Entries, l.Cutoffs) }
