package blocklistsync

import (
	"cmp"
	"fmt"
	"slices"
)

// List is a blocklist being built by the sync side: from a full feed, or from the current
// snapshot plus a delta. It ends in a snapshot through Encode.
type List struct {
	Entries []Entry
	Cutoffs []Cutoff
	// Claims names the claims that the list's claim entries revoke by (sid, ...), ascending,
	// at most MaxClaimNames. The snapshot carries them so that a worker reads exactly these
	// claims of every token: a claim entry the filter were not told to look for would
	// silently never match. A delta's names are added to the held list's; they are dropped
	// only by a snapshot that no longer names them.
	Claims []string
}

// MaxClaimNames bounds the distinct claim names of one list's claim entries: a worker reads
// each of them from every token it sees (sid, and a few more an operator revokes by).
const MaxClaimNames = 8

// errTooManyClaims is a list whose claim entries name more than MaxClaimNames claims.
var errTooManyClaims = fmt.Errorf("claim entries name more than %d distinct claims", MaxClaimNames)

// addClaimName records that a claim entry names claim.
func (l *List) addClaimName(claim []byte) error {
	i, found := slices.BinarySearch(l.Claims, string(claim))
	if found {
		return nil
	}
	if len(l.Claims) == MaxClaimNames {
		return fmt.Errorf("%w: %q", errTooManyClaims, claim)
	}
	l.Claims = slices.Insert(l.Claims, i, string(claim))
	return nil
}

// AddClaim adds a claim entry: every token (from iss, empty as for AddToken) whose claim
// named claim is value, keyed by h. claim must pass CheckClaimName.
func (l *List) AddClaim(h Hasher, iss, claim, value string, exp uint32) error {
	if err := CheckClaimName(claim); err != nil {
		return err
	}
	if err := l.addClaimName([]byte(claim)); err != nil {
		return err
	}
	k, id := claimKeyAndID(h, iss, iss, claim, value)
	l.Entries = append(l.Entries, Entry{Key: k, ID: id, Exp: exp})
	return nil
}

// AddToken adds a revoked (iss, jti) with its token's expiry (0: none known), keyed by h.
// iss is empty for an entry that matches the jti from any issuer, and always when the
// deployment does not key by issuer.
func (l *List) AddToken(h Hasher, iss, jti string, exp uint32) {
	k, id := keyAndID(h, domainToken, iss, iss, jti)
	l.Entries = append(l.Entries, Entry{Key: k, ID: id, Exp: exp})
}

// AddCutoff adds a subject cutoff for (iss, sub), keyed by h; iss empty as for AddToken.
func (l *List) AddCutoff(h Hasher, iss, sub string, revokedBefore, exp uint32) {
	k, id := keyAndID(h, domainSubject, iss, iss, sub)
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
func (l *List) Encode(meta Meta) (Encoded, error) {
	meta.Claims = l.Claims
	return EncodeSnapshot(meta, l.Entries, l.Cutoffs)
}

// MaxSharedKey bounds the entries (and the cutoffs) of one list that share a key: items the
// filter cannot tell apart but the source names apart (one jti under several issuers when the
// deployment does not key by issuer, spellings of one UUID; see keyAndID), each kept as its own
// entry so that a removal takes only the one it names. A lookup walks every entry of its key,
// so past the bound the rest are folded (foldSharedKeys).
const MaxSharedKey = 64

// foldedID is the ID of the entry (or cutoff) that holds a key's items past MaxSharedKey. Real
// IDs are never 0 (nonZero).
const foldedID = 0

// foldSharedKeys keeps at most MaxSharedKey entries, and cutoffs, under one key in a
// normalized list: past the bound, the items of the highest IDs are folded into one of ID
// foldedID that revokes for as long as the latest of them would (the later expiry; for a
// cutoff also the later revoked_before). A removal that names a folded item then finds nothing
// to remove, so the key stays revoked until the fold expires: more revoked, never less. The
// list is never refused for it, so a source's other revocations keep coming through.
func (l *List) foldSharedKeys() {
	l.Entries = foldRuns(l.Entries, func(e Entry) uint64 { return e.Key }, func(e Entry) uint64 { return e.ID },
		func(over []Entry) Entry {
			f := Entry{Key: over[0].Key, ID: foldedID, Exp: over[0].Exp}
			for _, e := range over[1:] {
				f.Exp = laterExp(f.Exp, e.Exp)
			}
			return f
		})
	l.Cutoffs = foldRuns(l.Cutoffs, func(c Cutoff) uint64 { return c.Key }, func(c Cutoff) uint64 { return c.ID },
		func(over []Cutoff) Cutoff {
			f := Cutoff{Key: over[0].Key, ID: foldedID, RevokedBefore: over[0].RevokedBefore, Exp: over[0].Exp}
			for _, c := range over[1:] {
				f.RevokedBefore, f.Exp = max(f.RevokedBefore, c.RevokedBefore), laterExp(f.Exp, c.Exp)
			}
			return f
		})
}

// foldRuns folds each run of more than MaxSharedKey items with one key (items sorted by key
// and ID, so an earlier fold, of ID 0, leads its run) into MaxSharedKey: the fold first, then
// the lowest other IDs. A list without such a run is returned as it is.
func foldRuns[T any](items []T, key, id func(T) uint64, fold func([]T) T) []T {
	long := false
	for i, same := 1, 1; i < len(items) && !long; i++ {
		if key(items[i]) != key(items[i-1]) {
			same = 1
		} else if same++; same > MaxSharedKey {
			long = true
		}
	}
	if !long {
		return items
	}
	out := make([]T, 0, len(items))
	for i := 0; i < len(items); {
		j := i + 1
		for j < len(items) && key(items[j]) == key(items[i]) {
			j++
		}
		run := items[i:j]
		i = j
		if len(run) <= MaxSharedKey {
			out = append(out, run...)
			continue
		}
		var over []T
		if id(run[0]) == foldedID {
			over, run = append(over, run[0]), run[1:]
		}
		over = append(over, run[MaxSharedKey-1:]...)
		out = append(append(out, fold(over)), run[:MaxSharedKey-1]...)
	}
	return out
}
