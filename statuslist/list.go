package statuslist

import (
	"fmt"
	"strconv"
)

// Status is a Referenced Token's status value (draft-ietf-oauth-status-list-20, section 7):
// the bits at its index, 0 to 255.
type Status uint8

// The registered status types. 0x03 and 0x0C–0x0F are application specific; every other value
// is reserved.
const (
	Valid     Status = 0x00
	Invalid   Status = 0x01
	Suspended Status = 0x02
)

// String implements fmt.Stringer.
func (s Status) String() string {
	switch s {
	case Valid:
		return "VALID"
	case Invalid:
		return "INVALID"
	case Suspended:
		return "SUSPENDED"
	}
	return "0x" + strconv.FormatUint(uint64(s)|0x100, 16)[1:]
}

// List is a decompressed status list: Bits bits per index, packed into Bytes as section 4.1
// says. Lookups are a shift and a mask, with no allocation.
type List struct {
	Bits  uint8
	Bytes []byte
}

// ValidBits reports whether b is one of the sizes the draft allows.
func ValidBits(b int) bool { return b == 1 || b == 2 || b == 4 || b == 8 }

// Len is the number of indices the list holds: every bit group of every byte, including the
// padding groups of the last byte, which an issuer may leave at any value (the draft indexes
// the whole byte array, and both npm implementations do the same).
func (l *List) Len() uint64 { return uint64(len(l.Bytes)) * 8 / uint64(l.Bits) }

// At returns the status at idx. Section 4.1: index i covers bits [i·bits, (i+1)·bits) of the
// array, counted from the least significant bit of byte 0 upwards, so it lives in byte
// i·bits/8 at shift (i·bits) mod 8. An index past the end is ErrOutOfRange: section 8.3 says
// no statement can then be made and the token must be rejected.
func (l *List) At(idx uint64) (Status, error) {
	if l.Bits == 0 || idx >= l.Len() {
		return 0, ErrOutOfRange
	}
	bit := idx * uint64(l.Bits)
	return Status(l.Bytes[bit/8] >> (bit % 8) & (0xff >> (8 - l.Bits))), nil
}

// Encode packs statuses into a list of the given bits: the inverse of At, for tests and for
// anyone publishing a list. A value that does not fit in bits is an error.
func Encode(bits int, statuses []Status) (List, error) {
	if !ValidBits(bits) {
		return List{}, fmt.Errorf("bits must be 1, 2, 4 or 8, got %d", bits)
	}
	l := List{Bits: uint8(bits), Bytes: make([]byte, (len(statuses)*bits+7)/8)}
	for i, s := range statuses {
		if int(s) >= 1<<bits {
			return List{}, fmt.Errorf("status %d at index %d does not fit in %d bits", s, i, bits)
		}
		bit := i * bits
		l.Bytes[bit/8] |= byte(s) << (bit % 8)
	}
	return l, nil
}
