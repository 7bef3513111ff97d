// Package words reads strings eight bytes at a time, for the request path inside the module.
//
// Go's wasm runtime compares and hashes strings a byte at a time (internal/bytealg's
// memeqbody is a byte loop, and Go's wasm backend never merges byte loads), and every loop
// iteration of compiled Go code branches back through the function's dispatch loop. On a cache
// hit the token is compared and its payload looked up in full, so these are most of what
// a string costs there. Natively the same code compiles to plain loads.
package words

// Equal reports whether a == b, comparing eight bytes at a time.
func Equal(a, b string) bool {
	n := len(a)
	if n != len(b) {
		return false
	}
	if n < 8 {
		return a == b
	}
	for i := 0; i < n-8; i += 8 {
		if Load64(a, i) != Load64(b, i) {
			return false
		}
	}
	return Load64(a, n-8) == Load64(b, n-8) // the last eight bytes, overlapping the loop's
}

// Hash is a seeded 64-bit hash of s, eight bytes at a time. It is no defence against an
// adversary who knows the seed: use it only where a collision costs a lookup that misses, never
// where it could change an answer (a caller compares the strings themselves).
func Hash(s string, seed uint64) uint64 {
	const m = 0x9e3779b97f4a7c15 // 2^64 / golden ratio: odd, bits well spread
	h := (seed ^ uint64(len(s))) * m
	i := 0
	for ; i+8 <= len(s); i += 8 {
		h = (h ^ Load64(s, i)) * m
		h ^= h >> 29
	}
	if i < len(s) {
		var t uint64
		for j := len(s) - 1; j >= i; j-- {
			t = t<<8 | uint64(s[j])
		}
		h = (h ^ t) * m
		h ^= h >> 29
	}
	h ^= seed
	h *= m
	return h ^ h>>32
}
