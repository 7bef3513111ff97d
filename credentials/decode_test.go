package credentials

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// lenientBase64Reference is AppendLenientBase64 one byte at a time, as it was written before
// its fast path: the fast path must be invisible.
func lenientBase64Reference(dst []byte, s string) []byte {
	var left byte
	quad, pads := 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '=' {
			if quad >= 2 {
				pads++
				if quad+pads >= 4 {
					return dst
				}
			}
			continue
		}
		v := b64val[c]
		if v == 0xff {
			continue
		}
		pads = 0
		switch quad {
		case 0:
			left, quad = v, 1
		case 1:
			dst = append(dst, left<<2|v>>4)
			left, quad = v&0x0f, 2
		case 2:
			dst = append(dst, left<<4|v>>2)
			left, quad = v&0x03, 3
		case 3:
			dst = append(dst, left<<6|v)
			quad = 0
		}
	}
	return dst
}

func checkLenientBase64(t *testing.T, prefix []byte, s string) {
	t.Helper()
	want := lenientBase64Reference(bytes.Clone(prefix), s)
	got := AppendLenientBase64(bytes.Clone(prefix), s)
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendLenientBase64(%q, %q) = %x; the byte-at-a-time reading gives %x", prefix, s, got, want)
	}
}

// TestLenientBase64FastPathIsInvisible: strings of alphabet characters with padding, stray
// and non-ASCII bytes sprinkled in, at every length and alignment.
func TestLenientBase64FastPathIsInvisible(t *testing.T) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_+/"
	odd := []byte("=.\n \x00\xff\xc3!%")
	r := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		n := r.IntN(80)
		b := make([]byte, n)
		for i := range b {
			if r.IntN(20) == 0 {
				b[i] = odd[r.IntN(len(odd))]
			} else {
				b[i] = alphabet[r.IntN(len(alphabet))]
			}
		}
		checkLenientBase64(t, []byte("pre")[:r.IntN(4)], string(b))
	}
}

func FuzzLenientBase64FastPath(f *testing.F) {
	for _, s := range []string{"", "e30", "eyJqdGkiOiJhIn0", "ab=c", "abc=d", "ab==cdef", "a\x00bcdefgh", "abcd====efgh"} {
		f.Add([]byte(nil), s)
	}
	f.Fuzz(func(t *testing.T, prefix []byte, s string) { checkLenientBase64(t, prefix, s) })
}
