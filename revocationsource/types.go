// Package revocationsource is the server side of the revocation feed protocol
// (docs/feed.md): it mirrors a store (Redis, SQL, a file) into an in-memory
// index with a bounded change log, and serves snapshots, deltas and an admin
// API over HTTP.
package revocationsource

import (
	"context"
	"errors"
	"unicode/utf8"
)

// Limits of the feed protocol. An item outside them would make the filter
// reject the whole response, so the index drops it at ingestion instead.
const (
	MaxIDBytes    = 256
	MaxClaimBytes = 64 // a claim entry's claim name
	// MaxClaimNames bounds the distinct claim names of the claim entries: a filter reads
	// each from every token, at most blocklistsync.MaxClaimNames of them.
	MaxClaimNames   = 8
	MaxIssBytes     = 512
	MaxUnixSeconds  = 1<<32 - 1
	MaxVersionBytes = 128
)

// Sentinel errors; callers match them with errors.Is.
var (
	ErrInvalid           = errors.New("invalid item")
	ErrReadOnly          = errors.New("store is read-only")
	ErrIssuerUnsupported = errors.New("store cannot scope a jti to an issuer")
	// ErrClaimsUnsupported: the store has no place for claim entries (a
	// SQL store without its claims table, Redis without a claims key, a
	// file).
	ErrClaimsUnsupported = errors.New("store cannot hold revocations by claim")
	ErrTooManyEntries    = errors.New("store holds more entries than allowed")
	ErrStaleReconcile    = errors.New("change log no longer covers the reconciliation window")
	ErrNotReady          = errors.New("store has not answered yet")
	// ErrUnreadable: the store answers, but what it holds cannot be read
	// (a table changed under the server). Unlike an outage, revocations may
	// be arriving that the server cannot see, so it stops reporting ready.
	ErrUnreadable = errors.New("the store answers but its content cannot be read")
)

// Entry is one revocation in the feed's entries: a revoked jti, or, when
// Claim is set, a claim entry that revokes every token whose claim (a string, or a number as its text)
// Claim (for example "sid") is JTI. One type for both keeps one map, one
// log, one expiry heap and one delta path for all entries, and a claim entry
// can never be taken for a jti because Claim is part of its key. Exp 0 means
// "no known expiry".
type Entry struct {
	// JTI is the revoked jti, or a claim entry's value.
	JTI string
	Iss string
	Exp int64
	// Claim names the claim of a claim entry; "" for a jti entry. Never
	// "jti" or "sub" (docs/feed.md).
	Claim string
}

// ClaimEntry returns the claim entry revoking tokens whose claim is value.
func ClaimEntry(iss, claim, value string, exp int64) Entry {
	return Entry{JTI: value, Iss: iss, Exp: exp, Claim: claim}
}

// Key is what the feed matches entries on.
func (e Entry) Key() EntryKey { return EntryKey{Iss: e.Iss, JTI: e.JTI, Claim: e.Claim} }

// IsClaim reports whether e is a claim entry.
func (e Entry) IsClaim() bool { return e.Claim != "" }

// EntryKey identifies an entry: the feed matches on (iss, jti), and claim
// entries on (iss, claim, value) with the value in JTI.
type EntryKey struct{ Iss, JTI, Claim string }

// Entry returns the entry of this key with the given exp.
func (k EntryKey) Entry(exp int64) Entry {
	return Entry{JTI: k.JTI, Iss: k.Iss, Exp: exp, Claim: k.Claim}
}

// ClaimStore is implemented by stores that can keep claim entries (Entry
// with Claim set). A store without it, or whose method answers
// ErrClaimsUnsupported, has no place for them: the admin API answers 501.
// RevokeToken and UnrevokeToken are only ever given jti entries, so a store
// that predates claim entries cannot write a sid as a jti.
type ClaimStore interface {
	// RevokeClaim stores a claim entry; revoking one already held never
	// shortens it (the later exp wins, and no exp beats any).
	RevokeClaim(ctx context.Context, e Entry) error
	UnrevokeClaim(ctx context.Context, k EntryKey) error
}

// Cutoff revokes every token of a subject issued before RevokedBefore.
type Cutoff struct {
	Sub           string
	Iss           string
	RevokedBefore int64
	Exp           int64
}

// Key is what the feed matches cutoffs on.
func (c Cutoff) Key() CutoffKey { return CutoffKey{Iss: c.Iss, Sub: c.Sub} }

// CutoffKey identifies a cutoff: the feed matches on (iss, sub).
type CutoffKey struct{ Iss, Sub string }

// State is the full content of a store.
type State struct {
	Entries []Entry
	Cutoffs []Cutoff
}

// Op says what a Change does.
type Op uint8

// Operations on the index.
const (
	OpPutEntry Op = iota + 1
	OpRemoveEntry
	OpPutCutoff
	OpRemoveCutoff
)

// Change is one incremental update reported by a store. Removals only need
// the key fields.
type Change struct {
	Op     Op
	Entry  Entry
	Cutoff Cutoff
	// Merge keeps the longer of the existing and the new expiry on a put:
	// SQL tables may hold several rows for one jti, and the token stays
	// revoked as long as any of them says so.
	Merge bool
	// Expired marks a removal the store did not ask for: the item is gone
	// because its time came (a TTL, an eviction, a cleanup job). The index
	// keeps it until exp + grace, because a filter with a clock leeway still
	// accepts the token until exp + leeway. Removals asked for (an unrevoke,
	// a DELETE by the app) leave it false and take effect at once.
	Expired bool
}

// Store is the source of truth. The index is only a cache of it, which is why
// a restart loses nothing.
type Store interface {
	// Load reads the whole content. It is used at start and for periodic
	// reconciliation, so it must be bounded (ErrTooManyEntries).
	Load(ctx context.Context) (State, error)
	RevokeToken(ctx context.Context, e Entry) error
	UnrevokeToken(ctx context.Context, k EntryKey) error
	RevokeSubject(ctx context.Context, c Cutoff) error
	UnrevokeSubject(ctx context.Context, k CutoffKey) error
	Close() error
}

// EffectiveEntrier is implemented by stores that cannot keep an entry's exp
// exactly as given (a table without an expiry column derives it from the
// creation time): EffectiveEntry is the entry as a later read will return
// it, so the index holds the same thing before and after a reconciliation.
type EffectiveEntrier interface {
	EffectiveEntry(e Entry) Entry
}

// Pruner is implemented by stores that can delete their own expired items
// (only when the operator asks: the store may be the app's).
type Pruner interface {
	// Prune deletes items whose exp + grace has passed and returns how many.
	Prune(ctx context.Context) (int64, error)
}

// Sink receives what a Follower observes.
type Sink interface {
	// Apply applies incremental changes.
	Apply(changes []Change) string
	// Seq is the position in the change log; pass it to Reconcile* so that
	// changes made while a read was in flight are not undone by it.
	Seq() uint64
	// ReconcileCutoffs replaces all cutoffs with cs, read after since.
	ReconcileCutoffs(cs []Cutoff, since uint64) error
	// ReconcileClaims replaces all claim entries with es, read after since.
	ReconcileClaims(es []Entry, since uint64) error
	// Reconcile replaces everything with st, read after since.
	Reconcile(st State, since uint64) error
}

// Follower is implemented by stores that can report changes without a full
// Load on every poll (Redis keyspace notifications, SQL id polling, file
// mtime polling). Follow blocks until ctx ends or the follower fails; the
// caller restarts it after a full reconciliation.
type Follower interface {
	Follow(ctx context.Context, sink Sink) error
}

func validID(s string) bool {
	return len(s) >= 1 && len(s) <= MaxIDBytes && utf8.ValidString(s)
}

func validIss(s string) bool {
	return len(s) <= MaxIssBytes && utf8.ValidString(s)
}

func validUnix(v int64) bool { return v >= 0 && v <= MaxUnixSeconds }

// ValidClaimName reports whether name can be a claim entry's claim: 1 to
// MaxClaimBytes bytes of visible ASCII, none of "jti" (a jti entry says
// that), "sub" (a cutoff says that), "iss" (an entry's own iss scopes it)
// or "iat" (a cutoff revokes by time). The filter's parser holds feeds to
// the same rule (blocklistsync.CheckClaimName; a test keeps them equal).
func ValidClaimName(name string) bool {
	switch name {
	case "jti", "sub", "iss", "iat":
		return false
	}
	if len(name) == 0 || len(name) > MaxClaimBytes {
		return false
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// Validate reports whether e fits the feed's limits.
func (e Entry) Validate() error {
	if !validID(e.JTI) || !validIss(e.Iss) || !validUnix(e.Exp) || e.Claim != "" && !ValidClaimName(e.Claim) {
		return ErrInvalid
	}
	return nil
}

// Validate reports whether c fits the feed's limits.
func (c Cutoff) Validate() error {
	if !validID(c.Sub) || !validIss(c.Iss) || !validUnix(c.Exp) || !validUnix(c.RevokedBefore) {
		return ErrInvalid
	}
	return nil
}
