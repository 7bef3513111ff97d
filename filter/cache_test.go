package filter

import (
	"fmt"
	"testing"
)

func TestTokenCacheIsBoundedAndDropsExpired(t *testing.T) {
	c := newTokenCache(16)
	for i := 0; i < 1000; i++ {
		c.put(fmt.Sprintf("token-%d", i), tokenInfo{jti: fmt.Sprint(i), expiresAt: 2000}, 1000)
		if len(c.entries) > 16 {
			t.Fatalf("cache holds %d entries after %d puts; bound is 16", len(c.entries), i+1)
		}
	}
	c.put("fresh", tokenInfo{jti: "fresh", expiresAt: 2000}, 1000)
	if _, ok := c.get("fresh", 1999); !ok {
		t.Fatal("entry missing before its expiry")
	}
	if _, ok := c.get("fresh", 2000); ok {
		t.Fatal("entry returned at its expiry")
	}
	if _, ok := c.entries["fresh"]; ok {
		t.Fatal("expired entry kept after get")
	}
	off := newTokenCache(0)
	off.put("x", tokenInfo{}, 0)
	if len(off.entries) != 0 {
		t.Fatal("max_entries 0 still caches")
	}
}
