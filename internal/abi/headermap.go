package abi

import (
	"encoding/binary"
	"errors"
	"unsafe"
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
	count := binary.LittleEndian.Uint32(buf)
	// Each pair needs 8 bytes of lengths and 2 terminators: bound count before allocating.
	if uint64(count)*10 > uint64(len(buf)-4) {
		return dst, ErrBadHeaderMap
	}
	lens := buf[4:]
	data := buf[4+8*int(count):]
	if cap(dst) < int(count) {
		dst = make([][2]string, 0, count)
	}
	for i := 0; i < int(count); i++ {
		kl := int(binary.LittleEndian.Uint32(lens[8*i:]))
		vl := int(binary.LittleEndian.Uint32(lens[8*i+4:]))
		if kl < 0 || vl < 0 || kl+1+vl+1 > len(data) || data[kl] != 0 || data[kl+1+vl] != 0 {
			return dst[:0], ErrBadHeaderMap
		}
		k, v := data[:kl], data[kl+1:kl+1+vl]
		if view {
			dst = append(dst, [2]string{bytesView(k), bytesView(v)})
		} else {
			dst = append(dst, [2]string{string(k), string(v)})
		}
		data = data[kl+1+vl+1:]
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
