package statuslist

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"strconv"
	"time"
)

// Shared-data layout (keys under the filter's prefix, integers little-endian).
//
// Lists live in a fixed number of slots (max_lists), so the keys status lists can create are
// bounded whatever uris tokens name: a directory says which uri each slot holds, and each slot
// has a lease, a small generation record and the list itself. Every worker VM reads the
// directory and each slot's generation record on its ticks, and copies a list only when its
// generation changes; the VM holding a slot's lease fetches that list.
//
//	<prefix>sl.dir        8 + Σ(20 + len(uri)) bytes
//	    0  "JTSD"  magic
//	    4  u16     format (1)
//	    6  u16     slots n
//	    8  n × {u16 uri length (0: free), u16 reserved, i64 added (Unix ms),
//	            i64 last used (Unix ms), uri}
//
//	<prefix>sl.<slot>.gen   72 bytes
//	    0  "JTSG"  magic
//	    4  u16     format (1)
//	    6  u8      bits, u8 reserved
//	    8  16 B    list id: sha256(uri ‖ 0 ‖ keys fingerprint)[:16]
//	   24  u64     generation: a new list content gets a new number
//	   32  i64     fetched: the last successful fetch that returned this content, Unix ms
//	   40  i64     exp, Unix ms (0: none)
//	   48  i64     iat, Unix seconds
//	   56  u32     list length in bytes, u32 reserved
//	   64  u64     nonce: random per published list content
//
//	<prefix>sl.<slot>.list  72 + length bytes: the same header ("JTSL"), then the
//	                        decompressed list
//
//	<prefix>sl.<slot>.lease 48 bytes
//	    0  "JTSE"  magic
//	    4  u32     consecutive failures
//	    8  u64     holder (random per VM)
//	   16  i64     lease expiry, Unix ms
//	   24  i64     next fetch due, Unix ms
//	   32  16 B    list id the schedule belongs to
//
// The fetching VM writes the list first and the generation record last (with CAS, and only
// over an older generation). A reader adopts a list record whose id is its own and whose
// generation is newer than the one it holds, with the record's own fetched, exp and iat, and
// later takes those three from the generation record when its generation and nonce are the
// held list's: a refetch that found the same list only rewrites the small record. Two VMs
// that both fetched (the lease's start race) may leave a generation record naming the other's
// list; the nonce keeps a reader from mixing the two. The id ties every record to one uri
// and one key configuration, so a slot reused for another uri, or a list verified under keys
// this configuration no longer trusts, is never read as this one.

const (
	dirMagic    = "JTSD"
	genMagic    = "JTSG"
	listMagic   = "JTSL"
	leaseMagic  = "JTSE"
	formatV1    = 1
	dirHeader   = 8
	dirSlotHead = 20
	recordSize  = 72
	leaseSize   = 48
	idSize      = 16
)

// ID identifies one list under one key configuration.
type ID [idSize]byte

func listID(uri, keysFingerprint string) ID {
	h := sha256.New()
	h.Write([]byte(uri))
	h.Write([]byte{0})
	h.Write([]byte(keysFingerprint))
	var id ID
	copy(id[:], h.Sum(nil))
	return id
}

// keysOf names the shared-data keys of a slot.
type slotKeys struct{ gen, list, lease string }

func keysFor(prefix string, slot int) slotKeys {
	p := prefix + "sl." + strconv.Itoa(slot) + "."
	return slotKeys{gen: p + "gen", list: p + "list", lease: p + "lease"}
}

func dirKey(prefix string) string { return prefix + "sl.dir" }

// dirSlot is one directory entry.
type dirSlot struct {
	uri      string
	added    time.Time
	lastUsed time.Time
}

func encodeDir(slots []dirSlot) []byte {
	n := dirHeader
	for _, s := range slots {
		n += dirSlotHead + len(s.uri)
	}
	b := make([]byte, n)
	copy(b, dirMagic)
	binary.LittleEndian.PutUint16(b[4:], formatV1)
	binary.LittleEndian.PutUint16(b[6:], uint16(len(slots)))
	o := dirHeader
	for _, s := range slots {
		binary.LittleEndian.PutUint16(b[o:], uint16(len(s.uri)))
		putMillis(b[o+4:], s.added)
		putMillis(b[o+12:], s.lastUsed)
		copy(b[o+dirSlotHead:], s.uri)
		o += dirSlotHead + len(s.uri)
	}
	return b
}

func decodeDir(b []byte) ([]dirSlot, error) {
	if len(b) < dirHeader || string(b[:4]) != dirMagic || binary.LittleEndian.Uint16(b[4:]) != formatV1 {
		return nil, fmt.Errorf("%w: directory header", ErrBadRecord)
	}
	n := int(binary.LittleEndian.Uint16(b[6:]))
	if n > maxMaxLists {
		return nil, fmt.Errorf("%w: directory of %d slots", ErrBadRecord, n)
	}
	slots := make([]dirSlot, n)
	o := dirHeader
	for i := range slots {
		if len(b)-o < dirSlotHead {
			return nil, fmt.Errorf("%w: directory cut short at slot %d", ErrBadRecord, i)
		}
		l := int(binary.LittleEndian.Uint16(b[o:]))
		if l > maxURILen || len(b)-o-dirSlotHead < l {
			return nil, fmt.Errorf("%w: directory slot %d", ErrBadRecord, i)
		}
		slots[i] = dirSlot{
			added:    getMillis(b[o+4:]),
			lastUsed: getMillis(b[o+12:]),
			uri:      string(b[o+dirSlotHead : o+dirSlotHead+l]),
		}
		o += dirSlotHead + l
	}
	if o != len(b) {
		return nil, fmt.Errorf("%w: %d bytes after the directory", ErrBadRecord, len(b)-o)
	}
	return slots, nil
}

// meta is what a generation record and a list record's header carry.
type meta struct {
	bits       uint8
	id         ID
	generation uint64
	fetched    time.Time
	exp        time.Time // zero: none
	iat        time.Time
	length     uint32
	nonce      uint64
}

func (m *meta) encode(magic string, body []byte) []byte {
	b := make([]byte, recordSize+len(body))
	copy(b, magic)
	binary.LittleEndian.PutUint16(b[4:], formatV1)
	b[6] = m.bits
	copy(b[8:], m.id[:])
	binary.LittleEndian.PutUint64(b[24:], m.generation)
	putMillis(b[32:], m.fetched)
	if !m.exp.IsZero() {
		putMillis(b[40:], m.exp)
	}
	binary.LittleEndian.PutUint64(b[48:], uint64(m.iat.Unix()))
	binary.LittleEndian.PutUint32(b[56:], m.length)
	binary.LittleEndian.PutUint64(b[64:], m.nonce)
	copy(b[recordSize:], body)
	return b
}

func decodeMeta(magic string, b []byte) (meta, error) {
	if len(b) < recordSize || string(b[:4]) != magic || binary.LittleEndian.Uint16(b[4:]) != formatV1 {
		return meta{}, fmt.Errorf("%w: %s record of %d bytes", ErrBadRecord, magic, len(b))
	}
	m := meta{
		bits:       b[6],
		generation: binary.LittleEndian.Uint64(b[24:]),
		fetched:    getMillis(b[32:]),
		iat:        time.Unix(int64(binary.LittleEndian.Uint64(b[48:])), 0),
		length:     binary.LittleEndian.Uint32(b[56:]),
		nonce:      binary.LittleEndian.Uint64(b[64:]),
	}
	copy(m.id[:], b[8:])
	if ms := int64(binary.LittleEndian.Uint64(b[40:])); ms != 0 {
		m.exp = time.UnixMilli(ms)
	}
	if !ValidBits(int(m.bits)) {
		return meta{}, fmt.Errorf("%w: %s record with bits %d", ErrBadRecord, magic, m.bits)
	}
	return m, nil
}

func encodeGen(m meta) []byte { return m.encode(genMagic, nil) }

func decodeGen(b []byte) (meta, error) {
	m, err := decodeMeta(genMagic, b)
	if err == nil && len(b) != recordSize {
		err = fmt.Errorf("%w: generation record of %d bytes", ErrBadRecord, len(b))
	}
	return m, err
}

func encodeList(m meta, list []byte) []byte {
	m.length = uint32(len(list))
	return m.encode(listMagic, list)
}

// decodeList returns the header and the list, which aliases b.
func decodeList(b []byte) (meta, []byte, error) {
	m, err := decodeMeta(listMagic, b)
	if err != nil {
		return meta{}, nil, err
	}
	if uint64(len(b)-recordSize) != uint64(m.length) {
		return meta{}, nil, fmt.Errorf("%w: list record holds %d bytes, says %d", ErrBadRecord, len(b)-recordSize, m.length)
	}
	return m, b[recordSize:], nil
}

// lease chooses the one VM that fetches a slot's list, and carries the schedule, so a new
// holder keeps the old one's pace and backoff. The rules are blocklistsync's: every VM reads
// it on its ticks; a free, expired or own lease is (re)written with CAS; a CAS mismatch means
// another VM moved first. Envoy cannot create a key atomically, so two VMs may both fetch once
// at start; the list record's CAS keeps their writes from mixing.
type lease struct {
	failures uint32
	holder   uint64
	expires  time.Time
	nextDue  time.Time
	id       ID
}

func (l lease) marshal() []byte {
	b := make([]byte, leaseSize)
	copy(b, leaseMagic)
	binary.LittleEndian.PutUint32(b[4:], l.failures)
	binary.LittleEndian.PutUint64(b[8:], l.holder)
	putMillis(b[16:], l.expires)
	putMillis(b[24:], l.nextDue)
	copy(b[32:], l.id[:])
	return b
}

func parseLease(b []byte) (lease, error) {
	if len(b) != leaseSize || string(b[:4]) != leaseMagic {
		return lease{}, fmt.Errorf("%w: lease of %d bytes", ErrBadRecord, len(b))
	}
	l := lease{
		failures: binary.LittleEndian.Uint32(b[4:]),
		holder:   binary.LittleEndian.Uint64(b[8:]),
		expires:  getMillis(b[16:]),
		nextDue:  getMillis(b[24:]),
	}
	copy(l.id[:], b[32:])
	return l, nil
}

func putMillis(b []byte, t time.Time) {
	if t.IsZero() {
		binary.LittleEndian.PutUint64(b, 0)
		return
	}
	binary.LittleEndian.PutUint64(b, uint64(t.UnixMilli()))
}

func getMillis(b []byte) time.Time {
	ms := int64(binary.LittleEndian.Uint64(b))
	if ms == 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}
