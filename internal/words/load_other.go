//go:build !wasm

package words

// Load64 is the eight bytes of s at i as a little-endian word (the compiler merges the byte
// loads where the machine allows it). i+8 <= len(s).
func Load64(s string, i int) uint64 {
	_ = s[i+7]
	return uint64(s[i]) | uint64(s[i+1])<<8 | uint64(s[i+2])<<16 | uint64(s[i+3])<<24 |
		uint64(s[i+4])<<32 | uint64(s[i+5])<<40 | uint64(s[i+6])<<48 | uint64(s[i+7])<<56
}

// Load32 is the four bytes of s at i as a little-endian word; i+4 <= len(s).
func Load32(s string, i int) uint32 {
	_ = s[i+3]
	return uint32(s[i]) | uint32(s[i+1])<<8 | uint32(s[i+2])<<16 | uint32(s[i+3])<<24
}
