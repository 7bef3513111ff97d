package jwtverify

import (
	"strconv"
	"unicode/utf8"
)

// A byte-level JSON scanner for the header and the claims. It reads member names exactly
// (case-sensitively, after unescaping, as PyJWT and RFC 7519 do), decodes only the members
// we use, and skips the rest while still checking them against RFC 8259, so a token is
// refused whenever encoding/json would refuse it. It never allocates: strings are unescaped
// in place (an escape is never shorter than what it stands for), and nesting is tracked in
// a fixed bit stack instead of by recursion.

// maxDepth bounds nesting. encoding/json allows 10000 and Python's json gives up near 1000
// (RecursionError); no real token nests more than a few levels.
const maxDepth = 256

type scanner struct {
	b []byte
	i int
}

type kind uint8

const (
	kindString kind = iota + 1
	kindNumber
	kindTrue
	kindFalse
	kindNull
	kindObject
	kindArray
)

// val is a scanned value: for a string, its unescaped content b[start:end]; for anything
// else, its text.
type val struct {
	kind       kind
	start, end int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	s.ws()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

// begin starts a document that must be an object. Valid JSON of another kind is
// jsonNotObject, as PyJWT tells the two apart.
func (s *scanner) begin() jsonProblem {
	if s.peek() == '{' {
		s.i++
		return jsonOK
	}
	if p := s.skip(0); p != jsonOK {
		return p
	}
	if p := s.end(); p != jsonOK {
		return p
	}
	return jsonNotObject
}

// end checks that only white space follows the document.
func (s *scanner) end() jsonProblem {
	s.ws()
	if s.i != len(s.b) {
		return jsonSyntax
	}
	return jsonOK
}

// member reads the next member name of an object and its colon. done is set when the
// object's closing brace was read instead. An unescaped name that holds a lone surrogate is
// returned as nil: it cannot be any name we read.
func (s *scanner) member(first bool) (name []byte, done bool, p jsonProblem) {
	c := s.peek()
	if c == '}' {
		s.i++
		return nil, true, jsonOK
	}
	if !first {
		if c != ',' {
			return nil, false, jsonSyntax
		}
		s.i++
		c = s.peek()
	}
	if c != '"' {
		return nil, false, jsonSyntax
	}
	start, end, esc, p := s.str()
	if p != jsonOK {
		return nil, false, p
	}
	name = s.b[start:end]
	if esc {
		n, p := unescape(name)
		if p != jsonOK {
			name = nil
		} else {
			name = name[:n]
		}
	}
	if s.peek() != ':' {
		return nil, false, jsonSyntax
	}
	s.i++
	return name, false, jsonOK
}

// str scans a string at s.b[s.i] == '"'; start and end delimit its raw content. It checks
// escapes and control characters; UTF-8 was checked for the whole document beforehand.
func (s *scanner) str() (start, end int, esc bool, p jsonProblem) {
	s.i++
	start = s.i
	b := s.b
	for i := start; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			s.i = i + 1
			return start, i, esc, jsonOK
		case c == '\\':
			esc = true
			i++
			if i >= len(b) {
				return 0, 0, false, jsonSyntax
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(b) || !isHex(b[i+1]) || !isHex(b[i+2]) || !isHex(b[i+3]) || !isHex(b[i+4]) {
					return 0, 0, false, jsonSyntax
				}
				i += 4
			default:
				return 0, 0, false, jsonSyntax
			}
		case c < 0x20:
			return 0, 0, false, jsonSyntax
		}
	}
	return 0, 0, false, jsonSyntax
}

func isHex(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' }

func hexVal(b []byte) rune {
	var r rune
	for _, c := range b[:4] {
		r <<= 4
		switch {
		case c <= '9':
			r |= rune(c - '0')
		case c >= 'a':
			r |= rune(c - 'a' + 10)
		default:
			r |= rune(c - 'A' + 10)
		}
	}
	return r
}

// unescape decodes the escapes of a string's raw content in place (str has checked their
// syntax) and returns the decoded length. An unpaired surrogate is refused: it has no UTF-8
// form (encoding/json substitutes U+FFFD, Python keeps a string it cannot encode).
func unescape(b []byte) (int, jsonProblem) {
	w := 0
	for r := 0; r < len(b); {
		c := b[r]
		if c != '\\' {
			b[w] = c
			w++
			r++
			continue
		}
		switch b[r+1] {
		case 'u':
			u := hexVal(b[r+2:])
			r += 6
			switch {
			case u >= 0xdc00 && u <= 0xdfff:
				return 0, jsonSurrogate
			case u >= 0xd800 && u <= 0xdbff:
				if r+6 > len(b) || b[r] != '\\' || b[r+1] != 'u' {
					return 0, jsonSurrogate
				}
				lo := hexVal(b[r+2:])
				if lo < 0xdc00 || lo > 0xdfff {
					return 0, jsonSurrogate
				}
				r += 6
				u = 0x10000 + (u-0xd800)<<10 + (lo - 0xdc00)
			}
			w += utf8.EncodeRune(b[w:], u)
			continue
		case 'b':
			c = '\b'
		case 'f':
			c = '\f'
		case 'n':
			c = '\n'
		case 'r':
			c = '\r'
		case 't':
			c = '\t'
		default: // '"', '\\', '/'
			c = b[r+1]
		}
		b[w] = c
		w++
		r += 2
	}
	return w, jsonOK
}

// number scans a number and checks its grammar, and that it fits a float64 as encoding/json
// requires of every number it decodes into an interface (golang-jwt's MapClaims and header).
func (s *scanner) number() (start, end int, p jsonProblem) {
	b := s.b
	i := s.i
	start = i
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return 0, 0, jsonSyntax
	}
	intEnd := i
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return 0, 0, jsonSyntax
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	hasExp := false
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		hasExp = true
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return 0, 0, jsonSyntax
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	s.i = i
	// Only an exponent or more than 308 integer digits can leave the float64 range.
	if hasExp || intEnd-start > 300 {
		if _, err := strconv.ParseFloat(string(b[start:i]), 64); err != nil {
			return 0, 0, jsonNumberRange
		}
	}
	return start, i, jsonOK
}

func (s *scanner) literal(word string) jsonProblem {
	if len(s.b)-s.i < len(word) || string(s.b[s.i:s.i+len(word)]) != word {
		return jsonSyntax
	}
	s.i += len(word)
	return jsonOK
}

// value reads one value at nesting depth (the depth of the container holding it). A string
// is unescaped in place; containers are skipped.
func (s *scanner) value(depth int) (val, jsonProblem) {
	switch c := s.peek(); {
	case c == '"':
		start, end, esc, p := s.str()
		if p != jsonOK {
			return val{}, p
		}
		if esc {
			n, p := unescape(s.b[start:end])
			if p != jsonOK {
				return val{}, p
			}
			end = start + n
		}
		return val{kindString, start, end}, jsonOK
	case c == '-' || c >= '0' && c <= '9':
		start, end, p := s.number()
		return val{kindNumber, start, end}, p
	case c == '{' || c == '[':
		start := s.i
		k := kindObject
		if c == '[' {
			k = kindArray
		}
		if p := s.skip(depth); p != jsonOK {
			return val{}, p
		}
		return val{k, start, s.i}, jsonOK
	case c == 't':
		return val{kindTrue, s.i, s.i + 4}, s.literal("true")
	case c == 'f':
		return val{kindFalse, s.i, s.i + 5}, s.literal("false")
	case c == 'n':
		return val{kindNull, s.i, s.i + 4}, s.literal("null")
	}
	return val{}, jsonSyntax
}

// skip checks and passes over one value of any kind at the given depth, iteratively.
func (s *scanner) skip(depth int) jsonProblem {
	if c := s.peek(); c != '{' && c != '[' {
		// A scalar, as the loop below would check it, without setting up its stack.
		return s.scalar(c)
	}
	var isArray [maxDepth/64 + 1]uint64 // one bit per open container
	d := 0
	push := func(array bool) bool {
		if depth+d >= maxDepth {
			return false
		}
		if array {
			isArray[d/64] |= 1 << (d % 64)
		} else {
			isArray[d/64] &^= 1 << (d % 64)
		}
		d++
		return true
	}
	top := func() bool { return isArray[(d-1)/64]&(1<<((d-1)%64)) != 0 }
	for {
		// A value starts here.
		switch c := s.peek(); {
		case c == '{':
			s.i++
			if !push(false) {
				return jsonDepth
			}
			if s.peek() == '}' {
				s.i++
				d--
				break
			}
			if p := s.key(); p != jsonOK {
				return p
			}
			continue
		case c == '[':
			s.i++
			if !push(true) {
				return jsonDepth
			}
			if s.peek() == ']' {
				s.i++
				d--
				break
			}
			continue
		default:
			if p := s.scalar(c); p != jsonOK {
				return p
			}
		}
		// A value ended: close containers until one continues.
		for {
			if d == 0 {
				return jsonOK
			}
			c := s.peek()
			if top() {
				if c == ']' {
					s.i++
					d--
					continue
				}
				if c != ',' {
					return jsonSyntax
				}
				s.i++
				break
			}
			if c == '}' {
				s.i++
				d--
				continue
			}
			if c != ',' {
				return jsonSyntax
			}
			s.i++
			if p := s.key(); p != jsonOK {
				return p
			}
			break
		}
	}
}

// scalar checks and passes over the string, number or literal that starts with c at s.i.
func (s *scanner) scalar(c byte) jsonProblem {
	switch {
	case c == '"':
		_, _, _, p := s.str()
		return p
	case c == '-' || c >= '0' && c <= '9':
		_, _, p := s.number()
		return p
	case c == 't':
		return s.literal("true")
	case c == 'f':
		return s.literal("false")
	case c == 'n':
		return s.literal("null")
	}
	return jsonSyntax
}

// key passes over a member name and its colon.
func (s *scanner) key() jsonProblem {
	if s.peek() != '"' {
		return jsonSyntax
	}
	if _, _, _, p := s.str(); p != jsonOK {
		return p
	}
	if s.peek() != ':' {
		return jsonSyntax
	}
	s.i++
	return jsonOK
}

// falsy reports whether a value is false in Python's sense: null, false, a zero number, an
// empty string, array or object. PyJWT treats a falsy aud as missing.
func (s *scanner) falsy(v val) bool {
	switch v.kind {
	case kindNull, kindFalse:
		return true
	case kindString:
		return v.end == v.start
	case kindNumber:
		text := s.b[v.start:v.end]
		for _, c := range text {
			if c == 'e' || c == 'E' { // 1e-400 is 0.0 in Python
				f, _ := strconv.ParseFloat(string(text), 64)
				return f == 0
			}
		}
		for _, c := range text {
			if c >= '1' && c <= '9' {
				return false
			}
		}
		return true
	case kindObject, kindArray:
		inner := scanner{b: s.b[v.start+1 : v.end-1]}
		return inner.peek() == 0
	}
	return false
}
