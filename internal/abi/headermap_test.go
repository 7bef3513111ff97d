package abi

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func TestHeaderMapRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		pairs [][2]string
	}{
		{"empty", [][2]string{}},
		{"one", [][2]string{{":method", "GET"}}},
		{"several with empty value", [][2]string{{":path", "/x?y=1"}, {"a", ""}, {"authorization", "Bearer t"}}},
		{"repeated key", [][2]string{{"cookie", "a=1"}, {"cookie", "b=2"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decodeHeaderMap(encodeHeaderMap(tt.pairs))
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if len(got) != len(tt.pairs) || (len(got) > 0 && !reflect.DeepEqual(got, tt.pairs)) {
				t.Fatalf("round trip = %q; want %q", got, tt.pairs)
			}
		})
	}
}

func TestDecodeHeaderMapRejectsMalformed(t *testing.T) {
	good := encodeHeaderMap([][2]string{{"key", "value"}})
	tests := []struct {
		name string
		buf  []byte
	}{
		{"short count", []byte{1, 0}},
		{"count larger than buffer", []byte{0xff, 0xff, 0xff, 0x0f, 0, 0, 0, 0}},
		{"truncated data", good[:len(good)-3]},
		{"missing terminator", func() []byte { b := append([]byte(nil), good...); b[len(b)-1] = 'x'; return b }()},
		{"key length lies", func() []byte { b := append([]byte(nil), good...); b[4] = 200; return b }()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := decodeHeaderMap(tt.buf); !errors.Is(err, ErrBadHeaderMap) {
				t.Fatalf("decodeHeaderMap(%v) error = %v; want ErrBadHeaderMap", tt.buf, err)
			}
		})
	}
}

func FuzzDecodeHeaderMap(f *testing.F) {
	f.Add(encodeHeaderMap([][2]string{{"a", "b"}, {"c", ""}}))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, buf []byte) {
		pairs, err := decodeHeaderMap(buf)
		if err != nil {
			return
		}
		again, err := decodeHeaderMap(encodeHeaderMap(pairs))
		if err != nil || len(again) != len(pairs) {
			t.Fatalf("re-encoding a decoded map failed: %v", err)
		}
	})
}

// TestDecodeHeaderMapOnMutations decodes random maps with random bytes changed, cut or added:
// it must never panic, and a map it accepts must encode back to the start of the buffer.
func TestDecodeHeaderMapOnMutations(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	var dst [][2]string
	for range 20000 {
		var pairs [][2]string
		for n := r.IntN(5); n > 0; n-- {
			pairs = append(pairs, [2]string{strings.Repeat("k", r.IntN(12)), strings.Repeat("v", r.IntN(20))})
		}
		buf := encodeHeaderMap(pairs)
		switch r.IntN(4) {
		case 0:
			buf[r.IntN(len(buf))] = byte(r.Uint32())
		case 1:
			buf = buf[:r.IntN(len(buf)+1)]
		case 2:
			buf = append(buf, byte(r.Uint32()))
		}
		for _, view := range []bool{false, true} {
			got, err := decodeHeaderMapInto(dst, buf, view)
			if err != nil {
				continue
			}
			if enc := encodeHeaderMap(got); len(buf) > 0 && !bytes.HasPrefix(buf, enc) {
				t.Fatalf("decode(%q) = %q, which encodes as %q", buf, got, enc)
			}
			dst = got
		}
	}
}
