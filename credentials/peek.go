package credentials

import (
	"math"
	"strconv"
	"strings"
	"unsafe"
)

// MaxValues bounds how many values of one claim Peek keeps. A payload that repeats jti, sub,
// iss or iat more often than this is no token any issuer makes; Peeked.Overflow reports it
// and the filter refuses the request rather than check only some of them.
const MaxValues = 4

// Values is a short list of claim values as read from a payload.
type Values struct {
	v [MaxValues]string
	n int
}

// Len is the number of values.
func (v *Values) Len() int { return v.n }

// At returns the i-th value.
func (v *Values) At(i int) string { return v.v[i] }

func (v *Values) add(s string) bool {
	if v.n == MaxValues {
		return false
	}
	v.v[v.n] = s
	v.n++
	return true
}

// Peeked is what discovery reads from one candidate payload, verifying nothing: every
// top-level jti, sub, iss and iat member (a JSON object may repeat a name; Python keeps the
// last, other parsers the first, so all are kept). Strings are views into the Peeked's own
// buffer, valid until its next Peek.
type Peeked struct {
	// Object reports whether the payload began as a JSON object; when it did not, nothing
	// else is set.
	Object bool
	// JTI holds jti strings, and integers as their decimal text.
	JTI Values
	// Sub holds sub strings, and integers as their decimal text (flask-jwt-extended's own
	// examples issue identity=user.id).
	Sub Values
	Iss Values
	// Iat holds the iat values read as Unix seconds (numbers, or decimal strings, which
	// Python's int() accepts as PyJWT reads them).
	Iat [MaxValues]int64
	// NIat is the number of Iat values.
	NIat int
	// IatUnreadable reports an iat that is neither: a subject cutoff then cannot be ruled out.
	IatUnreadable bool
	// Overflow reports a claim repeated more than MaxValues times.
	Overflow bool
	// Claims holds, for each name PeekClaims was given, the values of that top-level claim
	// that are strings, or numbers as their text (sid, and the claims an operator revokes by).
	Claims [MaxClaims]Values

	buf []byte
}

// MaxClaims bounds the claim names besides jti and sub that revocation can key on.
const MaxClaims = 8

// Peek decodes a candidate payload as leniently as PyJWT (see AppendLenientBase64) and reads
// its claims as leniently as any JSON parser: a syntax error stops the reading but keeps
// what was read before it.
func (p *Peeked) Peek(payload string) { p.PeekClaims(payload, nil) }

// PeekClaims is Peek that also collects the string and number values of the named top-level claims into
// Claims (at most MaxClaims names; names must not be jti, sub, iss or iat).
func (p *Peeked) PeekClaims(payload string, names []string) {
	buf := AppendLenientBase64(p.buf[:0], payload)
	*p = Peeked{buf: buf}
	j := jsonReader{b: buf}
	j.skipBOM()
	j.ws()
	if !j.eat('{') {
		return
	}
	p.Object = true
	for {
		j.ws()
		if j.eat('}') {
			return
		}
		key, ok := j.key()
		if !ok {
			return
		}
		j.ws()
		if !j.eat(':') {
			return
		}
		j.ws()
		switch key {
		case "jti", "sub", "iss":
			s, isString, ok := j.scalar()
			if !ok {
				return
			}
			if s == "" && !isString {
				break // not a string or number
			}
			if key == "iss" && !isString {
				break
			}
			var added bool
			switch key {
			case "jti":
				added = p.JTI.add(s)
			case "sub":
				added = p.Sub.add(s)
			default:
				added = p.Iss.add(s)
			}
			p.Overflow = p.Overflow || !added
		case "iat":
			s, isString, ok := j.scalar()
			if !ok {
				return
			}
			v, readable := iatValue(s, isString)
			switch {
			case !readable:
				p.IatUnreadable = true
			case p.NIat == MaxValues:
				p.Overflow = true
			default:
				p.Iat[p.NIat] = v
				p.NIat++
			}
		default:
			k := claimIndex(names, key)
			if k < 0 {
				if !j.skip() {
					return
				}
				break
			}
			// A string, or a number as its decimal text (as for jti): a list's value "7"
			// matches a claim of 7, so whichever the issuer wrote, the entry holds.
			v, isString, ok := j.scalar()
			if !ok {
				return
			}
			if v != "" {
				p.Overflow = p.Overflow || !p.Claims[k].add(v)
			}
			if iv, differs := IntegralText(v); !isString && differs {
				// 7.0 or 7e0 is also the entry "7".
				p.Overflow = p.Overflow || !p.Claims[k].add(iv)
			}
		}
		j.ws()
		if !j.eat(',') {
			return // '}' or a syntax error: either way the object is read
		}
	}
}

// IntegralText is a JSON number's integer text when its value is a whole number below 2^53
// written another way (7.0, 7e0, 70E-1): differs reports that there is such a text.
func IntegralText(num string) (text string, differs bool) {
	if num == "" || strings.IndexAny(num, ".eE") < 0 {
		return "", false
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f != math.Trunc(f) || math.Abs(f) >= 1<<53 {
		return "", false
	}
	return strconv.FormatInt(int64(f), 10), true
}

// iatValue reads an iat as PyJWT 2.6 does (int(value)): an integer or a float (truncated),
// or a string holding a decimal integer, possibly with spaces around it.
func iatValue(s string, isString bool) (int64, bool) {
	if isString {
		v, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		return v, err == nil
	}
	if s == "" {
		return 0, false
	}
	if v, err := strconv.ParseInt(s, 10, 64); err == nil {
		return v, true
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, false
	}
	return int64(max(min(math.Trunc(f), math.MaxInt64/2), math.MinInt64/2)), true
}

// byteClass sorts bytes for the scalar scans by table: in wasm, a call to strings.IndexByte
// per byte costs more than the rest of the loop.
var byteClass = func() (t [256]uint8) {
	for _, c := range []byte("+-0123456789.eE") {
		t[c] |= numberByte
	}
	for _, c := range []byte(" \t\r\n,}]") {
		t[c] |= valueEnd
	}
	return t
}()

const (
	numberByte = 1 << iota // may appear in a number's text
	valueEnd               // ends a scalar: white space, ',', '}' or ']'
)

// jsonReader is a forgiving reader over a decoded payload. Strings are unescaped in place
// (an escape is never shorter than what it stands for), so values are views into b.
type jsonReader struct {
	b []byte
	i int
}

func (j *jsonReader) skipBOM() {
	if len(j.b) >= 3 && j.b[0] == 0xef && j.b[1] == 0xbb && j.b[2] == 0xbf {
		j.i = 3
	}
}

func (j *jsonReader) ws() {
	for j.i < len(j.b) {
		switch j.b[j.i] {
		case ' ', '\t', '\n', '\r':
			j.i++
		default:
			return
		}
	}
}

func (j *jsonReader) eat(c byte) bool {
	if j.i < len(j.b) && j.b[j.i] == c {
		j.i++
		return true
	}
	return false
}

// key reads a member name.
func (j *jsonReader) key() (string, bool) { return j.str() }

// claimIndex is the index of key among names, or -1.
func claimIndex(names []string, key string) int {
	for i, n := range names {
		if i < MaxClaims && n == key {
			return i
		}
	}
	return -1
}

// str reads a string at j.i, unescaping it in place.
func (j *jsonReader) str() (string, bool) {
	if j.i >= len(j.b) || j.b[j.i] != '"' {
		return "", false
	}
	v, next, ok := UnquoteInPlace(j.b, j.i)
	j.i = next
	return v, ok
}

// scalar reads a string or a number; for anything else it skips the value and returns "".
func (j *jsonReader) scalar() (s string, isString, ok bool) {
	if j.i >= len(j.b) {
		return "", false, false
	}
	switch c := j.b[j.i]; {
	case c == '"':
		s, ok = j.str()
		return s, true, ok
	case c == '-' || c >= '0' && c <= '9':
		start := j.i
		for j.i < len(j.b) && byteClass[j.b[j.i]]&numberByte != 0 {
			j.i++
		}
		if j.i < len(j.b) && byteClass[j.b[j.i]]&valueEnd == 0 {
			// Not a number after all (Python's -Infinity): passed over as a value, so the
			// members after it are still read.
			j.i = start
			return "", false, j.skip()
		}
		if j.i-start == 2 && j.b[start] == '-' && j.b[start+1] == '0' {
			start++ // -0: Python reads the integer 0, whose text the app keys by is "0" (as jwtverify's sub)
		}
		return unsafe.String(&j.b[start], j.i-start), false, true
	default:
		return "", false, j.skip()
	}
}

// skip passes over one value of any kind (Python's NaN and Infinity included), however deeply
// nested: iteratively, with a count of the containers open, so that no nesting the verifier or
// Python's json accepts stops the reading before the members after it. (A recursion bounded at
// 64 once did: a claim nested 65 deep before jti, in a token jwtverify accepts, hid the jti from
// the revocation check.) Like the rest of the reader it is forgiving: any closer closes any
// container, and ',' and ':' are passed over inside one; for JSON it passes over exactly the value.
func (j *jsonReader) skip() bool {
	depth := 0
	for {
		j.ws()
		if j.i >= len(j.b) {
			return false
		}
		switch j.b[j.i] {
		case '"':
			if _, ok := j.str(); !ok {
				return false
			}
		case '{', '[':
			j.i++
			depth++
			continue
		case '}', ']':
			if depth == 0 {
				return false // a closer where a value should be
			}
			j.i++
			depth--
		case ',', ':':
			if depth == 0 {
				return false
			}
			j.i++
			continue
		default:
			start := j.i
			for j.i < len(j.b) && byteClass[j.b[j.i]]&valueEnd == 0 {
				j.i++
			}
			if j.i == start {
				return false
			}
		}
		if depth == 0 {
			return true
		}
	}
}
