package abi

import (
	"encoding/binary"
	"errors"
	"unsafe"

	"github.com/jtiguard/jtiguard/internal/words"
)

// ErrBadHeaderMap is returned when the host hands over a header map that does not follow
// the ABI's wire format; the plugin treats the map as unreadable rather than guessing.
var ErrBadHeaderMap = errors.New("abi: malformed header map")

// encodeHeaderMap writes pairs in the ABI's wire format (little-endian):
//
//	u32 count | count × (u32 key_len, u32 value_len) | key0 \0 value0 \0 key1 \0 …
//
// An empty map still encodes its count, because hosts read at least 4 bytes.
func encodeHeaderMap(pairs [][2]string) []byte {
	size := 4
	for _, p := range pairs {
		size += 8 + len(p[0]) + 1 + len(p[1]) + 1
	}
	buf := make([]byte, size)
	binary.LittleEndian.PutUint32(buf, uint32(len(pairs)))
	lens := buf[4:]
	data := buf[4+8*len(pairs):]
	for i, p := range pairs {
		binary.LittleEndian.PutUint32(lens[8*i:], uint32(len(p[0])))
		binary.LittleEndian.PutUint32(lens[8*i+4:], uint32(len(p[1])))
		n := copy(data, p[0])
		data[n] = 0
		data = data[n+1:]
		n = copy(data, p[1])
		data[n] = 0
		data = data[n+1:]
	}
	return buf
}

// decodeHeaderMap is the inverse of encodeHeaderMap, copying every string.
func decodeHeaderMap(buf []byte) ([][2]string, error) { return decodeHeaderMapInto(nil, buf, false) }

// decodeHeaderMapInto decodes into dst's backing array (grown if needed). With view set, the
// strings point into buf instead of copying it: no allocation once dst is large enough, and
// valid only while buf is. It checks every length against the buffer, so a short or lying map
// from the host yields ErrBadHeaderMap, never a panic.
func decodeHeaderMapInto(dst [][2]string, buf []byte, view bool) ([][2]string, error) {
	dst = dst[:0]
	if len(buf) == 0 {
		return dst, nil
	}
	if len(buf) < 4 {
		return dst, ErrBadHeaderMap
	}
	b := bytesView(buf) // read with words.Load32: one load per length in the module
	count := words.Load32(b, 0)
	// Each pair needs 8 bytes of lengths and 2 terminators: bound count before allocating.
	if uint64(count)*10 > uint64(len(buf)-4) {
		return dst, ErrBadHeaderMap
	}
	if cap(dst) < int(count) {
		dst = make([][2]string, 0, count)
	}
	dst = dst[:count]
	off := 4 + 8*int(count) // the next key
	for i := range dst {
		kl := int(words.Load32(b, 4+8*i))
		vl := int(words.Load32(b, 8+8*i))
		end := off + kl + 1 + vl // the value's terminator
		if kl < 0 || vl < 0 || end >= len(buf) || end < off || buf[off+kl] != 0 || buf[end] != 0 {
			return dst[:0], ErrBadHeaderMap
		}
		// Element by element: in wasm, Go moves a [2]string (32 bytes) with memory.copy,
		// which the engines run as a call.
		if view {
			dst[i][0], dst[i][1] = b[off:off+kl], b[off+kl+1:end]
		} else {
			dst[i][0], dst[i][1] = string(buf[off:off+kl]), string(buf[off+kl+1:end])
		}
		off = end + 1
	}
	return dst, nil
}

// bytesView is b as a string without copying; b must not change while the string is used.
func bytesView(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// EncodeHeaders writes pairs in the ABI's wire format, for replies sent many times (see
// SendHTTPResponse): encode once, at configuration.
func EncodeHeaders(pairs [][2]string) []byte { return encodeHeaderMap(pairs) }
