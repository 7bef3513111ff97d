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

// unquoteReference is UnquoteInPlace as it was written before its fast path to the first
// escape.
func unquoteReference(b []byte, i int) (s string, next int, ok bool) {
	i++
	start, w := i, i
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return string(b[start:w]), i + 1, true
		case c == '\\':
			if i+1 >= len(b) {
				return "", i, false
			}
			var out byte
			switch e := b[i+1]; e {
			case '"', '\\', '/':
				out = e
			case 'b':
				out = '\b'
			case 'f':
				out = '\f'
			case 'n':
				out = '\n'
			case 'r':
				out = '\r'
			case 't':
				out = '\t'
			case 'u':
				r, n := unicodeEscape(string(b[i:]))
				if n == 0 {
					return "", i, false
				}
				w += copy(b[w:], string(r))
				i += n
				continue
			default:
				return "", i, false
			}
			b[w] = out
			w++
			i += 2
		default:
			b[w] = c
			w++
			i++
		}
	}
	return "", i, false
}

// TestUnquoteInPlaceFastPathIsInvisible: strings with and without escapes (valid, invalid,
// surrogates), closed or not, give what the reference gives, and leave the same bytes behind.
func TestUnquoteInPlaceFastPathIsInvisible(t *testing.T) {
	parts := []string{"a", "bc", " ", "é", `\"`, `\\`, `\/`, `\n`, `\t`, `\u0041`, `\ud83d\ude00`, `\ud800`, `\x`, `\`, `"`, "\x00"}
	r := rand.New(rand.NewPCG(3, 4))
	for range 20000 {
		var s []byte
		s = append(s, '"')
		for range r.IntN(8) {
			s = append(s, parts[r.IntN(len(parts))]...)
		}
		if r.IntN(4) > 0 {
			s = append(s, '"')
		}
		s = append(s, "tail"...)
		got, want := bytes.Clone(s), bytes.Clone(s)
		gs, gn, gok := UnquoteInPlace(got, 0)
		ws, wn, wok := unquoteReference(want, 0)
		if gs != ws || gn != wn || gok != wok || (gok && !bytes.Equal(got, want)) {
			t.Fatalf("UnquoteInPlace(%q) = %q, %d, %v; reference %q, %d, %v", s, gs, gn, gok, ws, wn, wok)
		}
	}
}
