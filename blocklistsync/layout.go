package blocklistsync

import (
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"time"
)

// Shared-data layout (all keys under the configured prefix, all integers little-endian).
//
// Envoy copies a whole shared value into the calling VM on every get, so the blocklist is
// split: a small generation record that every worker VM reads on each request (or every few
// milliseconds, see ReaderOptions.RecheckEvery), the snapshot that a VM reads and decodes only
// when the generation number changes, and the entries' IDs, which only the lease holder reads,
// when it merges a delta. A worker therefore holds 12 bytes per entry, not 20.
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
//	<prefix>snapshot  64 + len(version) + len(etag) + claim names + 12n + 16m bytes
//	    0  "JTIS"   magic
//	    4  u16      format (4)
//	    6  u16      flags: bit 0 = keys include the issuer
//	    8  u64      generation number (equal to or newer than the gen record that names it)
//	   16  i64      built at, Unix milliseconds
//	   24  u32      n, entries
//	   28  u32      m, subject cutoffs
//	   32  u8       length of the feed version, u8 length of the feed ETag, u8 number of claim
//	               names (at most MaxClaimNames), 5 bytes reserved
//	   40  16 bytes SipHash-2-4 key of every key and ID in this list (keys.go); never zero
//	   56  u64      build ID: random per snapshot, repeated in the ids record it goes with
//	   64           feed version, then feed ETag (what the next poll sends back), then each
//	               claim name that claim entries revoke by (u8 length, bytes), ascending
//	    …  n × u64  token keys, ascending; equal keys are distinct entries that collide
//	    …  n × u32  token expiry, Unix seconds (0: none known)
//	    …  m × (u64 subject key, u32 revoked_before, u32 expiry), keys ascending
//
//	<prefix>ids       24 + 8n + 8m bytes
//	    0  "JTII"   magic
//	    4  u16      format (4)
//	    6  u16      reserved
//	    8  u64      build ID of the snapshot these IDs belong to
//	   16  u32      n, u32 m (as in that snapshot)
//	   24  n × u64  entry IDs, then m × u64 cutoff IDs, in the snapshot's order, which is
//	               ascending by (key, ID): no two entries (or cutoffs) have both equal
//
//	<prefix>lease     32 bytes, see lease.go
//
// The writer stores the snapshot first (with CAS), its IDs second and the generation record
// last. A reader that sees generation g therefore finds a snapshot of generation g or newer,
// and takes either; the lease holder uses IDs only when their build ID is the
// snapshot's. Snapshots of other formats (1: unkeyed FNV keys, merged entries; 2: no claim
// names, so a worker would not know which claims its claim entries need; 3: a UUID's keys
// from its spelling, not its canonical text, see canonicalUUID) are not read: a worker treats
// one as no list, and the lease holder replaces it with a full resync.

// Sentinel errors of the layout. Every decode failure wraps one of them.
var (
	ErrNoList         = errors.New("no revocation list in shared data yet")
	ErrBadGeneration  = errors.New("malformed generation record")
	ErrBadSnapshot    = errors.New("malformed blocklist snapshot")
	ErrSnapshotTooOld = errors.New("snapshot older than its generation record")
	// ErrSnapshotFormat is a snapshot in a layout format this module does not read (an older
	// module wrote it). It wraps ErrBadSnapshot.
	ErrSnapshotFormat = fmt.Errorf("%w: layout format not read by this module", ErrBadSnapshot)
	// ErrKeyingMismatch is a well-formed snapshot whose keys include the issuer when the
	// reader's do not, or the other way round (two plugins sharing a prefix, or a changed
	// configuration). Its lookups would silently miss, so it is never used.
	ErrKeyingMismatch = errors.New("blocklist keyed differently from this filter")
	// errBadIDs is an ids record that does not belong to the snapshot held: the lease holder
	// then resyncs instead of merging.
	errBadIDs = errors.New("entry IDs missing or not those of the snapshot held")
)

const (
	genMagic      = "JTIG"
	snapMagic     = "JTIS"
	idsMagic      = "JTII"
	genFormat     = 1
	snapFormat    = 4
	genSize       = 32
	snapHeader    = 64
	idsHeader     = 24
	flagByIssuer  = 1
	offHashKey    = 40
	offBuildID    = 56
	entrySize     = 12
	cutoffSize    = 16
	idSize        = 8
	maxCollisions = 1 << 16 // equal keys in a row that a lookup will walk; see decode
)

// MaxVersionLen bounds the feed version and ETag kept in the snapshot.
const MaxVersionLen = 128

// Keys names the shared-data keys under one prefix. Istio gives every WasmPlugin on a proxy
// the same (empty) vm_id, so the prefix is what keeps two plugins' lists apart.
type Keys struct {
	Generation, Snapshot, IDs, Lease string
}

// KeysFor returns the keys under prefix.
func KeysFor(prefix string) Keys {
	return Keys{Generation: prefix + "gen", Snapshot: prefix + "snapshot", IDs: prefix + "ids", Lease: prefix + "lease"}
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
	binary.LittleEndian.PutUint16(b[4:], genFormat)
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
	if v := binary.LittleEndian.Uint16(b[4:]); v != genFormat {
		return Generation{}, fmt.Errorf("%w: format %d", ErrBadGeneration, v)
	}
	return Generation{
		Number:      binary.LittleEndian.Uint64(b[8:]),
		LastSuccess: time.UnixMilli(int64(binary.LittleEndian.Uint64(b[16:]))),
		Entries:     binary.LittleEndian.Uint32(b[24:]),
		Cutoffs:     binary.LittleEndian.Uint32(b[28:]),
	}, nil
}

// Entry is one revoked token: its key (what workers look up), its ID (a second hash that
// tells apart entries whose keys collide) and its expiry (Unix seconds, 0 for none known).
type Entry struct {
	Key, ID uint64
	Exp     uint32
}

// Cutoff revokes every token of a subject issued before RevokedBefore (Unix seconds).
type Cutoff struct {
	Key, ID       uint64
	RevokedBefore uint32
	Exp           uint32
}

// Meta is what a snapshot says about itself, beside its entries.
type Meta struct {
	Generation    uint64
	Built         time.Time
	Version, ETag string
	KeyedByIssuer bool
	// Hasher made every key and ID of the list; a snapshot without one is refused.
	Hasher Hasher
	// BuildID ties the ids record to its snapshot; 0 makes EncodeSnapshot draw one.
	BuildID uint64
	// Claims names the claims the list's claim entries revoke by (List.Claims): a worker
	// reads these claims of every token.
	Claims []string
}

// Encoded is a list as it goes into shared data: the snapshot that every worker VM reads, and
// the IDs that only the lease holder reads.
type Encoded struct {
	Snapshot, IDs []byte
}

// EncodeSnapshot writes a snapshot and its ids record. entries and cutoffs must be strictly
// ascending by (Key, ID) with no zero key (a normalized List is); version and ETag longer
// than MaxVersionLen are refused.
func EncodeSnapshot(meta Meta, entries []Entry, cutoffs []Cutoff) (Encoded, error) {
	if len(meta.Version) > MaxVersionLen || len(meta.ETag) > MaxVersionLen {
		return Encoded{}, fmt.Errorf("%w: version or etag longer than %d bytes", ErrBadSnapshot, MaxVersionLen)
	}
	if meta.Hasher.IsZero() {
		return Encoded{}, fmt.Errorf("%w: no hash key", ErrBadSnapshot)
	}
	if err := checkClaimNames(meta.Claims); err != nil {
		return Encoded{}, err
	}
	for i := range entries {
		if entries[i].Key == 0 || i > 0 && !pairLess(entries[i-1].Key, entries[i-1].ID, entries[i].Key, entries[i].ID) {
			return Encoded{}, fmt.Errorf("%w: entries not strictly ascending by (key, ID) at %d", ErrBadSnapshot, i)
		}
	}
	for i := range cutoffs {
		if cutoffs[i].Key == 0 || i > 0 && !pairLess(cutoffs[i-1].Key, cutoffs[i-1].ID, cutoffs[i].Key, cutoffs[i].ID) {
			return Encoded{}, fmt.Errorf("%w: cutoffs not strictly ascending by (key, ID) at %d", ErrBadSnapshot, i)
		}
	}
	if meta.BuildID == 0 {
		var r [8]byte
		for meta.BuildID == 0 {
			if _, err := rand.Read(r[:]); err != nil {
				return Encoded{}, fmt.Errorf("draw a build ID: %w", err)
			}
			meta.BuildID = binary.LittleEndian.Uint64(r[:])
		}
	}
	n, m := len(entries), len(cutoffs)
	off := snapHeader + len(meta.Version) + len(meta.ETag)
	for _, c := range meta.Claims {
		off += 1 + len(c)
	}
	b := make([]byte, off+entrySize*n+cutoffSize*m)
	copy(b, snapMagic)
	binary.LittleEndian.PutUint16(b[4:], snapFormat)
	if meta.KeyedByIssuer {
		binary.LittleEndian.PutUint16(b[6:], flagByIssuer)
	}
	binary.LittleEndian.PutUint64(b[8:], meta.Generation)
	binary.LittleEndian.PutUint64(b[16:], uint64(meta.Built.UnixMilli()))
	binary.LittleEndian.PutUint32(b[24:], uint32(n))
	binary.LittleEndian.PutUint32(b[28:], uint32(m))
	b[32] = byte(len(meta.Version))
	b[33] = byte(len(meta.ETag))
	b[34] = byte(len(meta.Claims))
	meta.Hasher.putBytes(b[offHashKey:])
	binary.LittleEndian.PutUint64(b[offBuildID:], meta.BuildID)
	at := snapHeader + copy(b[snapHeader:], meta.Version)
	at += copy(b[at:], meta.ETag)
	for _, c := range meta.Claims {
		b[at] = byte(len(c))
		at += 1 + copy(b[at+1:], c)
	}
	keys, exps, cuts := b[off:off+8*n], b[off+8*n:off+entrySize*n], b[off+entrySize*n:]

	ids := make([]byte, idsHeader+idSize*(n+m))
	copy(ids, idsMagic)
	binary.LittleEndian.PutUint16(ids[4:], snapFormat)
	binary.LittleEndian.PutUint64(ids[8:], meta.BuildID)
	binary.LittleEndian.PutUint32(ids[16:], uint32(n))
	binary.LittleEndian.PutUint32(ids[20:], uint32(m))
	idv := ids[idsHeader:]
	for i, e := range entries {
		binary.LittleEndian.PutUint64(keys[8*i:], e.Key)
		binary.LittleEndian.PutUint32(exps[4*i:], e.Exp)
		binary.LittleEndian.PutUint64(idv[idSize*i:], e.ID)
	}
	for i, c := range cutoffs {
		binary.LittleEndian.PutUint64(cuts[cutoffSize*i:], c.Key)
		binary.LittleEndian.PutUint32(cuts[cutoffSize*i+8:], c.RevokedBefore)
		binary.LittleEndian.PutUint32(cuts[cutoffSize*i+12:], c.Exp)
		binary.LittleEndian.PutUint64(idv[idSize*(n+i):], c.ID)
	}
	return Encoded{Snapshot: b, IDs: ids}, nil
}

func pairLess(k1, id1, k2, id2 uint64) bool { return k1 < k2 || k1 == k2 && id1 < id2 }

// Snapshot is a decoded, immutable blocklist as one worker VM holds it.
type Snapshot struct {
	Meta
	keys, exps []byte // views into the snapshot: n×u64, n×u32
	cuts       []byte // m × 16 bytes
	n, m       int
	ent, cut   index
	// slot is the Reader's memory this snapshot lives in (nil: its own), as of epoch.
	slot  *snapSlot
	epoch uint64
}

// errReused is a snapshot used after the Reader it came from read another generation into its
// memory: a bug in the caller, which must not be answered from whatever the memory now holds.
var errReused = errors.New("blocklistsync: snapshot used after its memory was reused for a newer generation; take the Reader's current one")

// mustBeCurrent panics if s's memory now holds another generation.
func (s *Snapshot) mustBeCurrent() {
	if s.slot != nil && s.slot.epoch != s.epoch {
		panic(errReused)
	}
}

// DecodeSnapshot checks b and indexes it for lookups. It keeps b (no copy): the caller must
// hand over a slice nothing else reuses. A decoded snapshot holds 12 bytes per entry plus the
// bucket directory, about 13–14 bytes in all; a Reader keeps two (see sharedDataInto).
func DecodeSnapshot(b []byte) (*Snapshot, error) { return decodeSnapshot(b, nil, nil) }

// decodeSnapshot is DecodeSnapshot with bucket directories to reuse when large enough.
func decodeSnapshot(b []byte, entDir, cutDir []uint32) (*Snapshot, error) {
	if len(b) < 8 || string(b[:4]) != snapMagic {
		return nil, fmt.Errorf("%w: bad header (%d bytes)", ErrBadSnapshot, len(b))
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != snapFormat {
		return nil, fmt.Errorf("%w: format %d, this module reads %d", ErrSnapshotFormat, v, snapFormat)
	}
	if len(b) < snapHeader {
		return nil, fmt.Errorf("%w: bad header (%d bytes)", ErrBadSnapshot, len(b))
	}
	n := uint64(binary.LittleEndian.Uint32(b[24:]))
	m := uint64(binary.LittleEndian.Uint32(b[28:]))
	vl, el := int(b[32]), int(b[33])
	if vl > MaxVersionLen || el > MaxVersionLen {
		return nil, fmt.Errorf("%w: version or etag longer than %d bytes", ErrBadSnapshot, MaxVersionLen)
	}
	etagEnd := snapHeader + vl + el
	claims, off, err := decodeClaimNames(b, int(b[34]), etagEnd)
	if err != nil {
		return nil, err
	}
	if uint64(off)+entrySize*n+cutoffSize*m != uint64(len(b)) {
		return nil, fmt.Errorf("%w: %d bytes for %d entries and %d cutoffs", ErrBadSnapshot, len(b), n, m)
	}
	s := &Snapshot{Meta: Meta{
		Generation:    binary.LittleEndian.Uint64(b[8:]),
		Built:         time.UnixMilli(int64(binary.LittleEndian.Uint64(b[16:]))),
		Version:       string(b[snapHeader : snapHeader+vl]),
		ETag:          string(b[snapHeader+vl : etagEnd]),
		Claims:        claims,
		KeyedByIssuer: binary.LittleEndian.Uint16(b[6:])&flagByIssuer != 0,
		Hasher:        hasherFromBytes(b[offHashKey:]),
		BuildID:       binary.LittleEndian.Uint64(b[offBuildID:]),
	}}
	if s.Meta.Hasher.IsZero() {
		return nil, fmt.Errorf("%w: no hash key", ErrBadSnapshot)
	}
	s.n, s.m = int(n), int(m)
	o := uint64(off)
	s.keys, s.exps, s.cuts = b[o:o+8*n], b[o+8*n:o+entrySize*n], b[o+entrySize*n:]
	if err := s.ent.build(s.keys, 8, s.n, entDir); err != nil {
		return nil, fmt.Errorf("%w: entries: %w", ErrBadSnapshot, err)
	}
	if err := s.cut.build(s.cuts, cutoffSize, s.m, cutDir); err != nil {
		return nil, fmt.Errorf("%w: cutoffs: %w", ErrBadSnapshot, err)
	}
	return s, nil
}

// checkClaimNames holds a list's claim names to what a snapshot can carry and a worker can
// read: at most MaxClaimNames valid names, strictly ascending.
func checkClaimNames(names []string) error {
	if len(names) > MaxClaimNames {
		return fmt.Errorf("%w: %w", ErrBadSnapshot, errTooManyClaims)
	}
	for i, c := range names {
		if err := CheckClaimName(c); err != nil {
			return fmt.Errorf("%w: claim name %q: %w", ErrBadSnapshot, c, err)
		}
		if i > 0 && names[i-1] >= c {
			return fmt.Errorf("%w: claim names not strictly ascending at %d", ErrBadSnapshot, i)
		}
	}
	return nil
}

// decodeClaimNames reads k claim names at off; it returns them and the offset after them.
func decodeClaimNames(b []byte, k, off int) ([]string, int, error) {
	if k == 0 {
		return nil, off, nil
	}
	names := make([]string, 0, k)
	for range k {
		if off >= len(b) || off+1+int(b[off]) > len(b) {
			return nil, 0, fmt.Errorf("%w: claim names cut short", ErrBadSnapshot)
		}
		names = append(names, string(b[off+1:off+1+int(b[off])]))
		off += 1 + int(b[off])
	}
	if err := checkClaimNames(names); err != nil {
		return nil, 0, err
	}
	return names, off, nil
}

// Claims is the claims this list's claim entries revoke by, ascending: read each of them from
// every token, as a string or a number's decimal text, and look up ClaimKey(iss, name, value).
func (s *Snapshot) Claims() []string { return s.Meta.Claims }

// Hasher returns the hasher that made this snapshot's keys: compute TokenKey and SubjectKey
// with it, and again whenever a snapshot with a different Hasher is read.
func (s *Snapshot) Hasher() Hasher { return s.Meta.Hasher }

// Len is the number of revoked-token entries.
func (s *Snapshot) Len() int { return s.n }

// Cutoffs is the number of subject cutoffs.
func (s *Snapshot) Cutoffs() int { return s.m }

// Revoked reports whether key is listed with an expiry after notBefore (Unix seconds).
// Callers pass now minus their clock leeway, so an entry counts for as long as its token
// could still be accepted. Entries whose keys collide are all consulted: any live one revokes.
func (s *Snapshot) Revoked(key uint64, notBefore uint32) bool {
	s.mustBeCurrent()
	if s.n == 0 {
		return false
	}
	bk := s.ent.bucket(key)
	lo, end := int(s.ent.dir[bk]), int(s.ent.dir[bk+1])
	for hi := end; lo < hi; { // binary search: a bucket is tiny, but never trust its size
		mid := int(uint(lo+hi) >> 1)
		if s.key(mid) < key {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	for ; lo < end && s.key(lo) == key; lo++ {
		if exp := binary.LittleEndian.Uint32(s.exps[4*lo:]); exp == 0 || exp > notBefore {
			return true
		}
	}
	return false
}

// CutoffFor returns the subject cutoff for key if one is live after notBefore; when several
// subjects' keys collide, the latest of their live cutoffs.
func (s *Snapshot) CutoffFor(key uint64, notBefore uint32) (revokedBefore uint32, ok bool) {
	s.mustBeCurrent()
	if s.m == 0 {
		return 0, false
	}
	bk := s.cut.bucket(key)
	lo, end := int(s.cut.dir[bk]), int(s.cut.dir[bk+1])
	for hi := end; lo < hi; {
		mid := int(uint(lo+hi) >> 1)
		if s.cutoffKey(mid) < key {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	for ; lo < end && s.cutoffKey(lo) == key; lo++ {
		c := s.cutoff(lo)
		if c.Exp == 0 || c.Exp > notBefore {
			revokedBefore, ok = max(revokedBefore, c.RevokedBefore), true
		}
	}
	return revokedBefore, ok
}

func (s *Snapshot) key(i int) uint64 { return binary.LittleEndian.Uint64(s.keys[8*i:]) }

func (s *Snapshot) cutoffKey(i int) uint64 { return binary.LittleEndian.Uint64(s.cuts[cutoffSize*i:]) }

func (s *Snapshot) cutoff(i int) Cutoff {
	return Cutoff{
		Key:           s.cutoffKey(i),
		RevokedBefore: binary.LittleEndian.Uint32(s.cuts[cutoffSize*i+8:]),
		Exp:           binary.LittleEndian.Uint32(s.cuts[cutoffSize*i+12:]),
	}
}

// liveCount is how many entries and cutoffs still count at notBefore: what the shrink guard
// compares, so that entries dropped because they expired are not a shrink.
func (s *Snapshot) liveCount(notBefore uint32) int {
	s.mustBeCurrent()
	n := 0
	for i := 0; i < s.n; i++ {
		if live(binary.LittleEndian.Uint32(s.exps[4*i:]), notBefore) {
			n++
		}
	}
	for i := 0; i < s.m; i++ {
		if live(binary.LittleEndian.Uint32(s.cuts[cutoffSize*i+12:]), notBefore) {
			n++
		}
	}
	return n
}

// withIDs is the lease holder's view of a snapshot: its entries and cutoffs with their IDs,
// read from the ids record that belongs to it.
type withIDs struct {
	snap *Snapshot
	ids  []byte // (n+m) × u64
}

// attachIDs checks that raw is the ids record of snap (same build, same counts, and the
// entries then strictly ascending by (key, ID)).
func attachIDs(snap *Snapshot, raw []byte) (withIDs, error) {
	snap.mustBeCurrent()
	if len(raw) < idsHeader || string(raw[:4]) != idsMagic || binary.LittleEndian.Uint16(raw[4:]) != snapFormat {
		return withIDs{}, fmt.Errorf("%w: bad header (%d bytes)", errBadIDs, len(raw))
	}
	if binary.LittleEndian.Uint64(raw[8:]) != snap.BuildID ||
		int(binary.LittleEndian.Uint32(raw[16:])) != snap.n || int(binary.LittleEndian.Uint32(raw[20:])) != snap.m ||
		len(raw) != idsHeader+idSize*(snap.n+snap.m) {
		return withIDs{}, fmt.Errorf("%w: build or counts differ", errBadIDs)
	}
	w := withIDs{snap: snap, ids: raw[idsHeader:]}
	for i := 1; i < snap.n; i++ {
		a, b := w.entry(i-1), w.entry(i)
		if !pairLess(a.Key, a.ID, b.Key, b.ID) {
			return withIDs{}, fmt.Errorf("%w: entries not ascending by (key, ID) at %d", errBadIDs, i)
		}
	}
	for i := 1; i < snap.m; i++ {
		a, b := w.cutoff(i-1), w.cutoff(i)
		if !pairLess(a.Key, a.ID, b.Key, b.ID) {
			return withIDs{}, fmt.Errorf("%w: cutoffs not ascending by (key, ID) at %d", errBadIDs, i)
		}
	}
	return w, nil
}

func (w withIDs) entry(i int) Entry {
	return Entry{
		Key: w.snap.key(i),
		ID:  binary.LittleEndian.Uint64(w.ids[idSize*i:]),
		Exp: binary.LittleEndian.Uint32(w.snap.exps[4*i:]),
	}
}

// list copies the held list out, for rebuilding it.
func (w withIDs) list() List {
	w.snap.mustBeCurrent()
	l := List{Entries: make([]Entry, w.snap.n), Cutoffs: make([]Cutoff, w.snap.m)}
	for i := range l.Entries {
		l.Entries[i] = w.entry(i)
	}
	for i := range l.Cutoffs {
		l.Cutoffs[i] = w.cutoff(i)
	}
	return l
}

func (w withIDs) cutoff(i int) Cutoff {
	c := w.snap.cutoff(i)
	c.ID = binary.LittleEndian.Uint64(w.ids[idSize*(w.snap.n+i):])
	return c
}

// index answers "where do keys equal to k start" in constant expected time. Keys are sorted
// and uniformly spread (they are keyed hashes), so the top bits of a key pick a bucket holding
// about two to four keys; a directory of one u32 per bucket says where each bucket starts.
// Lookups touch the directory and one short run of keys, whatever the list's size.
type index struct {
	shift uint     // 64 - bucket bits
	dir   []uint32 // len = buckets+1; bucket i holds keys[dir[i]:dir[i+1]]
}

// build indexes n keys, the u64 at the start of each stride bytes of keys, which must be
// non-zero and ascending. Equal keys (collisions) are allowed, but not a run longer than
// maxCollisions: with keyed hashes that never happens by chance, so such a snapshot is
// corrupt and would make lookups linear. The directory goes into reuse when it has room (every
// word of it is written).
func (x *index) build(keys []byte, stride, n int, reuse []uint32) error {
	bucketBits := uint(bits.Len(uint(n / 4)))
	x.shift = 64 - bucketBits
	buckets := 1 << bucketBits
	if cap(reuse) >= buckets+1 {
		x.dir = reuse[:buckets+1]
	} else {
		x.dir = make([]uint32, buckets+1)
	}
	var prev uint64
	run, b := 0, 0
	for i := 0; i < n; i++ {
		k := binary.LittleEndian.Uint64(keys[stride*i:])
		switch {
		case k == 0 || k < prev:
			return fmt.Errorf("keys zero or not ascending at %d", i)
		case k == prev:
			if run++; run > maxCollisions {
				return fmt.Errorf("more than %d equal keys at %d", maxCollisions, i)
			}
		default:
			run = 0
		}
		prev = k
		for bk := x.bucket(k); b <= bk; b++ {
			x.dir[b] = uint32(i)
		}
	}
	for ; b <= buckets; b++ {
		x.dir[b] = uint32(n)
	}
	return nil
}

func (x *index) bucket(k uint64) int {
	if x.shift == 64 {
		return 0
	}
	return int(k >> x.shift)
}
