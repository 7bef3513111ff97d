package credentials

import (
	"math/bits"

	"github.com/jtiguard/jtiguard/internal/words"
)

// Discovery reads every byte of every header it searches, and inside the module a Go byte
// loop is slow: each iteration is a bounds check, a table load and a backward branch through
// the function's dispatch loop (Go's wasm code has no native loops). A token is mostly base64
// text, so runs of token characters are read eight bytes at a time instead: one load and a few
// arithmetic operations classify all eight, with no branch per byte.

const (
	lsb = 0x0101010101010101 // the low bit of each byte
	msb = 0x8080808080808080 // the high bit of each byte
)

// inRange sets the high bit of each byte of x that lies in [lo, hi]. Every byte of x must be
// below 0x80: (b|0x80)-lo and (hi|0x80)-b then never borrow from the next byte, and their
// high bits say b >= lo and b <= hi.
func inRange(x uint64, lo, hi byte) uint64 {
	return ((x | msb) - uint64(lo)*lsb) & ((uint64(hi)|0x80)*lsb - x) & msb
}

// runWord classifies the eight bytes of w (byte i in bits 8i..8i+7): run has the high bit of
// each byte that isRunByte accepts, dot that of each '.', plus that of each '+'. scanRun has
// it written out; the test holds the two together.
func runWord(w uint64) (run, dot, plus uint64) {
	ascii := ^w & msb
	x := w &^ msb
	plus = inRange(x, '+', '+') & ascii
	run = inRange(x|0x2020202020202020, 'a', 'z') | // letters, either case
		inRange(x, '-', '9') | // - . / and digits
		inRange(x, '=', '=') | inRange(x, '_', '_')
	return run&ascii | plus, inRange(x, '.', '.') & ascii, plus
}

// scanRun reads the run of token characters that starts at text[i] and returns where it ends,
// the indexes of its first and last dots (-1 if it has none), how many dots it has, and
// whether it holds a '+'. The last bytes of a text of eight or more are read as one word too:
// the eight bytes that end the text, shifted so that text[i] is the word's first byte and
// the bytes past the end are zeros, which end a run (a byte loop there cost about as much as
// the rest of a token's scan in wasm).
func scanRun(text string, i int) (end, first, last, dots int, plus bool) {
	first, last = -1, -1
	var plusBits uint64
	for ; i+8 <= len(text); i += 8 {
		// runWord, written out: a call per word would cost more than the word's arithmetic.
		w := words.Load64(text, i)
		ascii := ^w & msb
		x := w &^ msb
		p := inRange(x, '+', '+') & ascii
		run := (inRange(x|0x2020202020202020, 'a', 'z')|inRange(x, '-', '9')|
			inRange(x, '=', '=')|inRange(x, '_', '_'))&ascii | p
		dot := inRange(x, '.', '.') & ascii
		if run != msb {
			k := bits.TrailingZeros64(^run&msb) >> 3 // the first byte that ends the run
			below := uint64(1)<<(8*uint(k)) - 1
			if dot &= below; dot != 0 {
				first, last, dots = addDots(first, last, dots, i, dot)
			}
			return i + k, first, last, dots, plusBits|p&below != 0
		}
		if dot != 0 {
			first, last, dots = addDots(first, last, dots, i, dot)
		}
		plusBits |= p
	}
	if i == len(text) || len(text) < 8 {
		return scanRunBytes(text, i, first, last, dots, plusBits != 0)
	}
	// The tail, in one word: the zeros shifted in end the run.
	run, dot, p := runWord(words.Load64(text, len(text)-8) >> (8 * uint(8-(len(text)-i))))
	k := bits.TrailingZeros64(^run&msb) >> 3
	below := uint64(1)<<(8*uint(k)) - 1
	if dot &= below; dot != 0 {
		first, last, dots = addDots(first, last, dots, i, dot)
	}
	return i + k, first, last, dots, plusBits|p&below != 0
}

// scanRunBytes is scanRun a byte at a time, from i: for texts shorter than a word.
func scanRunBytes(text string, i, first, last, dots int, plus bool) (int, int, int, int, bool) {
	for ; i < len(text) && runBytes[text[i]]; i++ {
		switch text[i] {
		case '.':
			if first < 0 {
				first = i
			}
			last = i
			dots++
		case '+':
			plus = true
		}
	}
	return i, first, last, dots, plus
}

// addDots records the dots of a word read at i (dot as runWord returns it).
func addDots(first, last, dots, i int, dot uint64) (int, int, int) {
	if first < 0 {
		first = i + bits.TrailingZeros64(dot)>>3
	}
	return first, i + (63-bits.LeadingZeros64(dot))>>3, dots + bits.OnesCount64(dot)
}
