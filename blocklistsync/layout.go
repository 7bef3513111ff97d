package blocklistsync

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"time"
)

// Shared-data layout (all keys under the configured prefix, all integers little-endian).
//
// Envoy copies a whole shared value into the calling VM on every get, so the blocklist is
// split in two keys: a small generation record that every worker VM reads on each request,
// and the snapshot that a VM reads and decodes only when the generation number changes.
//
//	<prefix>gen       32 bytes
//	    0  "JTIG"   magic
//	    4  u16      format (1)
//	    6  u16      reserved
//	    8  u64      generation number; a new snapshot gets a new number
//	   16  i64      last successful sync, Unix milliseconds (drives max_staleness)
//	   24  u32      entries in the snapshot
//	   28  u32      cutoffs in the snapshot
//
//	<prefix>snapshot  40 + len(version) + len(etag) + 12n + 16m bytes
//	    0  "JTIS"   magic
//	    4  u16      format (1)
//	    6  u16      flags: bit 0 = keys include the issuer
//	    8  u64      generation number (equal to or newer than the gen record that names it)
//	   16  i64      built at, Unix milliseconds
//	   24  u32      n, entries
//	   28  u32      m, subject cutoffs
//	   32  u8       length of the feed version, u8 length of the feed ETag, 6 bytes reserved
//	   40           feed version, then feed ETag (what the next poll sends back)
//	    …  n × u64  token keys, strictly ascending
//	    …  n × u32  token expiry, Unix seconds (0: none known)
//	    …  m × (u64 subject key, u32 revoked_before, u32 expiry), keys strictly ascending
//
//	<prefix>lease     32 bytes, see lease.go
//
// The writer stores the snapshot first and the generation record second. A reader that sees
// generation g therefore finds a snapshot of generation g or newer, and takes either.

// Sentinel errors of the layout. Every decode failure wraps one of them.
var (
	ErrNoList         = errors.New("no revocation list in shared data yet")
	ErrBadGeneration  = errors.New("malformed generation record")
	ErrBadSnapshot    = errors.New("malformed blocklist snapshot")
	ErrSnapshotTooOld = errors.New("snapshot older than its generation record")
)

const (
	genMagic      = "JTIG"
	snapMagic     = "JTIS"
	formatVersion = 1
	genSize       = 32
	snapHeader    = 40
	flagByIssuer  = 1

	// MaxVersionLen bounds the feed version and ETag kept in the snapshot.
	MaxVersionLen = 128
)

// Keys names the shared-data keys under one prefix. Istio gives every WasmPlugin on a proxy
// the same (empty) vm_id, so the prefix is what keeps two plugins' lists apart.
type Keys struct {
	Generation, Snapshot, Lease string
}

// KeysFor returns the keys under prefix.
func KeysFor(prefix string) Keys {
	return Keys{Generation: prefix + "gen", Snapshot: prefix + "snapshot", Lease: prefix + "lease"}
}

// Generation is the small record read on every request.
type Generation struct {
	Number      uint64
	LastSuccess time.Time
	Entries     uint32
	Cutoffs     uint32
}

// MarshalBinary encodes g in the layout above.
func (g Generation) MarshalBinary() []byte {
	b := make([]byte, genSize)
	copy(b, genMagic)
	binary.LittleEndian.PutUint16(b[4:], formatVersion)
	binary.LittleEndian.PutUint64(b[8:], g.Number)
	binary.LittleEndian.PutUint64(b[16:], uint64(g.LastSuccess.UnixMilli()))
	binary.LittleEndian.PutUint32(b[24:], g.Entries)
	binary.LittleEndian.PutUint32(b[28:], g.Cutoffs)
	return b
}

// ParseGeneration decodes a generation record.
func ParseGeneration(b []byte) (Generation, error) {
	if len(b) != genSize || string(b[:4]) != genMagic {
		return Generation{}, fmt.Errorf("%w: %d bytes", ErrBadGeneration, len(b))
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != formatVersion {
		return Generation{}, fmt.Errorf("%w: format %d", ErrBadGeneration, v)
	}
	return Generation{
		Number:      binary.LittleEndian.Uint64(b[8:]),
		LastSuccess: time.UnixMilli(int64(binary.LittleEndian.Uint64(b[16:]))),
		Entries:     binary.LittleEndian.Uint32(b[24:]),
		Cutoffs:     binary.LittleEndian.Uint32(b[28:]),
	}, nil
}

// Entry is one revoked token: its key and its expiry (Unix seconds, 0 for none known).
type Entry struct {
	Key uint64
	Exp uint32
}

// Cutoff revokes every token of a subject issued before RevokedBefore (Unix seconds).
type Cutoff struct {
	Key           uint64
	RevokedBefore uint32
	Exp           uint32
}

// Meta is what a snapshot says about itself, beside its entries.
type Meta struct {
	Generation    uint64
	Built         time.Time
	Version, ETag string
	KeyedByIssuer bool
}

// EncodeSnapshot writes a snapshot. entries and cutoffs must be sorted by Key with no
// duplicates (a List keeps them so); version and ETag longer than MaxVersionLen are refused.
func EncodeSnapshot(meta Meta, entries []Entry, cutoffs []Cutoff) ([]byte, error) {
	if len(meta.Version) > MaxVersionLen || len(meta.ETag) > MaxVersionLen {
		return nil, fmt.Errorf("%w: version or etag longer than %d bytes", ErrBadSnapshot, MaxVersionLen)
	}
	n, m := len(entries), len(cutoffs)
	off := snapHeader + len(meta.Version) + len(meta.ETag)
	b := make([]byte, off+12*n+16*m)
	copy(b, snapMagic)
	binary.LittleEndian.PutUint16(b[4:], formatVersion)
	if meta.KeyedByIssuer {
		binary.LittleEndian.PutUint16(b[6:], flagByIssuer)
	}
	binary.LittleEndian.PutUint64(b[8:], meta.Generation)
	binary.LittleEndian.PutUint64(b[16:], uint64(meta.Built.UnixMilli()))
	binary.LittleEndian.PutUint32(b[24:], uint32(n))
	binary.LittleEndian.PutUint32(b[28:], uint32(m))
	b[32] = byte(len(meta.Version))
	b[33] = byte(len(meta.ETag))
	copy(b[snapHeader:], meta.Version)
	copy(b[snapHeader+len(meta.Version):], meta.ETag)
	keys, exps, cuts := b[off:off+8*n], b[off+8*n:off+12*n], b[off+12*n:]
	for i, e := range entries {
		binary.LittleEndian.PutUint64(keys[8*i:], e.Key)
		binary.LittleEndian.PutUint32(exps[4*i:], e.Exp)
	}
	for i, c := range cutoffs {
		binary.LittleEndian.PutUint64(cuts[16*i:], c.Key)
		binary.LittleEndian.PutUint32(cuts[16*i+8:], c.RevokedBefore)
		binary.LittleEndian.PutUint32(cuts[16*i+12:], c.Exp)
	}
	return b, nil
}

// Snapshot is a decoded, immutable blocklist as one worker VM holds it.
type Snapshot struct {
	Meta
	set Set
}

// DecodeSnapshot checks b and indexes it for lookups. It keeps b (no copy): a worker VM
// then holds 12 bytes per entry plus the bucket directory, about 13–14 bytes in all.
func DecodeSnapshot(b []byte) (*Snapshot, error) {
	if len(b) < snapHeader || string(b[:4]) != snapMagic {
		return nil, fmt.Errorf("%w: bad header (%d bytes)", ErrBadSnapshot, len(b))
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != formatVersion {
		return nil, fmt.Errorf("%w: format %d", ErrBadSnapshot, v)
	}
	n := uint64(binary.LittleEndian.Uint32(b[24:]))
	m := uint64(binary.LittleEndian.Uint32(b[28:]))
	vl, el := int(b[32]), int(b[33])
	off := uint64(snapHeader + vl + el)
	if off+12*n+16*m != uint64(len(b)) {
		return nil, fmt.Errorf("%w: %d bytes for %d entries and %d cutoffs", ErrBadSnapshot, len(b), n, m)
	}
	s := &Snapshot{Meta: Meta{
		Generation:    binary.LittleEndian.Uint64(b[8:]),
		Built:         time.UnixMilli(int64(binary.LittleEndian.Uint64(b[16:]))),
		Version:       string(b[snapHeader : snapHeader+vl]),
		ETag:          string(b[snapHeader+vl : off]),
		KeyedByIssuer: binary.LittleEndian.Uint16(b[6:])&flagByIssuer != 0,
	}}
	if err := s.set.init(b[off:off+8*n], b[off+8*n:off+12*n], b[off+12*n:]); err != nil {
		return nil, err
	}
	return s, nil
}

// Len is the number of revoked-token entries.
func (s *Snapshot) Len() int { return s.set.n }

// Cutoffs is the number of subject cutoffs.
func (s *Snapshot) Cutoffs() int { return len(s.set.cutoffs) }

// Revoked reports whether key is listed with an expiry after notBefore (Unix seconds).
// Callers pass now minus their clock leeway, so an entry counts for as long as its token
// could still be accepted.
func (s *Snapshot) Revoked(key uint64, notBefore uint32) bool { return s.set.revoked(key, notBefore) }

// CutoffFor returns the subject cutoff for key, if one is live after notBefore.
func (s *Snapshot) CutoffFor(key uint64, notBefore uint32) (revokedBefore uint32, ok bool) {
	c, ok := s.set.cutoffs[key]
	if !ok || (c.Exp != 0 && c.Exp <= notBefore) {
		return 0, false
	}
	return c.RevokedBefore, true
}

// Entries calls yield for every entry in key order, for merging a delta into a new snapshot.
func (s *Snapshot) Entries(yield func(Entry) bool) {
	for i := 0; i < s.set.n; i++ {
		if !yield(s.set.entry(i)) {
			return
		}
	}
}

// CutoffList returns the cutoffs (unordered).
func (s *Snapshot) CutoffList() []Cutoff {
	out := make([]Cutoff, 0, len(s.set.cutoffs))
	for _, c := range s.set.cutoffs {
		out = append(out, c)
	}
	return out
}

// Set answers "is this key revoked" in constant expected time. Keys are sorted and uniformly
// spread (they are hashes), so the top bits of a key pick a bucket holding about two to four
// keys; a directory of one u32 per bucket says where each bucket starts. Lookups touch the
// directory and one short run of keys, whatever the list's size.
type Set struct {
	keys, exps []byte // views into the snapshot: n×u64, n×u32
	n          int
	shift      uint     // 64 - bucket bits
	dir        []uint32 // len = buckets+1; bucket i holds keys[dir[i]:dir[i+1]]
	cutoffs    map[uint64]Cutoff
}

func (s *Set) init(keys, exps, cuts []byte) error {
	s.keys, s.exps, s.n = keys, exps, len(keys)/8
	bucketBits := uint(bits.Len(uint(s.n / 4)))
	s.shift = 64 - bucketBits
	buckets := 1 << bucketBits
	s.dir = make([]uint32, buckets+1)
	var prev uint64
	b := 0
	for i := 0; i < s.n; i++ {
		k := binary.LittleEndian.Uint64(keys[8*i:])
		if k <= prev {
			return fmt.Errorf("%w: keys not strictly ascending at entry %d", ErrBadSnapshot, i)
		}
		prev = k
		for bk := s.bucket(k); b <= bk; b++ {
			s.dir[b] = uint32(i)
		}
	}
	for ; b <= buckets; b++ {
		s.dir[b] = uint32(s.n)
	}
	m := len(cuts) / 16
	s.cutoffs = make(map[uint64]Cutoff, m)
	for i := 0; i < m; i++ {
		c := Cutoff{
			Key:           binary.LittleEndian.Uint64(cuts[16*i:]),
			RevokedBefore: binary.LittleEndian.Uint32(cuts[16*i+8:]),
			Exp:           binary.LittleEndian.Uint32(cuts[16*i+12:]),
		}
		if _, dup := s.cutoffs[c.Key]; dup || c.Key == 0 {
			return fmt.Errorf("%w: duplicate or zero cutoff key at %d", ErrBadSnapshot, i)
		}
		s.cutoffs[c.Key] = c
	}
	return nil
}

func (s *Set) bucket(k uint64) int {
	if s.shift == 64 {
		return 0
	}
	return int(k >> s.shift)
}

func (s *Set) key(i int) uint64 { return binary.LittleEndian.Uint64(s.keys[8*i:]) }

func (s *Set) entry(i int) Entry {
	return Entry{Key: s.key(i), Exp: binary.LittleEndian.Uint32(s.exps[4*i:])}
}

func (s *Set) revoked(key uint64, notBefore uint32) bool {
	if s.n == 0 {
		return false
	}
	bk := s.bucket(key)
	lo, hi := int(s.dir[bk]), int(s.dir[bk+1])
	for lo < hi { // binary search: a bucket is tiny, but never trust its size
		mid := int(uint(lo+hi) >> 1)
		if s.key(mid) < key {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo >= int(s.dir[bk+1]) || s.key(lo) != key {
		return false
	}
	exp := binary.LittleEndian.Uint32(s.exps[4*lo:])
	return exp == 0 || exp > notBefore
}
