//go:build wasm

package words

import "unsafe"

// Load64 is the eight bytes of s at i as a little-endian word, in one load: Go's wasm backend
// does not merge byte loads, and wasm allows unaligned ones. i+8 <= len(s), checked (a read
// past a string in linear memory would not trap).
func Load64(s string, i int) uint64 {
	_ = s[i+7]
	return *(*uint64)(unsafe.Add(unsafe.Pointer(unsafe.StringData(s)), i))
}

// Load32 is the four bytes of s at i as a little-endian word, in one load; i+4 <= len(s),
// checked.
func Load32(s string, i int) uint32 {
	_ = s[i+3]
	return *(*uint32)(unsafe.Add(unsafe.Pointer(unsafe.StringData(s)), i))
}
