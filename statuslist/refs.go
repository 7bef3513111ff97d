package statuslist

import (
	"bytes"
	"encoding/binary"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/jtiguard/jtiguard/credentials"
)

// MaxRefs bounds the references Refs keeps from one payload. An issuer writes one; a payload
// that names more (a repeated status, status_list, idx or uri member) is refused as ambiguous
// rather than checked in part.
const MaxRefs = 4

// Ref is one status reference of a Referenced Token (section 6.2): status.status_list.{idx, uri}.
type Ref struct {
	URI string
	Idx uint64
}

// Refs is what the filter reads from a token's payload to check its status: every
// status.status_list reference in it, read leniently and verifying nothing, as
// credentials.Peek reads jti and sub. It is kept per cached payload and read only on a cache
// miss; Check then costs no parsing.
//
// What counts, and why:
//   - only a top-level "status" member whose value is an object, and in it "status_list". A
//     "status" that is a string or an object without status_list is not this mechanism (flask
//     apps put a user's "status" in tokens); it is ignored.
//   - a "status_list" that is not an object, or lacks an idx that is a non-negative integer or a
//     uri that is a string, sets Malformed (section 8.3 step 1: reject).
//   - a member given twice is read every time: Python keeps the last, other parsers the first,
//     so every combination of the idx and uri values of one status_list is a reference.
//   - idx may be spelled as any JSON number with an integral value (1e3, 7.0): the JavaScript
//     implementations read those as integers; indices beyond 2^64 saturate (out of range).
//   - a syntax error stops the reading but keeps what was read; a status_list cut short by it is
//     Malformed. Byte order marks and UTF-16 or UTF-32 payloads are read as Python's json.loads
//     reads bytes (PyJWT hands it the decoded payload).
type Refs struct {
	refs [MaxRefs]Ref
	n    int
	// Malformed reports a status_list that is not {idx: non-negative integer, uri: string}.
	Malformed bool
	// Overflow reports more than MaxRefs references.
	Overflow bool

	buf []byte
}

// Len is the number of references.
func (r *Refs) Len() int { return r.n }

// At returns the i-th reference. Its URI is a view into the Refs' own buffer, valid until
// the next read into r.
func (r *Refs) At(i int) Ref { return r.refs[i] }

// Any reports whether a check is needed: a reference, or a reason to refuse.
func (r *Refs) Any() bool { return r.n > 0 || r.Malformed || r.Overflow }

// Add adds a reference read elsewhere: the claims jwt_authn wrote to dynamic metadata, where a
// member cannot repeat.
func (r *Refs) Add(ref Ref) { r.add(ref) }

// MarkMalformed records a status_list reference that could not be read (see Malformed).
func (r *Refs) MarkMalformed() { r.Malformed = true }

// Reset empties r, keeping its buffer.
func (r *Refs) Reset() { *r = Refs{buf: r.buf[:0]} }

func (r *Refs) add(ref Ref) {
	if r.n == MaxRefs {
		r.Overflow = true
		return
	}
	r.refs[r.n] = ref
	r.n++
}

// ReadSegment decodes a payload segment as leniently as PyJWT's base64url_decode (CPython's
// binascii.a2b_base64 in non-strict mode: bytes outside the alphabet are skipped, either
// alphabet is read, padding ends the input) and reads it with ReadJSON.
func (r *Refs) ReadSegment(segment string) {
	r.buf = credentials.AppendLenientBase64(r.buf[:0], segment) // as PyJWT and discovery read it
	r.read()
}

// ReadJSON reads the references in a decoded payload. b is copied.
func (r *Refs) ReadJSON(b []byte) {
	r.buf = append(r.buf[:0], b...)
	r.read()
}

func (r *Refs) read() {
	buf := r.buf
	*r = Refs{}
	r.buf = toUTF8(buf)
	j := reader{b: r.buf}
	if len(j.b) >= 3 && j.b[0] == 0xef && j.b[1] == 0xbb && j.b[2] == 0xbf {
		j.i = 3
	}
	j.object(func(name string) bool {
		if name != "status" {
			return j.skip()
		}
		if j.peek() != '{' {
			return j.skip()
		}
		return j.object(func(name string) bool {
			if name != "status_list" {
				return j.skip()
			}
			return r.statusList(&j)
		})
	})
}

// statusList reads one status_list value and adds its references.
func (r *Refs) statusList(j *reader) bool {
	if j.peek() != '{' {
		r.Malformed = true
		return j.skip()
	}
	var idxs [MaxRefs]uint64
	var uris [MaxRefs]string
	ni, nu := 0, 0
	bad := false
	complete := j.object(func(name string) bool {
		switch name {
		case "idx":
			idx, ok, more := j.index()
			switch {
			case !more:
				return false
			case !ok:
				bad = true
			case ni == MaxRefs:
				r.Overflow = true
			default:
				idxs[ni] = idx
				ni++
			}
			return true
		case "uri":
			if j.peek() != '"' {
				bad = true
				return j.skip()
			}
			s, ok := j.str()
			if !ok {
				return false
			}
			if nu == MaxRefs {
				r.Overflow = true
			} else {
				uris[nu] = s
				nu++
			}
			return true
		}
		return j.skip()
	})
	if !complete || bad || ni == 0 || nu == 0 {
		r.Malformed = true
	}
	for _, u := range uris[:nu] {
		for _, i := range idxs[:ni] {
			r.add(Ref{URI: u, Idx: i})
		}
	}
	return complete
}

// reader is a forgiving JSON reader over a buffer it may modify: strings are unescaped in
// place (an escape is never shorter than what it stands for), so values are views into b.
type reader struct {
	b []byte
	i int
}

func (j *reader) ws() {
	for j.i < len(j.b) {
		switch j.b[j.i] {
		case ' ', '\t', '\n', '\r':
			j.i++
		default:
			return
		}
	}
}

func (j *reader) peek() byte {
	j.ws()
	if j.i < len(j.b) {
		return j.b[j.i]
	}
	return 0
}

func (j *reader) eat(c byte) bool {
	if j.peek() == c {
		j.i++
		return true
	}
	return false
}

// object reads an object's members, handing each name to member with the reader at the value;
// member reads or skips the value and reports whether the reading may go on. object reports
// whether the whole object was read.
func (j *reader) object(member func(name string) bool) bool {
	if !j.eat('{') {
		return false
	}
	if j.eat('}') {
		return true
	}
	for {
		if j.peek() != '"' {
			return false
		}
		name, ok := j.str()
		if !ok || !j.eat(':') {
			return false
		}
		j.ws()
		if !member(name) {
			return false
		}
		if j.eat('}') {
			return true
		}
		if !j.eat(',') {
			return false
		}
	}
}

// str reads the string whose opening quote is at j.i, unescaping it in place, as discovery
// does (credentials.UnquoteInPlace): invalid escapes end the reading.
func (j *reader) str() (string, bool) {
	v, next, ok := credentials.UnquoteInPlace(j.b, j.i)
	j.i = next
	return v, ok
}

// skip passes over one value of any kind, Python's NaN and Infinity included, at any depth
// (without recursion: a claim nested deep before the status claim must not hide it).
func (j *reader) skip() bool {
	depth := 0
	for {
		switch c := j.peek(); c {
		case 0:
			return false
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
				return false
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
			for j.i < len(j.b) && !isDelimiter(j.b[j.i]) {
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

func isDelimiter(c byte) bool {
	switch c {
	case ',', '}', ']', ':', '"', '{', '[', ' ', '\t', '\r', '\n':
		return true
	}
	return false
}

// index reads an idx value: ok when it is a JSON number with a non-negative integral value;
// more is false when the reading must stop (a syntax error).
func (j *reader) index() (idx uint64, ok, more bool) {
	c := j.peek()
	if c != '-' && (c < '0' || c > '9') {
		return 0, false, j.skip()
	}
	start := j.i
	for j.i < len(j.b) && !isDelimiter(j.b[j.i]) {
		j.i++
	}
	text := unsafe.String(&j.b[start], j.i-start)
	if v, err := strconv.ParseUint(text, 10, 64); err == nil {
		return v, true, true
	} else if e, isNum := err.(*strconv.NumError); isNum && e.Err == strconv.ErrRange {
		return math.MaxUint64, true, true
	}
	f, err := strconv.ParseFloat(text, 64)
	if err != nil && !isRangeErr(err) {
		return 0, false, true
	}
	if f == 0 { // -0, 0.0, 0e5
		return 0, true, true
	}
	if f < 0 || f != math.Trunc(f) {
		return 0, false, true
	}
	if f >= math.MaxUint64 {
		return math.MaxUint64, true, true
	}
	return uint64(f), true, true
}

func isRangeErr(err error) bool {
	e, ok := err.(*strconv.NumError)
	return ok && e.Err == strconv.ErrRange
}

// toUTF8 transcodes b when Python's json.detect_encoding would read it as UTF-16 or UTF-32 (a
// byte order mark, or the zero bytes an ASCII '{' leaves), decoding invalid units as U+FFFD
// where Python would raise. Anything else is returned as it is.
func toUTF8(b []byte) []byte {
	var order binary.ByteOrder = binary.LittleEndian
	width := 0 // bytes per code unit: 2 or 4; 0 is UTF-8
	switch {
	case bytes.HasPrefix(b, []byte("\x00\x00\xfe\xff")):
		width, order, b = 4, binary.BigEndian, b[4:]
	case bytes.HasPrefix(b, []byte("\xff\xfe\x00\x00")):
		width, b = 4, b[4:]
	case bytes.HasPrefix(b, []byte("\xfe\xff")):
		width, order, b = 2, binary.BigEndian, b[2:]
	case bytes.HasPrefix(b, []byte("\xff\xfe")):
		width, b = 2, b[2:]
	case len(b) >= 4 && b[0] == 0:
		width, order = 2, binary.BigEndian
		if b[1] == 0 {
			width = 4
		}
	case len(b) >= 4 && b[1] == 0:
		width = 2
		if b[2] == 0 && b[3] == 0 {
			width = 4
		}
	case len(b) == 2 && b[0] == 0:
		width, order = 2, binary.BigEndian
	case len(b) == 2 && b[1] == 0:
		width = 2
	}
	if width == 0 {
		return b
	}
	out := make([]byte, 0, len(b))
	if width == 4 {
		for ; len(b) >= 4; b = b[4:] {
			r := rune(order.Uint32(b))
			if !utf8.ValidRune(r) {
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
		}
		return out
	}
	units := make([]uint16, 0, len(b)/2)
	for ; len(b) >= 2; b = b[2:] {
		units = append(units, order.Uint16(b))
	}
	for _, r := range utf16.Decode(units) {
		out = utf8.AppendRune(out, r)
	}
	return out
}
