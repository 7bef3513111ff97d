package credentials

import (
	"iter"
	"strings"
)

// cookie is one pair of a Cookie header as werkzeug 2.2 reads it.
type cookie struct {
	rawKey, key     string // key as matched, and stripped of ASCII white space
	rawValue, value string // value as matched, and without its surrounding quotes
}

// cookiePairs yields the pairs of a Cookie header exactly as werkzeug's _cookie_parse_impl
// does (regex `(?P<key>[^=;]*)(?:\s*=\s*(?P<val>"(?:[^\\"]|\\.)*"|(?:.*?)))?\s*;` applied
// from the start, then again after each match): ';' separates pairs, but not inside a quoted
// value; a value that a newline cuts short ends the parse. Escapes in quoted values are left
// to the caller, which refuses them.
func cookiePairs(h string) iter.Seq[cookie] {
	return func(yield func(cookie) bool) {
		n := len(h)
		for i := 0; i < n; {
			k0 := i
			for i < n && h[i] != '=' && h[i] != ';' {
				i++
			}
			rawKey := h[k0:i]
			rawVal, matched := "", false
			if i < n && h[i] == '=' {
				j := i + 1
				for j < n && isReSpace(h[j]) {
					j++
				}
				if j < n && h[j] == '"' {
					if end, ok := quotedEnd(h, j); ok {
						if k := skipReSpace(h, end); k >= n || h[k] == ';' {
							rawVal, i, matched = h[j:end], k+1, true
						}
					}
				}
				for e := j; !matched; e++ {
					if k := skipReSpace(h, e); k >= n || h[k] == ';' {
						rawVal, i, matched = h[j:e], k+1, true
						break
					}
					if h[e] == '\n' {
						break // '.' does not match a newline
					}
				}
			} else {
				i++ // ';' or the end: a key without a value
				matched = true
			}
			if !matched {
				return
			}
			key := strings.Trim(rawKey, " \t\n\r\v\f")
			if key == "" {
				continue
			}
			value := rawVal
			if len(value) >= 2 && value[0] == '"' && value[len(value)-1] == '"' {
				value = value[1 : len(value)-1]
			}
			if !yield(cookie{rawKey: rawKey, key: key, rawValue: rawVal, value: value}) {
				return
			}
		}
	}
}

// quotedEnd returns the index just past the closing quote of a quoted value starting at
// h[j] == '"', following `"(?:[^\\"]|\\.)*"`.
func quotedEnd(h string, j int) (int, bool) {
	for q := j + 1; q < len(h); {
		switch h[q] {
		case '\\':
			if q+1 >= len(h) || h[q+1] == '\n' {
				return 0, false
			}
			q += 2
		case '"':
			return q + 1, true
		default:
			q++
		}
	}
	return 0, false
}

func skipReSpace(h string, k int) int {
	for k < len(h) && isReSpace(h[k]) {
		k++
	}
	return k
}

// isReSpace is `\s` in a Python bytes pattern.
func isReSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}
