package blocklistsync

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// TestUUIDSpellingsShareAKey: the spellings of one UUID that PostgreSQL's uuid input reads,
// those of Python's uuid.UUID short of int()'s own, and SQLAlchemy's 32 hex digits, are one key,
// as a jti, a subject and a claim value, on the list's side (keyAndID) and the token's (Hasher)
// alike; and it is the key of the canonical text, as docs/feed.md documents.
func TestUUIDSpellingsShareAKey(t *testing.T) {
	h := testHasher
	const canon = "6f1e2b0c-7d7c-4c1a-9a57-2b0f7c8e9d10"
	spellings := []string{
		canon,
		strings.ToUpper(canon),
		strings.ReplaceAll(canon, "-", ""),
		strings.ToUpper(strings.ReplaceAll(canon, "-", "")),
		"{" + canon + "}",
		"{6f1e2b0c7d7c4c1a9a572b0f7c8e9d10}",
		"6f1e-2b0c-7d7c-4c1a-9a57-2b0f-7c8e-9d10",
		"{6f1e2b0c-7d7c4c1a-9a572b0f-7c8e9d10}",
		"urn:uuid:" + canon,
		"URN:UUID:" + strings.ToUpper(canon),
		"6F1e2B0c-7d7C-4c1A-9a57-2B0f7C8e9D10",
		"{" + canon, canon + "}", "{{" + canon + "}}", "uuid:" + canon, "urn:" + canon, "uuid:urn:" + canon,
		"urn:uuid:{" + canon + "}",
	}
	for _, s := range spellings {
		var u [uuidLen]byte
		if !canonicalUUID(s, &u) || string(u[:]) != canon {
			t.Errorf("canonicalUUID(%q) = %q, %v; want %q", s, u[:], canonicalUUID(s, &u), canon)
		}
		if h.TokenKey("", s) != h.TokenKey("", canon) || h.SubjectKey("i", s) != h.SubjectKey("i", canon) ||
			h.ClaimKey("", "sid", s) != h.ClaimKey("", "sid", canon) {
			t.Errorf("%q: not the key of %q", s, canon)
		}
		// The list's key is the token's; the ID is the spelling's own, so that two spellings
		// at the source stay two entries (removing one leaves the other).
		k, id := keyAndID(h, domainToken, []byte(nil), []byte(nil), []byte(s))
		if k != h.TokenKey("", canon) {
			t.Errorf("%q: the list's key is not the token's", s)
		}
		if _, idc := keyAndID(h, domainToken, "", "", canon); (id == idc) != (s == canon) {
			t.Errorf("%q: ID equal to the canonical text's: %v", s, id == idc)
		}
		ck, cid := claimKeyAndID(h, "", "", "sid", s)
		if ck2, cid2 := claimKeyAndID(h, "", "", "sid", canon); ck != ck2 || (cid == cid2) != (s == canon) {
			t.Errorf("%q: claim key differs from the canonical text's, or its ID is not the spelling's own", s)
		}
	}
	var buf [shortMessage]byte
	if got, want := h.TokenKey("", "{"+strings.ToUpper(canon)+"}"), primary(nonZero(sipHash24(h.k0, h.k1, message(&buf, domainToken, "", canon)))); got != want {
		t.Fatalf("key of a UUID = %#x; want SipHash of the documented message with the canonical text %#x", got, want)
	}
}

// TestNonUUIDsKeepTheirSpelling: values that are not UUIDs are hashed as they are, so case
// and hyphens still tell them apart.
func TestNonUUIDsKeepTheirSpelling(t *testing.T) {
	h := testHasher
	for _, s := range []string{
		"6f1e2b0c-7d7c-4c1a-9a57-2b0f7c8e9d1",     // 31 digits
		"6f1e2b0c-7d7c-4c1a-9a57-2b0f7c8e9d100",   // 33
		"6f1e2b0c-7d7c-4c1a-9a57-2b0f7c8e9d1g",    // not hex
		"6f1e2b0c 7d7c 4c1a 9a57 2b0f7c8e9d10",    // spaces
		"x:6f1e2b0c-7d7c-4c1a-9a57-2b0f7c8e9d10",  // another prefix
		"6f1e2b0c-7d7c-4c1a-9a57-2b0f7c8e9d10{x}", // a brace inside
		"abc", "", "ABCDEF",
	} {
		var u [uuidLen]byte
		if canonicalUUID(s, &u) {
			t.Errorf("canonicalUUID(%q) = %q; want no UUID", s, u[:])
		}
		var buf [shortMessage]byte
		if got, want := h.TokenKey("", s), primary(nonZero(sipHash24(h.k0, h.k1, message(&buf, domainToken, "", s)))); got != want {
			t.Errorf("%q: key %#x, want the hash of the value as spelled %#x", s, got, want)
		}
	}
	if h.TokenKey("", "ABCDEF") == h.TokenKey("", "abcdef") {
		t.Error("case folded for a value that is not a UUID")
	}
}

// TestRandomUUIDSpellings: generated UUIDs, each written with random case and hyphens
// anywhere, keep their canonical text's key; one character changed does not.
func TestRandomUUIDSpellings(t *testing.T) {
	h := testHasher
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		canon := fmt.Sprintf("%08x-%04x-%04x-%04x-%012x", r.Uint32(), r.Uint32()&0xffff, r.Uint32()&0xffff,
			r.Uint32()&0xffff, r.Uint64()&0xffffffffffff)
		var b strings.Builder
		for _, c := range strings.ReplaceAll(canon, "-", "") {
			if r.IntN(5) == 0 {
				b.WriteByte('-')
			}
			if r.IntN(2) == 0 {
				c = []rune(strings.ToUpper(string(c)))[0]
			}
			b.WriteRune(c)
		}
		s := b.String()
		if r.IntN(3) == 0 {
			s = "{" + s + "}"
		}
		if h.TokenKey("", s) != h.TokenKey("", canon) {
			t.Fatalf("%q: not the key of %q", s, canon)
		}
		other := []byte(canon)
		other[0] ^= 1 // '0'..'9' and 'a'..'f' stay hex digits but change
		if other[0] < '0' || other[0] > 'f' {
			continue
		}
		if h.TokenKey("", string(other)) == h.TokenKey("", canon) {
			t.Fatalf("%q and %q share a key", other, canon)
		}
	}
}

// TestFoldSharedKeys: a run past MaxSharedKey keeps MaxSharedKey items in (key, ID) order, the
// fold first; the fold holds the latest expiry and revoked_before of what it took; folding again
// after more items came takes the earlier fold in; other keys are untouched.
func TestFoldSharedKeys(t *testing.T) {
	var l List
	for i := range MaxSharedKey + 10 {
		l.Entries = append(l.Entries, Entry{Key: 7, ID: uint64(100 + i), Exp: uint32(1000 + i)})
		l.Cutoffs = append(l.Cutoffs, Cutoff{Key: 7, ID: uint64(100 + i), RevokedBefore: uint32(500 + i), Exp: 0})
	}
	l.Entries = append(l.Entries, Entry{Key: 9, ID: 1, Exp: 5})
	l.Normalize(0)
	l.foldSharedKeys()
	if len(l.Entries) != MaxSharedKey+1 || len(l.Cutoffs) != MaxSharedKey {
		t.Fatalf("entries %d, cutoffs %d; want %d and %d", len(l.Entries), len(l.Cutoffs), MaxSharedKey+1, MaxSharedKey)
	}
	if f := l.Entries[0]; f.ID != foldedID || f.Exp != uint32(1000+MaxSharedKey+9) {
		t.Errorf("fold %+v; want ID 0 and the latest expiry", f)
	}
	if f := l.Cutoffs[0]; f.ID != foldedID || f.RevokedBefore != uint32(500+MaxSharedKey+9) || f.Exp != 0 {
		t.Errorf("cutoff fold %+v; want ID 0, the latest revoked_before, no expiry", f)
	}
	if !slices.IsSortedFunc(l.Entries, compareEntries) || l.Entries[len(l.Entries)-1] != (Entry{Key: 9, ID: 1, Exp: 5}) {
		t.Errorf("entries out of order or another key touched: %v", l.Entries)
	}
	l.Entries = append(l.Entries, Entry{Key: 7, ID: 99999, Exp: 1})
	l.Normalize(0)
	l.foldSharedKeys()
	if len(l.Entries) != MaxSharedKey+1 || l.Entries[0].ID != foldedID || l.Entries[0].Exp != uint32(1000+MaxSharedKey+9) {
		t.Errorf("after a second fold: %d entries, first %+v", len(l.Entries), l.Entries[0])
	}
}
