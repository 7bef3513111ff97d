package filter

import (
	"math/rand/v2"
	"slices"
	"strings"
	"unsafe"

	"github.com/jtiguard/jtiguard/blocklistsync"
	"github.com/jtiguard/jtiguard/credentials"
	"github.com/jtiguard/jtiguard/internal/words"
	"github.com/jtiguard/jtiguard/statuslist"
)

// identity is what the revocation check needs of one payload: every jti, sub and iat it
// carries (read leniently, verifying nothing), and their blocklist keys under the hasher of the
// list they were computed for.
type identity struct {
	jtis, subs, iss strs
	iats            []int64
	iatUnreadable   bool
	overflow        bool // a claim repeated more than credentials.MaxValues times

	// claims holds the values this payload gives the claims that the list's claim entries
	// revoke by (sid, ...), read for claimNames: the list's names, which tell whether they
	// must be read again.
	claims     []claimValue
	claimNames []string
	// read reads a claim of the payload jwt_authn passed on (trust_upstream's
	// payload_in_metadata); nil for a payload discovery found.
	read func(claim string) []byte

	hasher    keyHasher
	hashed    bool
	tokenKeys []uint64 // ("", jti) for every jti, and (iss, jti) for every iss when keyed by issuer; likewise every claim value
	subKeys   []uint64 // likewise for every sub

	// status holds the payload's status.status_list references, read on first use (only when
	// status_list is configured).
	status     statuslist.Refs
	statusRead bool

	// Room for the lists above in the identity itself: a new token's identity is one
	// allocation with its entry, not one per list (an allocation costs far more in wasm).
	strBuf [3 * credentials.MaxValues]string
	iatBuf [credentials.MaxValues]int64
	keyBuf [2 * keysInline]uint64
	// claimBuf holds a session's sid, and one more claim value.
	claimBuf [2]claimValue
}

// claimValue is one value of a claim that claim entries revoke by: the claim's index in the
// identity's claimNames, and the value (a string, or a number's decimal text).
type claimValue struct {
	name  uint8
	value string
}

// The filter reads, from every token, each claim a list's claim entries name.
var _ [credentials.MaxClaims - blocklistsync.MaxClaimNames]struct{}

// keysInline is how many keys of each kind fit in an identity before they need an array of
// their own: one jti, or one jti under one issuer, is the common token.
const keysInline = 2

// strs is a short list of strings owned by an identity.
type strs struct {
	v []string
	n int
}

// fill sets id from what discovery read for the claim names names, copying its strings into
// buf (views of the caller's buffer: grown by the caller to fit, so they share its one
// allocation).
func (id *identity) fill(pk *credentials.Peeked, names []string, buf *[]byte) {
	lists := [3]struct {
		dst *strs
		src *credentials.Values
	}{{&id.jtis, &pk.JTI}, {&id.subs, &pk.Sub}, {&id.iss, &pk.Iss}}
	used := 0
	for _, l := range lists {
		n := l.src.Len()
		l.dst.v, l.dst.n = id.strBuf[used:used+n:used+n], n
		for i := range n {
			l.dst.v[i] = appendView(buf, l.src.At(i))
		}
		used += n
	}
	id.iats = append(id.iatBuf[:0:len(id.iatBuf)], pk.Iat[:pk.NIat]...)
	id.iatUnreadable, id.overflow = pk.IatUnreadable, pk.Overflow
	id.tokenKeys, id.subKeys = id.keyBuf[:0:keysInline], id.keyBuf[keysInline:keysInline:2*keysInline]
	id.setClaims(pk, names, buf)
}

// setClaims keeps the values pk holds of the claims names, copied into buf (which must have
// room: see peekedSize), and drops the keys computed for other names.
func (id *identity) setClaims(pk *credentials.Peeked, names []string, buf *[]byte) {
	if id.claims == nil {
		id.claims = id.claimBuf[:0:len(id.claimBuf)]
	}
	id.claims, id.claimNames, id.hashed = id.claims[:0], names, false
	for k := range names {
		for i := range pk.Claims[k].Len() {
			id.claims = append(id.claims, claimValue{uint8(k), appendView(buf, pk.Claims[k].At(i))})
		}
	}
	id.overflow = pk.Overflow
}

// sameNames reports whether a and b are the same claim names. The list's reader hands out
// one slice for as long as the names do not change, so this is a comparison of two words
// on the request path.
func sameNames(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	return len(a) == 0 || &a[0] == &b[0] || slices.Equal(a, b)
}

// peekedSize is how many bytes fill copies.
func peekedSize(pk *credentials.Peeked) int {
	n := 0
	for _, v := range []*credentials.Values{&pk.JTI, &pk.Sub, &pk.Iss} {
		for i := range v.Len() {
			n += len(v.At(i))
		}
	}
	return n + claimsSize(pk)
}

// claimsSize is how many bytes setClaims copies.
func claimsSize(pk *credentials.Peeked) int {
	n := 0
	for k := range pk.Claims {
		for i := range pk.Claims[k].Len() {
			n += len(pk.Claims[k].At(i))
		}
	}
	return n
}

// appendView appends s to *buf and returns the copy as a string; *buf must have room, so
// that no earlier copy moves (and it is never written again).
func appendView(buf *[]byte, s string) string {
	if s == "" {
		return ""
	}
	start := len(*buf)
	*buf = append(*buf, s...)
	return unsafe.String(&(*buf)[start], len(s))
}

// computeKeys (re)computes the keys for h, in place once the slices exist.
func (id *identity) computeKeys(h keyHasher, byIssuer bool) {
	if id.hashed && id.hasher == h {
		return
	}
	id.tokenKeys = keysFor(id.tokenKeys[:0], &id.jtis, &id.iss, byIssuer, h.TokenKey)
	for _, c := range id.claims {
		name := id.claimNames[c.name]
		id.tokenKeys = append(id.tokenKeys, h.ClaimKey("", name, c.value))
		if byIssuer {
			for _, i := range id.iss.v[:id.iss.n] {
				id.tokenKeys = append(id.tokenKeys, h.ClaimKey(i, name, c.value))
			}
		}
	}
	id.subKeys = keysFor(id.subKeys[:0], &id.subs, &id.iss, byIssuer, h.SubjectKey)
	id.hasher, id.hashed = h, true
}

func keysFor(dst []uint64, values, iss *strs, byIssuer bool, key func(iss, v string) uint64) []uint64 {
	for _, v := range values.v[:values.n] {
		dst = append(dst, key("", v))
		if byIssuer {
			for _, i := range iss.v[:iss.n] {
				dst = append(dst, key(i, v))
			}
		}
	}
	return dst
}

// revoked reports whether any jti or claim value is listed, or any sub has a cutoff the token falls under:
// issued before it, or of no readable issue time (which cannot be ruled out).
func (id *identity) revoked(snap *blocklistsync.Snapshot, notBefore uint32) bool {
	for _, k := range id.tokenKeys {
		if snap.Revoked(k, notBefore) {
			return true
		}
	}
	for _, k := range id.subKeys {
		before, ok := snap.CutoffFor(k, notBefore)
		if !ok {
			continue
		}
		if len(id.iats) == 0 || id.iatUnreadable {
			return true
		}
		for _, iat := range id.iats {
			if iat < int64(before) {
				return true
			}
		}
	}
	return false
}

// entry is one cached payload: its identity, and the last token with this payload that
// verified (tokens differ from it only in their signature).
type entry struct {
	payload string // the key, compared in full on every lookup
	key     uint64 // the payload's hash, its key in the table
	used    bool   // found since the eviction hand last passed (entryTable.evictOne)
	id      identity
	token   string
	at      int // where payload lies in token: token[at:at+len(payload)] == payload
	info    tokenInfo
	// tokenKnown is the credentials.Selection.Known id of token, when it verified from a
	// value the Scanner remembers; 0 otherwise.
	tokenKnown uint64
	// linkID is the id of the last link made to this entry (tokenCache.links), undone when
	// the entry leaves the table.
	linkID uint64
}

// newEntry makes the entry of a payload discovery has read for the claim names names: the
// entry and one buffer for the payload and the claims it keeps.
func newEntry(payload string, pk *credentials.Peeked, names []string) *entry {
	e := &entry{}
	buf := make([]byte, 0, len(payload)+peekedSize(pk))
	e.payload = appendView(&buf, payload)
	e.id.fill(pk, names, &buf)
	return e
}

// readClaims reads e's claims again for the list's new claim names.
func (e *entry) readClaims(sc *credentials.Scanner, names []string) {
	pk := sc.PeekClaims(e.payload, names)
	buf := make([]byte, 0, claimsSize(pk))
	e.id.setClaims(pk, names, &buf)
}

// tokenCache remembers, per payload, what discovery read from it and which token carrying it
// verified, so a token seen again costs neither decoding nor a signature check. It never
// caches a revocation answer: the list is consulted on every request.
//
// Entries are found by a seeded hash of the payload (words.Hash, eight bytes at a time: a Go
// map keyed by the string would hash and compare it a byte at a time in wasm), in an
// entryTable indexed by that hash itself, and the payload is then compared in full, so a
// collision is a miss, never another token's entry: the colliding payloads take turns in the
// slot, and each costs a decode and a verification when it comes back.
//
// Bounded by entry count (the links keep at most cacheLinks more entries alive); keys and
// tokens are bounded by the request size limits. Eviction is
// by the clock algorithm (entryTable.evictOne): O(1) amortised, and the tokens requests keep
// coming back with stay while tokens seen once come and go.
type tokenCache struct {
	max     int
	seed    uint64
	entries entryTable
	// last is the entry identity() found last, under the view it was asked for: the token
	// validation then looks up is usually that same payload, at the same address.
	lastKey   string
	lastEntry *entry
	// links find the entry of a payload the Scanner found in a value it remembers, by the
	// value's id (credentials.Selection.Known), without hashing and comparing the payload:
	// the id names the payload's bytes, and an entry is linked to it only once found for
	// that payload. A link is followed only while its entry is still the table's; the last
	// link to an entry is undone when the entry leaves it, and a stale one when it is met, so
	// links keep no entry the table dropped, beyond those linked under several ids (the same
	// payload under several signatures) and not met since: at most cacheLinks.
	links [cacheLinks]link
}

// cacheLinks is the size of the links table, direct-mapped by id (ids are sequential).
const cacheLinks = 256

type link struct {
	id uint64
	e  *entry
}

// linked returns the entry linked to id, if it is still in the table.
func (c *tokenCache) linked(id uint64) *entry {
	if id == 0 {
		return nil
	}
	l := &c.links[id%cacheLinks]
	if l.id != id {
		return nil
	}
	if c.entries.get(l.e.key) != l.e {
		*l = link{}
		return nil
	}
	l.e.used = true
	return l.e
}

// link links id to e, which the cache holds for the payload id names.
func (c *tokenCache) link(id uint64, e *entry) {
	c.links[id%cacheLinks] = link{id, e}
	e.linkID = id
}

// unlink undoes the last link to e, which left the table.
func (c *tokenCache) unlink(e *entry) {
	if e == nil || e.linkID == 0 {
		return
	}
	if l := &c.links[e.linkID%cacheLinks]; l.e == e {
		*l = link{}
	}
}

func newTokenCache(max int) *tokenCache {
	return &tokenCache{max: max, seed: rand.Uint64(), entries: newEntryTable(max)}
}

// get finds payload's entry.
func (c *tokenCache) get(payload string) *entry {
	e := c.entries.get(words.Hash(payload, c.seed))
	if e == nil || !words.Equal(e.payload, payload) {
		return nil
	}
	e.used = true
	return e
}

// identity returns the identity of a candidate payload, with keys for snap: its hasher, and
// the claims its claim entries name.
//
// known is the payload's credentials.Selection.Known id (Result.KnownOf), or 0.
func (c *tokenCache) identity(payload string, snap *blocklistsync.Snapshot, sc *credentials.Scanner, byIssuer bool, known uint64) *identity {
	h, names := hasherOf(snap), snap.Claims()
	e := c.linked(known)
	viaLink := e != nil
	if !viaLink {
		e = c.get(payload)
	}
	probe(ptCacheGet)
	if e == nil {
		pk := sc.PeekClaims(payload, names)
		probe(ptPeek)
		e = newEntry(payload, pk, names)
		probe(ptNewEntry)
		if !c.put(e) {
			e.id.computeKeys(h, byIssuer)
			return &e.id
		}
	} else if !sameNames(e.id.claimNames, names) {
		e.readClaims(sc, names)
	}
	e.id.claimNames = names // the reader's slice, so that the next check is by identity
	c.lastKey, c.lastEntry = payload, e
	if known != 0 && !viaLink {
		c.link(known, e)
	}
	probe(ptPut)
	e.id.computeKeys(h, byIssuer)
	probe(ptKeys)
	return &e.id
}

// forgetLast drops the last entry's view: it pointed into the previous request.
func (c *tokenCache) forgetLast() { c.lastKey, c.lastEntry = "", nil }

// lookup finds payload's entry, first by address among the last one identity() returned.
func (c *tokenCache) lookup(payload string) *entry {
	if len(payload) == len(c.lastKey) && unsafe.StringData(payload) == unsafe.StringData(c.lastKey) {
		return c.lastEntry
	}
	return c.get(payload)
}

// verified returns the info of token, whose payload is given, if it verified before and is
// not expired at now (Unix nanoseconds): dropped at its expiry exactly, it must be judged
// again. known is the token's credentials.Selection.Known id, or 0: the same non-zero id as
// the verified token's is the same token, without comparing it.
func (c *tokenCache) verified(token, payload string, now int64, known uint64) (tokenInfo, bool) {
	e := c.lookup(payload)
	if e == nil || (known == 0 || e.tokenKnown != known) && !e.sameToken(token, payload) {
		return tokenInfo{}, false
	}
	if e.info.expiresAt != 0 && now >= e.info.expiresAt {
		e.token, e.tokenKnown = "", 0
		return tokenInfo{}, false
	}
	return e.info, true
}

// sameToken reports whether e.token == token, where payload is the token's payload and e's
// (lookup found e by it). When payload is a view into token at e's offset, only the bytes
// around it are compared: both tokens hold the same payload there. A cache hit then reads
// the payload's bytes once (identity's lookup), not twice (FuzzSameTokenIsEqual).
func (e *entry) sameToken(token, payload string) bool {
	if len(e.token) != len(token) {
		return false
	}
	at := int(uintptr(unsafe.Pointer(unsafe.StringData(payload))) - uintptr(unsafe.Pointer(unsafe.StringData(token))))
	if at != e.at || len(payload) != len(e.payload) || at <= 0 || at+len(payload) > len(token) {
		return words.Equal(e.token, token)
	}
	end := at + len(payload)
	return words.Equal(e.token[:at], token[:at]) && words.Equal(e.token[end:], token[end:])
}

// putVerified remembers that token verified.
func (c *tokenCache) putVerified(token string, info tokenInfo, now int64, sc *credentials.Scanner, byIssuer bool, known uint64) {
	payload := payloadOf(token)
	e := c.lookup(payload) // usually the entry identity() just made: found without hashing
	if e == nil {
		e = newEntry(payload, sc.Peek(payload), nil) // identity() reads its claims
		if !c.put(e) {
			return
		}
	}
	e.token, e.info, e.tokenKnown = strings.Clone(token), info, known
	e.at = strings.IndexByte(token, '.') + 1 // payloadOf(token) starts there
}

// put stores e (its payload already cloned: the request's is a view); false if the cache is
// off. An entry whose payload collides with e's is replaced.
func (c *tokenCache) put(e *entry) bool {
	if c.max == 0 {
		return false
	}
	key := words.Hash(e.payload, c.seed)
	e.key = key
	if !c.entries.has(key) && c.entries.len() >= c.max {
		c.lastKey, c.lastEntry = "", nil
		c.unlink(c.entries.evictOne())
	}
	c.unlink(c.entries.set(key, e))
	return true
}

// payloadOf is what lies between a token's first and last dot, as discovery names it.
func payloadOf(token string) string {
	first := strings.IndexByte(token, '.')
	last := strings.LastIndexByte(token, '.')
	if first < 0 || last <= first {
		return ""
	}
	return token[first+1 : last]
}

// keyHasher computes blocklist keys the way the list was built (its keyed hash).
type keyHasher = blocklistsync.Hasher

func hasherOf(snap *blocklistsync.Snapshot) keyHasher { return snap.Hasher() }
