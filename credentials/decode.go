package credentials

import (
	"slices"
	"unicode/utf8"
	"unsafe"
)

// The decoders below append to dst and never fail: they are for discovery, where reading
// more than a framework would is the point. Each one is at least as permissive as the
// reference it names.

// b64val maps a byte to its 6-bit value in either base64 alphabet, or 0xff. Python's
// urlsafe_b64decode translates '-' and '_' to '+' and '/' and then decodes the standard
// alphabet, so both spellings are accepted; so are they here.
var b64val = func() (t [256]byte) {
	for i := range t {
		t[i] = 0xff
	}
	const std = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := 0; i < len(std); i++ {
		t[std[i]] = byte(i)
	}
	t['-'], t['_'] = 62, 63
	return t
}()

// AppendLenientBase64 decodes s as CPython's binascii.a2b_base64 in non-strict mode (what
// PyJWT's base64url_decode reaches): bytes outside the alphabet are skipped, a complete
// padding sequence ends the input, and a trailing partial group yields what it can (Python
// would raise on a single leftover character; producing more bytes than the app can only
// ever find more claims, never fewer).
// It is exported for the other readers of a token's payload (statuslist's references), so
// that every part of the filter reads a payload the same way.
func AppendLenientBase64(dst []byte, s string) []byte {
	// Whole groups of four alphabet characters first, three bytes at a time into room made
	// once: a token's payload is nothing else, and in wasm a per-byte append costs far more.
	// The loop below takes over at the first byte that is not in the alphabet, as a group
	// boundary is exactly where it would be in its own state 0.
	i := 0
	if n := len(s) / 4 * 3; n > 0 {
		dst = slices.Grow(dst, n)
		out := dst[len(dst) : len(dst)+n]
		w := 0
		for ; i+4 <= len(s); i += 4 {
			a, b, c, d := b64val[s[i]], b64val[s[i+1]], b64val[s[i+2]], b64val[s[i+3]]
			if (a|b|c|d)&0xc0 != 0 { // 0xff, not in the alphabet
				break
			}
			out[w], out[w+1], out[w+2] = a<<2|b>>4, b<<4|c>>2, c<<6|d
			w += 3
		}
		dst = dst[:len(dst)+w]
	}
	var left byte
	quad, pads := 0, 0
	for ; i < len(s); i++ {
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

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// appendPercentDecoded decodes %XX escapes (an invalid escape stays as it is) and '+' as a
// space, as werkzeug's url_unquote_plus and Python's parse_qs do.
func appendPercentDecoded(dst []byte, s string) []byte { return appendUnescaped(dst, s, true) }

// appendPercentDecodedKeepPlus decodes %XX escapes only, as RFC 3986 decoders (and cookie
// parsers that percent-decode) do.
func appendPercentDecodedKeepPlus(dst []byte, s string) []byte { return appendUnescaped(dst, s, false) }

func appendUnescaped(dst []byte, s string, plusIsSpace bool) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch c {
		case '+':
			if plusIsSpace {
				c = ' '
			}
		case '%':
			if i+2 < len(s) {
				hi, ok1 := unhex(s[i+1])
				lo, ok2 := unhex(s[i+2])
				if ok1 && ok2 {
					c = hi<<4 | lo
					i += 2
				}
			}
		}
		dst = append(dst, c)
	}
	return dst
}

// appendCookieUnescaped undoes the backslash escapes werkzeug's _cookie_unquote decodes
// inside quoted cookie values (\ooo octal for 0-255, and \x for any x), everywhere in s:
// discovery does not care whether the escape sat inside quotes.
func appendCookieUnescaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			dst = append(dst, c)
			continue
		}
		if i+3 < len(s) && s[i+1] >= '0' && s[i+1] <= '3' && isOctal(s[i+2]) && isOctal(s[i+3]) {
			dst = append(dst, (s[i+1]-'0')<<6|(s[i+2]-'0')<<3|(s[i+3]-'0'))
			i += 3
			continue
		}
		dst = append(dst, s[i+1])
		i++
	}
	return dst
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// appendJSONUnescaped undoes JSON string escapes everywhere in s (\uXXXX with surrogate
// pairs, \" \\ \/ \b \f \n \r \t); anything else is copied as it is.
func appendJSONUnescaped(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' || i+1 >= len(s) {
			dst = append(dst, c)
			continue
		}
		switch e := s[i+1]; e {
		case '"', '\\', '/':
			dst = append(dst, e)
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			r, n := unicodeEscape(s[i:])
			if n == 0 {
				dst = append(dst, c)
				continue
			}
			dst = utf8.AppendRune(dst, r)
			i += n - 1
			continue
		default:
			dst = append(dst, c)
			continue
		}
		i++
	}
	return dst
}

// UnquoteInPlace reads the JSON string whose opening quote is b[i], unescaping it in place
// (an escape is never shorter than what it stands for), and returns it as a view into b with
// the index after its closing quote. An invalid escape or a missing closing quote is not a
// string (ok false), as it makes Python's json.loads fail. Every reader of a token's payload
// (discovery, the status list references) reads strings this one way.
func UnquoteInPlace(b []byte, i int) (s string, next int, ok bool) {
	i++ // the opening quote
	start := i
	// Up to the first escape the string stays where it is: only look for its end.
	for i < len(b) && b[i] != '"' && b[i] != '\\' {
		i++
	}
	w := i
	for i < len(b) {
		c := b[i]
		switch {
		case c == '"':
			return unsafe.String(unsafe.SliceData(b[start:w]), w-start), i + 1, true
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
				r, n := unicodeEscape(unsafe.String(&b[i], len(b)-i))
				if n == 0 {
					return "", i, false
				}
				var tmp [4]byte
				w += copy(b[w:], utf8.AppendRune(tmp[:0], r))
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

// unicodeEscape reads \uXXXX (and a following low surrogate) at the start of s; n is the
// number of bytes read, 0 if s does not start with a valid escape. A lone surrogate decodes
// to U+FFFD, as encoding/json does.
func unicodeEscape(s string) (r rune, n int) {
	hex4 := func(s string) (rune, bool) {
		if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
			return 0, false
		}
		var v rune
		for _, c := range []byte(s[2:6]) {
			d, ok := unhex(c)
			if !ok {
				return 0, false
			}
			v = v<<4 | rune(d)
		}
		return v, true
	}
	hi, ok := hex4(s)
	if !ok {
		return 0, 0
	}
	if hi >= 0xd800 && hi < 0xdc00 {
		if lo, ok := hex4(s[6:]); ok && lo >= 0xdc00 && lo < 0xe000 {
			return (hi-0xd800)<<10 | (lo - 0xdc00) + 0x10000, 12
		}
		return utf8.RuneError, 6
	}
	if hi >= 0xdc00 && hi < 0xe000 {
		return utf8.RuneError, 6
	}
	return hi, 6
}

// isRunByte reports whether c can appear in a compact JWS as any framework might accept it:
// either base64 alphabet, padding, and the dot.
func isRunByte(c byte) bool { return runBytes[c] }

var runBytes = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		b := byte(c)
		t[c] = b >= 'A' && b <= 'Z' || b >= 'a' && b <= 'z' || b >= '0' && b <= '9' ||
			b == '-' || b == '_' || b == '+' || b == '/' || b == '=' || b == '.'
	}
	return t
}()

// appendWithoutNUL copies s without its NUL bytes.
func appendWithoutNUL(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if s[i] != 0 {
			dst = append(dst, s[i])
		}
	}
	return dst
}
