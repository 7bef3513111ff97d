package filter

import (
	"encoding/base64"
	"fmt"
	"testing"

	"github.com/jtiguard/jtiguard/blocklistsync"
	"github.com/jtiguard/jtiguard/credentials"
	"github.com/jtiguard/jtiguard/internal/words"
)

func TestTokenCacheIsBoundedAndDropsExpired(t *testing.T) {
	cfg := DefaultConfig()
	sc := credentials.NewScanner(&cfg.Token, [2]bool{true, true}, "")
	c := newTokenCache(16)
	for i := 0; i < 1000; i++ {
		c.putVerified(fmt.Sprintf("h.payload-%d.s", i), tokenInfo{expiresAt: 2000}, 1000, sc, false, 0)
		if c.entries.len() > 16 {
			t.Fatalf("cache holds %d entries after %d puts; bound is 16", c.entries.len(), i+1)
		}
	}
	c.putVerified("h.fresh.s", tokenInfo{expiresAt: 2000}, 1000, sc, false, 0)
	if _, ok := c.verified("h.fresh.s", "fresh", 1999, 0); !ok {
		t.Fatal("entry missing before its expiry")
	}
	if _, ok := c.verified("h.fresh.other-signature", "fresh", 1999, 0); ok {
		t.Fatal("a token that differs in its signature was taken as verified")
	}
	if _, ok := c.verified("h.fresh.s", "fresh", 2000, 0); ok {
		t.Fatal("entry returned at its expiry")
	}
	if _, ok := c.verified("h.fresh.s", "fresh", 1999, 0); ok {
		t.Fatal("expired verification kept after it was found expired")
	}
	off := newTokenCache(0)
	off.putVerified("h.x.s", tokenInfo{}, 0, sc, false, 0)
	if off.entries.len() != 0 {
		t.Fatal("max_entries 0 still caches")
	}
}

// TestTokenCacheCollisionIsAMiss plants another payload's entry in the slot of a payload's
// hash: the cache must not hand it out for that payload, as a verification or an identity.
func TestTokenCacheCollisionIsAMiss(t *testing.T) {
	cfg := DefaultConfig()
	sc := credentials.NewScanner(&cfg.Token, [2]bool{true, true}, "")
	c := newTokenCache(16)
	other := &entry{payload: "b3RoZXI", token: "h.mine.s"}
	c.entries.set(words.Hash("bWluZQ", c.seed), other)
	if _, ok := c.verified("h.mine.s", "bWluZQ", 0, 0); ok {
		t.Fatal("a colliding entry was taken as the token's verification")
	}
	if id := c.identity("bWluZQ", listOf(t, nil), sc, false, 0); id == &other.id {
		t.Fatal("a colliding entry was taken as the payload's identity")
	}
	if e := c.get("bWluZQ"); e == nil || e.payload != "bWluZQ" {
		t.Fatalf("after identity, get = %+v; want the payload's own entry", e)
	}
}

// TestNewEntryIsTwoAllocations: a new token's entry, identity and copied claims take two
// allocations (the entry, and one buffer for the payload and the claims), whatever claims
// the payload carries within credentials.MaxValues of each, a session's sid included.
func TestNewEntryIsTwoAllocations(t *testing.T) {
	cfg := DefaultConfig()
	sc := credentials.NewScanner(&cfg.Token, [2]bool{true, true}, "")
	for _, claims := range []string{
		`{"jti":"a","sub":"u","iat":1}`,
		`{"jti":"a","jti":"b","sub":"u","sub":7,"iss":"i","iss":"j","iat":1,"iat":"2"}`,
		`{}`,
		`{"jti":"a","sid":"s-1","family":7}`,
	} {
		payload := base64.RawURLEncoding.EncodeToString([]byte(claims))
		names := []string{"family", "sid"}
		pk := sc.PeekClaims(payload, names)
		var e *entry
		if n := testing.AllocsPerRun(100, func() { e = newEntry(payload, pk, names) }); n > 2 {
			t.Errorf("newEntry(%s): %.0f allocations; want at most 2", claims, n)
		}
		if e.payload != payload || e.id.jtis.n != pk.JTI.Len() || e.id.subs.n != pk.Sub.Len() || len(e.id.iats) != pk.NIat {
			t.Errorf("newEntry(%s) = %+v; does not hold what was read", claims, e)
		}
		e.id.computeKeys(blocklistsync.Hasher{}, true)
	}
}

// listOf is a list of no entries whose claim entries would name names.
func listOf(t *testing.T, names []string) *blocklistsync.Snapshot {
	t.Helper()
	h, err := blocklistsync.NewHasher()
	if err != nil {
		t.Fatal(err)
	}
	enc, err := blocklistsync.EncodeSnapshot(blocklistsync.Meta{Hasher: h, Claims: names}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := blocklistsync.DecodeSnapshot(enc.Snapshot)
	if err != nil {
		t.Fatal(err)
	}
	return s
}
