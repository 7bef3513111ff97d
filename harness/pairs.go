package harness

import (
	"encoding/binary"
	"errors"
	"strings"
)

// Limits Envoy applies to a header map serialised by the module
// (PROXY_WASM_HOST_PAIRS_MAX_BYTES and _COUNT in proxy-wasm-cpp-host).
const (
	maxPairsBytes = 1 << 20
	maxPairsCount = 1024
)

var errPairs = errors.New("malformed header map")

// Pairs is an ordered header map as the ABI sees it: repeated keys allowed,
// order preserved. Keys of HTTP header maps are lower case (Envoy stores them
// as LowerCaseString).
type Pairs [][2]string

// Get returns the value of the first pair named key (case-insensitive), as
// Envoy's proxy_get_header_map_value does for a repeated header.
func (p Pairs) Get(key string) (string, bool) {
	for _, kv := range p {
		if strings.EqualFold(kv[0], key) {
			return kv[1], true
		}
	}
	return "", false
}

// Values returns every value of key, in order.
func (p Pairs) Values(key string) []string {
	var out []string
	for _, kv := range p {
		if strings.EqualFold(kv[0], key) {
			out = append(out, kv[1])
		}
	}
	return out
}

func (p Pairs) clone() Pairs { return append(Pairs(nil), p...) }

// add appends a pair with a lower-cased key.
func (p Pairs) add(key, value string) Pairs {
	return append(p, [2]string{strings.ToLower(key), value})
}

// replace sets the first pair named key and drops the others, or appends it,
// which is what Envoy's HeaderMap::setCopy does.
func (p Pairs) replace(key, value string) Pairs {
	key = strings.ToLower(key)
	out := p[:0:0]
	found := false
	for _, kv := range p {
		if strings.EqualFold(kv[0], key) {
			if found {
				continue
			}
			found = true
			kv[1] = value
		}
		out = append(out, kv)
	}
	if !found {
		out = append(out, [2]string{key, value})
	}
	return out
}

// remove drops every pair named key.
func (p Pairs) remove(key string) Pairs {
	out := p[:0:0]
	for _, kv := range p {
		if !strings.EqualFold(kv[0], key) {
			out = append(out, kv)
		}
	}
	return out
}

// encodePairs serialises p in the ABI's header map wire format:
//
//	u32 count | count × (u32 key_len, u32 value_len) | count × (key \0 value \0)
//
// All integers little-endian. An empty map encodes to nil (size 0), which is
// what Envoy hands to the module for an empty map.
func encodePairs(p Pairs) []byte {
	if len(p) == 0 {
		return nil
	}
	b := make([]byte, pairsSize(p))
	marshalPairs(b, p)
	return b
}

// pairsSize is the size of p's encoding (cpp-host's pairsSize).
func pairsSize(p Pairs) int {
	size := 4
	for _, kv := range p {
		size += 8 + len(kv[0]) + 1 + len(kv[1]) + 1
	}
	return size
}

// marshalPairs writes p's encoding into b, which holds pairsSize(p) bytes (cpp-host's
// marshalPairs, which writes into the memory the module allocated).
func marshalPairs(b []byte, p Pairs) {
	binary.LittleEndian.PutUint32(b, uint32(len(p)))
	off := 4
	for _, kv := range p {
		binary.LittleEndian.PutUint32(b[off:], uint32(len(kv[0])))
		binary.LittleEndian.PutUint32(b[off+4:], uint32(len(kv[1])))
		off += 8
	}
	for _, kv := range p {
		off += copy(b[off:], kv[0])
		b[off] = 0
		off++
		off += copy(b[off:], kv[1])
		b[off] = 0
		off++
	}
}

// decodePairs parses the wire format written by a module. A zero-length
// input is an empty map. Like Envoy it refuses maps over 1 MiB or 1024 pairs;
// unlike Envoy (which silently yields an empty map) it reports why, and the
// callers turn that into the empty map Envoy would see.
func decodePairs(b []byte) (Pairs, error) {
	if len(b) == 0 {
		return nil, nil
	}
	if len(b) > maxPairsBytes {
		return nil, errPairs
	}
	if len(b) < 4 {
		return nil, errPairs
	}
	n := binary.LittleEndian.Uint32(b)
	if n > maxPairsCount || uint64(len(b)) < 4+uint64(n)*8 {
		return nil, errPairs
	}
	sizes := b[4 : 4+n*8]
	data := b[4+n*8:]
	out := make(Pairs, 0, n)
	for i := uint32(0); i < n; i++ {
		kl := uint64(binary.LittleEndian.Uint32(sizes[i*8:]))
		vl := uint64(binary.LittleEndian.Uint32(sizes[i*8+4:]))
		if uint64(len(data)) < kl+1+vl+1 || data[kl] != 0 || data[kl+1+vl] != 0 {
			return nil, errPairs
		}
		out = append(out, [2]string{string(data[:kl]), string(data[kl+1 : kl+1+vl])})
		data = data[kl+1+vl+1:]
	}
	return out, nil
}
