package jwkssync

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Shared-data layout (keys under the configured prefix, integers little-endian), the scheme of
// blocklistsync/layout.go: a small generation record every VM reads on its tick, and the key
// set itself, read only when the record names a build this VM does not hold.
//
//	<prefix>jwks.gen    32 bytes
//	    0  "JTKG"  magic
//	    4  u16     format (1)
//	    6  u16     reserved
//	    8  u64     generation number: one more than the newest seen by its writer
//	   16  u64     build ID of the key-set record published with it (random, never 0)
//	   24  i64     last successful fetch (200 or 304), Unix milliseconds
//
//	<prefix>jwks.keys   48 + len(etag) + len(doc) bytes
//	    0  "JTKS"  magic
//	    4  u16     format (1)
//	    6  u8      length of the ETag, u8 reserved
//	    8  u64     generation number
//	   16  u64     build ID
//	   24  i64     fetched at, Unix milliseconds
//	   32  u32     keys in the document
//	   36  u32     length of the document
//	   40  8 bytes reserved
//	   48          the endpoint's ETag (what the next fetch sends as if-none-match), then the
//	               document: {"keys":[...]} holding only the keys the writer accepted
//
//	<prefix>jwks.lease  40 bytes, see lease.go
//
// The writer stores the key-set record first and the generation record second. A reader
// that sees a generation record naming a build it does not hold reads the key-set record and
// takes whatever build it holds (the record is self-contained): two writers racing (Envoy
// cannot CAS a key that does not exist yet) may leave the generation record naming the
// other's build, but every reader then adopts the same key-set record, the last written, and
// the next publication names it again.

// Sentinel errors of the layout; every decode failure wraps one of them.
var (
	ErrBadGeneration = errors.New("malformed JWKS generation record")
	ErrBadKeyRecord  = errors.New("malformed JWKS key-set record")
)

const (
	genMagic      = "JTKG"
	keysMagic     = "JTKS"
	formatVersion = 1
	genSize       = 32
	keysHeader    = 48
	maxETagLen    = 128
)

// Keys names the shared-data keys under one prefix, beside blocklistsync's.
type Keys struct {
	Generation, KeySet, Lease string
}

// KeysFor returns the keys under prefix.
func KeysFor(prefix string) Keys {
	return Keys{Generation: prefix + "jwks.gen", KeySet: prefix + "jwks.keys", Lease: prefix + "jwks.lease"}
}

// KeysForEndpoint returns the keys of the key set fetched from c's endpoint under prefix: the
// endpoint (cluster, authority, path) is part of the names. Configurations that share a
// prefix in one store (the old one draining beside the new after a change of remote_jwks, two
// WasmPlugins on one Istio proxy) then never take each other's keys: a configuration moved
// off an endpoint stops trusting its keys at once, and each fetches its own.
func KeysForEndpoint(prefix string, c Config) Keys {
	h := sha256.New()
	for _, part := range []string{c.Cluster, c.Authority, c.Path} {
		h.Write([]byte(part + "\x00"))
	}
	// The headers too (a tenant header may pick another key set), in name order.
	names := slices.Sorted(maps.Keys(c.Headers))
	for _, n := range names {
		h.Write([]byte(strings.ToLower(n) + "\x00" + c.Headers[n] + "\x00"))
	}
	return KeysFor(prefix + "jwks." + hex.EncodeToString(h.Sum(nil)[:6]) + ".")
}

// Generation is the small record every VM reads on its tick.
type Generation struct {
	Number      uint64
	BuildID     uint64
	LastSuccess time.Time
}

// MarshalBinary encodes g.
func (g Generation) MarshalBinary() []byte {
	b := make([]byte, genSize)
	copy(b, genMagic)
	binary.LittleEndian.PutUint16(b[4:], formatVersion)
	binary.LittleEndian.PutUint64(b[8:], g.Number)
	binary.LittleEndian.PutUint64(b[16:], g.BuildID)
	binary.LittleEndian.PutUint64(b[24:], uint64(g.LastSuccess.UnixMilli()))
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
		BuildID:     binary.LittleEndian.Uint64(b[16:]),
		LastSuccess: time.UnixMilli(int64(binary.LittleEndian.Uint64(b[24:]))),
	}, nil
}

// KeyRecord is a published key set.
type KeyRecord struct {
	Number, BuildID uint64
	Fetched         time.Time
	Keys            int
	ETag            string
	Doc             []byte
}

// MarshalBinary encodes r; an ETag longer than 128 bytes is dropped (the next fetch then
// simply does not ask for 304).
func (r KeyRecord) MarshalBinary() []byte {
	etag := r.ETag
	if len(etag) > maxETagLen {
		etag = ""
	}
	b := make([]byte, keysHeader+len(etag)+len(r.Doc))
	copy(b, keysMagic)
	binary.LittleEndian.PutUint16(b[4:], formatVersion)
	b[6] = byte(len(etag))
	binary.LittleEndian.PutUint64(b[8:], r.Number)
	binary.LittleEndian.PutUint64(b[16:], r.BuildID)
	binary.LittleEndian.PutUint64(b[24:], uint64(r.Fetched.UnixMilli()))
	binary.LittleEndian.PutUint32(b[32:], uint32(r.Keys))
	binary.LittleEndian.PutUint32(b[36:], uint32(len(r.Doc)))
	copy(b[keysHeader:], etag)
	copy(b[keysHeader+len(etag):], r.Doc)
	return b
}

// ParseKeyRecord decodes a key-set record. Doc aliases b.
func ParseKeyRecord(b []byte) (KeyRecord, error) {
	if len(b) < keysHeader || string(b[:4]) != keysMagic {
		return KeyRecord{}, fmt.Errorf("%w: %d bytes", ErrBadKeyRecord, len(b))
	}
	if v := binary.LittleEndian.Uint16(b[4:]); v != formatVersion {
		return KeyRecord{}, fmt.Errorf("%w: format %d", ErrBadKeyRecord, v)
	}
	etagLen := int(b[6])
	docLen := int(binary.LittleEndian.Uint32(b[36:]))
	if etagLen > maxETagLen || len(b) != keysHeader+etagLen+docLen {
		return KeyRecord{}, fmt.Errorf("%w: lengths do not add up", ErrBadKeyRecord)
	}
	r := KeyRecord{
		Number:  binary.LittleEndian.Uint64(b[8:]),
		BuildID: binary.LittleEndian.Uint64(b[16:]),
		Fetched: time.UnixMilli(int64(binary.LittleEndian.Uint64(b[24:]))),
		Keys:    int(binary.LittleEndian.Uint32(b[32:])),
		ETag:    string(b[keysHeader : keysHeader+etagLen]),
		Doc:     b[keysHeader+etagLen:],
	}
	if r.BuildID == 0 {
		return KeyRecord{}, fmt.Errorf("%w: build ID 0", ErrBadKeyRecord)
	}
	return r, nil
}
