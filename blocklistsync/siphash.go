package blocklistsync

import (
	"encoding/binary"
	"math/bits"
)

// SipHash-2-4 (Aumasson and Bernstein, "SipHash: a fast short-input PRF", 2012): two
// compression rounds per 8-byte block, four finalization rounds, 64-bit output. Written from
// the paper; siphash_test.go checks it against the paper's reference vectors.
//
// sipHash24 is the one-shot form, written with local variables so the state stays in
// registers; sipState is a streaming form that takes a message in pieces, for messages too
// long to assemble on the stack (keys.go). Both are checked against the reference vectors.

const (
	sipC0 = 0x736f6d6570736575
	sipC1 = 0x646f72616e646f6d
	sipC2 = 0x6c7967656e657261
	sipC3 = 0x7465646279746573
)

func sipRound(v0, v1, v2, v3 uint64) (uint64, uint64, uint64, uint64) {
	v0 += v1
	v1 = bits.RotateLeft64(v1, 13)
	v1 ^= v0
	v0 = bits.RotateLeft64(v0, 32)
	v2 += v3
	v3 = bits.RotateLeft64(v3, 16)
	v3 ^= v2
	v0 += v3
	v3 = bits.RotateLeft64(v3, 21)
	v3 ^= v0
	v2 += v1
	v1 = bits.RotateLeft64(v1, 17)
	v1 ^= v2
	v2 = bits.RotateLeft64(v2, 32)
	return v0, v1, v2, v3
}

// sipHash24 hashes one message under the key (k0, k1).
func sipHash24(k0, k1 uint64, p []byte) uint64 {
	v0, v1, v2, v3 := k0^sipC0, k1^sipC1, k0^sipC2, k1^sipC3
	n := len(p)
	for len(p) >= 8 {
		m := binary.LittleEndian.Uint64(p)
		v3 ^= m
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
		v0 ^= m
		p = p[8:]
	}
	m := uint64(n) << 56
	for i := len(p) - 1; i >= 0; i-- {
		m |= uint64(p[i]) << (8 * i)
	}
	v3 ^= m
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0 ^= m
	v2 ^= 0xff
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	v0, v1, v2, v3 = sipRound(v0, v1, v2, v3)
	return v0 ^ v1 ^ v2 ^ v3
}

type sipState struct {
	v0, v1, v2, v3 uint64
	tail           uint64 // bytes not yet compressed, little-endian
	ntail          uint   // how many (0–7)
	n              uint64 // message length so far
}

func newSip(k0, k1 uint64) sipState {
	return sipState{v0: k0 ^ sipC0, v1: k1 ^ sipC1, v2: k0 ^ sipC2, v3: k1 ^ sipC3}
}

func (s *sipState) round() { s.v0, s.v1, s.v2, s.v3 = sipRound(s.v0, s.v1, s.v2, s.v3) }

func (s *sipState) block(m uint64) {
	s.v3 ^= m
	s.round()
	s.round()
	s.v0 ^= m
}

// sipWrite appends p to the message.
func sipWrite[T string | []byte](s *sipState, p T) {
	s.n += uint64(len(p))
	i := 0
	if s.ntail > 0 {
		for ; i < len(p) && s.ntail < 8; i++ {
			s.tail |= uint64(p[i]) << (8 * s.ntail)
			s.ntail++
		}
		if s.ntail < 8 {
			return
		}
		s.block(s.tail)
		s.tail, s.ntail = 0, 0
	}
	for ; i+8 <= len(p); i += 8 {
		s.block(uint64(p[i]) | uint64(p[i+1])<<8 | uint64(p[i+2])<<16 | uint64(p[i+3])<<24 |
			uint64(p[i+4])<<32 | uint64(p[i+5])<<40 | uint64(p[i+6])<<48 | uint64(p[i+7])<<56)
	}
	for ; i < len(p); i++ {
		s.tail |= uint64(p[i]) << (8 * s.ntail)
		s.ntail++
	}
}

// sum finishes the hash: the last block holds the remaining bytes and the length mod 256 in
// its top byte.
func (s *sipState) sum() uint64 {
	s.block(s.tail | s.n<<56)
	s.v2 ^= 0xff
	s.round()
	s.round()
	s.round()
	s.round()
	return s.v0 ^ s.v1 ^ s.v2 ^ s.v3
}
