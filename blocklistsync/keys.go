package blocklistsync

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
)

// Revocation keys are 64-bit hashes, not the jti strings themselves: a worker VM then holds
// 12 bytes per entry whatever the jti's length, and the request path compares integers.
//
// The hash is SipHash-2-4 under a random 128-bit key that the first writer of a prefix's
// shared data draws (crypto/rand, which is WASI random_get in the module) and every later
// snapshot keeps. Whoever chooses jti or sub values (any client, for jtis of tokens it gets
// issued) cannot predict keys, so cannot aim collisions at a revoked entry. Collisions by
// chance still happen at 64 bits (about n²/2⁶⁵ for n entries), so entries are never merged
// on their key: each also carries a second, independent 64-bit hash (its ID) of the item as
// the source named it, and an entry is identified by both. A worker VM looks up by the key
// alone, and a key shared by two entries is revoked while either is; the lease holder adds
// and removes by (key, ID), so removing one of two colliding jtis leaves the other revoked.
// Items that share a key on purpose (keyAndID: one jti under two issuers, two spellings of a
// UUID) are kept apart the same way.

// Domain bytes keep token keys, subject keys, claim keys and their IDs apart.
const (
	domainToken   byte = 0x01
	domainSubject byte = 0x02
	domainClaim   byte = 0x03
	domainID      byte = 0x80 // or-ed in for the second hash
)

// MaxClaimNameLen bounds the name of a claim entry's claim (docs/feed.md).
const MaxClaimNameLen = 64

// primaryMask is a test hook: tests narrow it to force key collisions. Production leaves all
// bits.
var primaryMask = ^uint64(0)

// Hasher computes revocation keys under one snapshot's secret key. It is a small comparable
// value: the filter stores it beside the keys it cached and recomputes them when a snapshot
// with another Hasher arrives. Its String hides the key.
type Hasher struct{ k0, k1 uint64 }

// hashKeySize is the key's size in the snapshot.
const hashKeySize = 16

// NewHasher draws a random key.
func NewHasher() (Hasher, error) {
	var b [hashKeySize]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return Hasher{}, fmt.Errorf("draw a hash key: %w", err)
		}
		if h := hasherFromBytes(b[:]); !h.IsZero() {
			return h, nil
		}
	}
}

func hasherFromBytes(b []byte) Hasher {
	return Hasher{binary.LittleEndian.Uint64(b), binary.LittleEndian.Uint64(b[8:])}
}

func (h Hasher) putBytes(b []byte) {
	binary.LittleEndian.PutUint64(b, h.k0)
	binary.LittleEndian.PutUint64(b[8:], h.k1)
}

// IsZero reports whether h is the zero value, which no snapshot carries.
func (h Hasher) IsZero() bool { return h == Hasher{} }

// String implements fmt.Stringer without revealing the key.
func (h Hasher) String() string {
	if h.IsZero() {
		return "Hasher(zero)"
	}
	return "Hasher(key hidden)"
}

// GoString implements fmt.GoStringer, for %#v, without revealing the key.
func (h Hasher) GoString() string { return h.String() }

// TokenKey is the blocklist key of a token's (iss, jti). iss is empty when the deployment
// does not key by issuer, and for feed entries that match the jti from any issuer.
func (h Hasher) TokenKey(iss, jti string) uint64 { return h.key(domainToken, iss, jti) }

// SubjectKey is the key of a subject cutoff for (iss, sub); iss empty as for TokenKey.
func (h Hasher) SubjectKey(iss, sub string) uint64 { return h.key(domainSubject, iss, sub) }

// ClaimKey is the key of a claim entry: every token whose claim named claim is
// value, from issuer iss (empty as for TokenKey), for example a session's sid. The claim's
// name is part of the hashed input, so sid=x and another claim=x are different keys, and
// the domain keeps any claim key apart from jti keys, so a claim entry never revokes a
// token by its jti. A revocation source sends these as {"claim": …, "value": …} entries.
func (h Hasher) ClaimKey(iss, claim, value string) uint64 { return claimKeyOf(h, iss, claim, value) }

func (h Hasher) key(domain byte, iss, value string) uint64 { return keyOf(h, domain, iss, value) }

// keyOf is the key of (iss, value): of value's canonical text when it spells a UUID.
func keyOf[T string | []byte](h Hasher, domain byte, iss, value T) uint64 {
	var u [uuidLen]byte
	if canonicalUUID(value, &u) {
		return primary(hashIn(h, domain, iss, u[:]))
	}
	return primary(hashIn(h, domain, iss, value))
}

// claimKeyOf is keyOf for a claim entry.
func claimKeyOf[T string | []byte](h Hasher, iss, claim, value T) uint64 {
	var u [uuidLen]byte
	if canonicalUUID(value, &u) {
		return primary(hashClaim(h, domainClaim, iss, claim, u[:]))
	}
	return primary(hashClaim(h, domainClaim, iss, claim, value))
}

// uuidLen is the length of a UUID's canonical text.
const uuidLen = 36

// canonicalUUID writes value's canonical text (lower-case hex, hyphens after the 8th, 12th, 16th
// and 20th digit) into u when value spells a UUID, and reports whether it did. Every key is
// computed from that text (an ID from the value as spelled: keyAndID), on the list's side and on
// the token's alike, so a jti, sub or claim value that is a UUID matches in any spelling: what a
// uuid column gives the source (PostgreSQL's canonical text, or SQLAlchemy's 32 hex digits on a
// database without the type) and what the app compares by (PostgreSQL reads upper case, braces
// and missing hyphens as the same uuid, Python's uuid.UUID too) are then the same key as the
// token's own spelling. Spelled: "urn:" and "uuid:" prefixes (any case), braces at either end,
// and exactly 32 hex digits in any case with hyphens anywhere among them: PostgreSQL's
// spellings, and Python's short of what its int() adds (underscores, a sign, white space, "0x").
// Values that are not UUIDs are hashed as they are. Two distinct jtis that are one UUID in two
// spellings are one key (two entries): the more revoked of the two readings, never the less.
func canonicalUUID[T string | []byte](value T, u *[uuidLen]byte) bool {
	start, end := 0, len(value)
	if end < 32 || end > 80 {
		return false
	}
	for { // Python's uuid.UUID drops "urn:" and "uuid:" (there anywhere; here in front, in any case)
		if asciiLowerIs(value[start:], "urn:") {
			start += 4
		} else if asciiLowerIs(value[start:], "uuid:") {
			start += 5
		} else {
			break
		}
	}
	for start < end && (value[start] == '{' || value[start] == '}') { // and braces at either end
		start++
	}
	for end > start && (value[end-1] == '{' || value[end-1] == '}') {
		end--
	}
	d := 0 // hex digits so far
	for i := start; i < end; i++ {
		c := value[i]
		switch {
		case c == '-':
			continue
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f':
		case c >= 'A' && c <= 'F':
			c += 'a' - 'A'
		default:
			return false
		}
		if d == 32 {
			return false
		}
		// Digit d goes after the hyphens the canonical text puts before it: at 8, 13, 18, 23.
		pos := d
		switch {
		case d >= 20:
			pos += 4
		case d >= 16:
			pos += 3
		case d >= 12:
			pos += 2
		case d >= 8:
			pos++
		}
		u[pos] = c
		d++
	}
	if d != 32 {
		return false
	}
	u[8], u[13], u[18], u[23] = '-', '-', '-', '-'
	return true
}

// asciiLowerIs reports whether s begins with lower, compared in ASCII lower case.
func asciiLowerIs[T string | []byte](s T, lower string) bool {
	if len(s) < len(lower) {
		return false
	}
	for i := 0; i < len(lower); i++ {
		c := s[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func primary(k uint64) uint64 {
	if k &= primaryMask; k == 0 {
		return 1
	}
	return k
}

// hashIn hashes domain ‖ len(iss) as u32 ‖ iss ‖ value: the length makes the split between
// issuer and value unambiguous for any bytes. 0 is never returned, so it can mean "no key".
func hashIn[T, V string | []byte](h Hasher, domain byte, iss T, value V) uint64 {
	if 5+len(iss)+len(value) <= shortMessage {
		var buf [shortMessage]byte
		return nonZero(sipHash24(h.k0, h.k1, message(&buf, domain, iss, value)))
	}
	s := newSip(h.k0, h.k1)
	s.tail = uint64(domain) | uint64(uint32(len(iss)))<<8
	s.ntail, s.n = 5, 5
	sipWrite(&s, iss)
	sipWrite(&s, value)
	return nonZero(s.sum())
}

// shortMessage is the longest message assembled on the stack and hashed in one pass (a jti
// of up to 256 bytes with a typical issuer); longer ones are hashed in pieces.
const shortMessage = 384

func message[T, V string | []byte](buf *[shortMessage]byte, domain byte, iss T, value V) []byte {
	buf[0] = domain
	binary.LittleEndian.PutUint32(buf[1:], uint32(len(iss)))
	n := 5 + copy(buf[5:], iss)
	n += copy(buf[n:], value)
	return buf[:n]
}

func nonZero(k uint64) uint64 {
	if k == 0 {
		return 1
	}
	return k
}

// keyAndID returns an input's key (what workers look up) and its ID (the second hash, which
// together with the key identifies an entry). The key is of keyIss and the value's canonical
// text (canonicalUUID): what a token is looked up by. The ID is of iss and the value as the
// source spelled it: what the source names an item by when it adds or removes it. So items
// that the filter cannot tell apart (the same jti under two issuers, when keyIss is empty
// because the deployment does not key by issuer; two spellings of one UUID) share a key but
// stay distinct entries, as colliding keys do: removing one leaves the other revoking, and a
// subject's cutoffs under one key are read as the latest of them (Snapshot.CutoffFor).
func keyAndID[T string | []byte](h Hasher, domain byte, keyIss, iss, value T) (key, id uint64) {
	return keyOf(h, domain, keyIss, value), hashIn(h, domain|domainID, iss, value)
}

// claimHeader is a claim message's fixed part: the domain, u32 len(iss) and u32 len(claim).
const claimHeader = 9

// claimMessage is domain ‖ len(iss) as u32 ‖ iss ‖ len(claim) as u32 ‖ claim ‖ value: both
// lengths make the three-way split unambiguous for any bytes.
func claimMessage[T, V string | []byte](buf *[shortMessage]byte, domain byte, iss, claim T, value V) []byte {
	buf[0] = domain
	binary.LittleEndian.PutUint32(buf[1:], uint32(len(iss)))
	n := 5 + copy(buf[5:], iss)
	binary.LittleEndian.PutUint32(buf[n:], uint32(len(claim)))
	n += 4
	n += copy(buf[n:], claim)
	n += copy(buf[n:], value)
	return buf[:n]
}

// hashClaim hashes a claim message, on the stack when it fits and in pieces when not, never
// returning 0.
func hashClaim[T, V string | []byte](h Hasher, domain byte, iss, claim T, value V) uint64 {
	if claimHeader+len(iss)+len(claim)+len(value) <= shortMessage {
		var buf [shortMessage]byte
		return nonZero(sipHash24(h.k0, h.k1, claimMessage(&buf, domain, iss, claim, value)))
	}
	s := newSip(h.k0, h.k1)
	s.tail = uint64(domain) | uint64(uint32(len(iss)))<<8
	s.ntail, s.n = 5, 5
	sipWrite(&s, iss)
	var n [4]byte
	binary.LittleEndian.PutUint32(n[:], uint32(len(claim)))
	sipWrite(&s, n[:])
	sipWrite(&s, claim)
	sipWrite(&s, value)
	return nonZero(s.sum())
}

// claimKeyAndID is keyAndID for a claim entry.
func claimKeyAndID[T string | []byte](h Hasher, keyIss, iss, claim, value T) (key, id uint64) {
	return claimKeyOf(h, keyIss, claim, value), hashClaim(h, domainClaim|domainID, iss, claim, value)
}
