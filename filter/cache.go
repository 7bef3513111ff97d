package filter

import "strings"

// tokenCache remembers tokens whose signature and claims were verified, so a token seen
// again skips the signature check (the expensive part: tens of microseconds for RS256 in a
// wasm VM). It never caches a revocation answer: the blocklist is consulted on every request.
//
// Bounded by entry count; each key is a whole token of at most token.max_bytes, so a VM's
// cache holds at most max_entries × max_bytes of keys. Eviction is by arbitrary choice (Go's
// randomised map iteration): cheap, O(1) amortised, and good enough for a cache whose misses
// only cost a verification.
type tokenCache struct {
	max     int
	entries map[string]tokenInfo
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, entries: make(map[string]tokenInfo, min(max, 4096))}
}

// get returns the token's info if cached and not expired at now (Unix seconds).
func (c *tokenCache) get(token string, now int64) (tokenInfo, bool) {
	info, ok := c.entries[token]
	if !ok {
		return tokenInfo{}, false
	}
	if info.expiresAt != 0 && now >= info.expiresAt {
		delete(c.entries, token) // dropped at the token's expiry: it must be re-judged
		return tokenInfo{}, false
	}
	return info, true
}

// put stores a verified token. The key is cloned: the token is usually a slice of a larger
// header value that the cache must not keep alive.
func (c *tokenCache) put(token string, info tokenInfo, now int64) {
	if c.max == 0 {
		return
	}
	if len(c.entries) >= c.max {
		// Look at a few arbitrary entries: drop the first, and any of them that expired.
		scanned := 0
		for k, e := range c.entries {
			if scanned == 0 || e.expiresAt != 0 && now >= e.expiresAt {
				delete(c.entries, k)
			}
			if scanned++; scanned == 8 {
				break
			}
		}
	}
	c.entries[strings.Clone(token)] = info
}
