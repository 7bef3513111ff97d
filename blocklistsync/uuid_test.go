package blocklistsync

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestUUIDSpellingsShareAKey: every spelling of one UUID that PostgreSQL's uuid input or
// Python's uuid.UUID reads, and SQLAlchemy's 32 hex digits, is one key, as a jti, a subject
// and a claim value, on the list's side (keyAndID) and the token's (Hasher) alike; and it is
// the key of the canonical text, as docs/feed.md documents.
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
		k, id := keyAndID(h, domainToken, []byte(nil), []byte(s))
		if k != h.TokenKey("", canon) {
			t.Errorf("%q: the list's key is not the token's", s)
		}
		kc, idc := keyAndID(h, domainToken, "", canon)
		if k != kc || id != idc {
			t.Errorf("%q: key and ID differ from the canonical text's", s)
		}
		ck, cid := claimKeyAndID(h, "", "sid", s)
		if ck2, cid2 := claimKeyAndID(h, "", "sid", canon); ck != ck2 || cid != cid2 {
			t.Errorf("%q: claim key and ID differ from the canonical text's", s)
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
		"6f1e2b0c-7d7c-4c1a-9a57-2b0f7c8e9d1",            // 31 digits
		"6f1e2b0c-7d7c-4c1a-9a57-2b0f7c8e9d100",          // 33
		"6f1e2b0c-7d7c-4c1a-9a57-2b0f7c8e9d1g",           // not hex
		"{6f1e2b0c-7d7c-4c1a-9a57-2b0f7c8e9d10",          // one brace
		"6f1e2b0c 7d7c 4c1a 9a57 2b0f7c8e9d10",           // spaces
		"urn:uuid:{6f1e2b0c-7d7c-4c1a-9a57-2b0f7c8e9d10", // one brace after the prefix
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
