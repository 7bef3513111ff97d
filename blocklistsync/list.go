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
// filter cannot tell apart but the source names apart (one jti under several issuers when
// the deployment does not key by issuer, spellings of one UUID; see keyAndID). Keys are
// keyed hashes, so unrelated items share one about never; a list past the bound is refused,
// as a lookup walks every entry of its key.
const MaxSharedKey = 64

// checkSharedKeys refuses a normalized list in which more than MaxSharedKey entries, or
// cutoffs, share a key.
func (l *List) checkSharedKeys() error {
	run := func(n int, key func(int) uint64, what string) error {
		for i, same := 1, 1; i < n; i++ {
			if key(i) != key(i-1) {
				same = 1
				continue
			}
			if same++; same > MaxSharedKey {
				return fmt.Errorf("more than %d %s share one key (one jti or subject under that many issuers or spellings)", MaxSharedKey, what)
			}
		}
		return nil
	}
	if err := run(len(l.Entries), func(i int) uint64 { return l.Entries[i].Key }, "entries"); err != nil {
		return err
	}
	return run(len(l.Cutoffs), func(i int) uint64 { return l.Cutoffs[i].Key }, "cutoffs")
}
