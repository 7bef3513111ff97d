package wasmstub

import (
	"fmt"
	"unicode/utf8"
)

// reader decodes the primitive encodings of the binary format. Offsets are absolute positions in the
// whole module, so that the positions it reports can be used directly as patch positions; end bounds
// reading to the enclosing section, body or subsection, which is how a size field that lies is caught
// instead of letting the decoder wander into the next section.
type reader struct {
	b   []byte
	off int
	end int
}

func (r *reader) errf(format string, args ...any) error {
	return fmt.Errorf("%w: offset %d: %s", ErrBadModule, r.off, fmt.Sprintf(format, args...))
}

func (r *reader) done() bool { return r.off >= r.end }

func (r *reader) byte() (byte, error) {
	if r.off >= r.end {
		return 0, r.errf("unexpected end of data")
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

func (r *reader) peek() (byte, error) {
	if r.off >= r.end {
		return 0, r.errf("unexpected end of data")
	}
	return r.b[r.off], nil
}

// skip advances over n raw bytes (constants, lane indices, name bytes).
func (r *reader) skip(n uint64) error {
	if n > uint64(r.end-r.off) {
		return r.errf("%d bytes needed, %d left", n, r.end-r.off)
	}
	r.off += int(n)
	return nil
}

// uleb decodes an unsigned LEB128 of at most bits bits, rejecting encodings longer than
// ceil(bits/7) bytes or with set bits beyond the width, as the spec requires.
func (r *reader) uleb(bits int) (uint64, error) {
	maxBytes := (bits + 6) / 7
	var v uint64
	for i := 0; ; i++ {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		if i == maxBytes-1 {
			if c&0x80 != 0 {
				return 0, r.errf("LEB128 longer than %d bytes", maxBytes)
			}
			if rest := bits - 7*i; rest < 7 && c>>rest != 0 {
				return 0, r.errf("LEB128 overflows %d bits", bits)
			}
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			return v, nil
		}
	}
}

// sleb decodes a signed LEB128 of at most bits bits (32, 33 or 64).
func (r *reader) sleb(bits int) (int64, error) {
	maxBytes := (bits + 6) / 7
	var v uint64
	for i := 0; ; i++ {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		if i == maxBytes-1 {
			if c&0x80 != 0 {
				return 0, r.errf("LEB128 longer than %d bytes", maxBytes)
			}
			// The bits of the last byte past the width must all copy the sign bit.
			if rest := bits - 7*i; rest < 7 {
				hi := (c & 0x7f) >> (rest - 1)
				if hi != 0 && hi != 0x7f>>(rest-1) {
					return 0, r.errf("signed LEB128 overflows %d bits", bits)
				}
			}
		}
		v |= uint64(c&0x7f) << (7 * i)
		if c&0x80 == 0 {
			if shift := 7 * (i + 1); shift < 64 && c&0x40 != 0 {
				v |= ^uint64(0) << shift
			}
			return int64(v), nil
		}
	}
}

func (r *reader) u32() (uint32, error) {
	v, err := r.uleb(32)
	return uint32(v), err
}

// count reads a vector length and rejects one that could not fit in what is left, assuming each
// element takes at least one byte; this keeps a forged length from driving a huge loop or allocation.
func (r *reader) count() (uint32, error) {
	n, err := r.u32()
	if err != nil {
		return 0, err
	}
	if uint64(n) > uint64(r.end-r.off) {
		return 0, r.errf("vector of %d elements in %d bytes", n, r.end-r.off)
	}
	return n, nil
}

func (r *reader) name() (string, error) {
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	start := r.off
	if err := r.skip(uint64(n)); err != nil {
		return "", err
	}
	s := string(r.b[start:r.off])
	if !utf8.ValidString(s) {
		return "", r.errf("name is not UTF-8")
	}
	return s, nil
}

// valType skips a value type: a number, vector or abbreviated reference type byte, or a
// (ref null? heaptype) of the function-references/GC proposals.
func (r *reader) valType() error {
	c, err := r.byte()
	if err != nil {
		return err
	}
	switch {
	case c >= 0x7B && c <= 0x7F: // v128 f64 f32 i64 i32
	case c >= 0x69 && c <= 0x74: // abbreviated reference types (funcref, externref, anyref, ...)
	case c == 0x63 || c == 0x64: // (ref null ht), (ref ht)
		return r.heapType()
	default:
		r.off--
		return r.errf("unknown value type 0x%02x", c)
	}
	return nil
}

// heapType skips a heap type: an abstract one (a negative single-byte s33) or a type index.
func (r *reader) heapType() error {
	_, err := r.sleb(33)
	return err
}

// limits skips table/memory limits, including the shared, 64-bit and custom-page-size flags.
func (r *reader) limits() error {
	flags, err := r.byte()
	if err != nil {
		return err
	}
	if flags&^0x0F != 0 {
		return r.errf("unknown limits flags 0x%02x", flags)
	}
	bits := 32
	if flags&0x04 != 0 {
		bits = 64
	}
	if _, err := r.uleb(bits); err != nil {
		return err
	}
	if flags&0x01 != 0 {
		if _, err := r.uleb(bits); err != nil {
			return err
		}
	}
	if flags&0x08 != 0 {
		if _, err := r.u32(); err != nil {
			return err
		}
	}
	return nil
}

// appendULEB encodes v as unsigned LEB128 padded to at least width bytes. Padding lets a rewritten
// index keep the width it had (Go's linker writes call targets as fixed 5-byte LEBs), so body and
// section sizes do not change when only an index does.
func appendULEB(dst []byte, v uint64, width int) []byte {
	n := 1
	for x := v >> 7; x != 0; x >>= 7 {
		n++
	}
	if width < n {
		width = n
	}
	for i := 0; i < width; i++ {
		c := byte(v & 0x7f)
		v >>= 7
		if i < width-1 {
			c |= 0x80
		}
		dst = append(dst, c)
	}
	return dst
}

func appendSLEB(dst []byte, v int64) []byte {
	for {
		c := byte(v & 0x7f)
		v >>= 7
		if (v == 0 && c&0x40 == 0) || (v == -1 && c&0x40 != 0) {
			return append(dst, c)
		}
		dst = append(dst, c|0x80)
	}
}
