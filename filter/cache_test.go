package filter

import (
	"fmt"
	"testing"

	"github.com/jtiguard/jtiguard/credentials"
)

func TestTokenCacheIsBoundedAndDropsExpired(t *testing.T) {
	cfg := DefaultConfig()
	sc := credentials.NewScanner(&cfg.Token, [2]bool{true, true}, "")
	c := newTokenCache(16)
	for i := 0; i < 1000; i++ {
		c.putVerified(fmt.Sprintf("h.payload-%d.s", i), tokenInfo{expiresAt: 2000}, 1000, sc, false)
		if len(c.entries) > 16 {
			t.Fatalf("cache holds %d entries after %d puts; bound is 16", len(c.entries), i+1)
		}
	}
	c.putVerified("h.fresh.s", tokenInfo{expiresAt: 2000}, 1000, sc, false)
	if _, ok := c.verified("h.fresh.s", 1999); !ok {
		t.Fatal("entry missing before its expiry")
	}
	if _, ok := c.verified("h.fresh.other-signature", 1999); ok {
		t.Fatal("a token that differs in its signature was taken as verified")
	}
	if _, ok := c.verified("h.fresh.s", 2000); ok {
		t.Fatal("entry returned at its expiry")
	}
	if _, ok := c.verified("h.fresh.s", 1999); ok {
		t.Fatal("expired verification kept after it was found expired")
	}
	off := newTokenCache(0)
	off.putVerified("h.x.s", tokenInfo{}, 0, sc, false)
	if len(off.entries) != 0 {
		t.Fatal("max_entries 0 still caches")
	}
}
