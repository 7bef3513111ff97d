package blocklistsync

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"
)

// scanner parses the JSON feed in place. A 1M-entry feed is about 64 MiB; encoding/json's
// Decoder would copy it into its own buffer and allocate every jti, and since a wasm VM's
// memory never shrinks, the lease holder would keep that peak for life. Here the common case
// (ASCII strings without escapes, integer times) allocates nothing but the entry slices;
// anything unusual (escapes, non-ASCII, unknown fields) is handed to encoding/json for that
// one value, so the accepted language is JSON's. Keys match exactly (the feed is
// case-sensitive, unlike encoding/json's struct matching).
type scanner struct {
	b     []byte
	i     int
	lim   FeedLimits
	count int
	u     Update
}

var (
	errSyntax   = errors.New("invalid JSON")
	errTooDeep  = errors.New("JSON nested too deeply")
	errNotInt   = errors.New("not an integer from 0 to 4294967295")
	errNotStr   = errors.New("not a string")
	maxSkipDeep = 10000
)

func parseJSONFeed(body []byte, lim FeedLimits) (*Update, error) {
	s := &scanner{b: body, lim: lim}
	// Size the entry slice once: growing it by doubling would allocate about twice its final
	// size, and a wasm VM's memory keeps its peak. Every entry spells "jti" or "claim" once,
	// so this is an upper bound (bounded again by max_entries and by the body's length).
	if n := min(bytes.Count(body, []byte(`"jti"`))+bytes.Count(body, []byte(`"claim"`)), lim.MaxEntries); n > 0 {
		s.u.Add.Entries = make([]Entry, 0, n)
	}
	if err := s.document(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadFeed, err)
	}
	return &s.u, nil
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// peek returns the next non-blank byte without consuming it (0 at the end).
func (s *scanner) peek() byte {
	s.ws()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		return fmt.Errorf("%w: expected %q at byte %d", errSyntax, c, s.i)
	}
	s.i++
	return nil
}

// str reads a string. The result aliases the body on the fast path; it must not be kept.
func (s *scanner) str() ([]byte, error) {
	if s.peek() != '"' {
		return nil, fmt.Errorf("%w at byte %d", errNotStr, s.i)
	}
	start := s.i
	s.i++
	for j := s.i; j < len(s.b); j++ {
		c := s.b[j]
		switch {
		case c == '"':
			s.i = j + 1
			return s.b[start+1 : j], nil
		case c == '\\' || c < 0x20 || c >= utf8.RuneSelf:
			return s.slowString(start)
		}
	}
	return nil, fmt.Errorf("%w: unterminated string", errSyntax)
}

// slowString decodes a string with escapes or non-ASCII bytes exactly as encoding/json does.
func (s *scanner) slowString(start int) ([]byte, error) {
	j := start + 1
	for ; j < len(s.b); j++ {
		if s.b[j] == '\\' {
			j++
			continue
		}
		if s.b[j] == '"' {
			break
		}
	}
	if j >= len(s.b) {
		return nil, fmt.Errorf("%w: unterminated string", errSyntax)
	}
	var v string
	if err := json.Unmarshal(s.b[start:j+1], &v); err != nil {
		return nil, fmt.Errorf("%w: %v", errSyntax, err)
	}
	s.i = j + 1
	return []byte(v), nil
}

// null consumes a JSON null if one is next.
func (s *scanner) null() bool {
	if s.peek() == 'n' && s.i+4 <= len(s.b) && string(s.b[s.i:s.i+4]) == "null" {
		s.i += 4
		return true
	}
	return false
}

// optString reads a string or null (null leaves dst unchanged, as encoding/json does).
func (s *scanner) optString(dst *string, field string, maxLen int) error {
	if s.null() {
		return nil
	}
	v, err := s.str()
	if err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if len(v) > maxLen {
		return fmt.Errorf("%s: longer than %d bytes", field, maxLen)
	}
	*dst = string(v)
	return nil
}

// uint32v reads an integer in 0..2^32-1, or null (present=false).
func (s *scanner) uint32v() (v uint32, present bool, err error) {
	if s.null() {
		return 0, false, nil
	}
	start := s.i
	var n uint64
	for s.i < len(s.b) && s.b[s.i] >= '0' && s.b[s.i] <= '9' {
		n = n*10 + uint64(s.b[s.i]-'0')
		if n > 1<<32-1 {
			return 0, false, errNotInt
		}
		s.i++
	}
	digits := s.i - start
	if digits == 0 || (digits > 1 && s.b[start] == '0') {
		return 0, false, errNotInt
	}
	if s.i < len(s.b) && (s.b[s.i] == '.' || s.b[s.i] == 'e' || s.b[s.i] == 'E') {
		return 0, false, errNotInt
	}
	return uint32(n), true, nil
}

// skip consumes any JSON value. Its extent is found by bracket counting and then validated
// by encoding/json, so a skipped value is held to JSON's grammar too.
func (s *scanner) skip() error {
	s.ws()
	start := s.i
	depth := 0
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch c {
		case '"':
			if _, err := s.str(); err != nil {
				return err
			}
			if depth == 0 {
				return s.validate(start)
			}
			continue
		case '{', '[':
			if depth++; depth > maxSkipDeep {
				return errTooDeep
			}
		case '}', ']':
			if depth == 0 { // the parent's closer: a scalar value ended here
				return s.validate(start)
			}
			if depth--; depth == 0 {
				s.i++
				return s.validate(start)
			}
		case ',', ':':
			if depth == 0 {
				return s.validate(start)
			}
		case ' ', '\t', '\n', '\r':
			if depth == 0 {
				return s.validate(start)
			}
		}
		s.i++
	}
	return s.validate(start)
}

func (s *scanner) validate(start int) error {
	if start == s.i || !json.Valid(s.b[start:s.i]) {
		return fmt.Errorf("%w at byte %d", errSyntax, start)
	}
	return nil
}

// object calls field for each key of an object, with the scanner before its value.
func (s *scanner) object(field func(key []byte) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		key, err := s.str()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := field(key); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.i++
		case '}':
			s.i++
			return nil
		default:
			return fmt.Errorf("%w: expected ',' or '}' at byte %d", errSyntax, s.i)
		}
	}
}

// array calls item for each element of an array.
func (s *scanner) array(field string, item func(i int) error) error {
	if err := s.expect('['); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if s.peek() == ']' {
		s.i++
		return nil
	}
	for i := 0; ; i++ {
		if s.count++; s.count > s.lim.MaxEntries {
			return fmt.Errorf("%s: more than %d entries and cutoffs", field, s.lim.MaxEntries)
		}
		if err := item(i); err != nil {
			return fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		switch s.peek() {
		case ',':
			s.i++
		case ']':
			s.i++
			return nil
		default:
			return fmt.Errorf("%s: %w: expected ',' or ']' at byte %d", field, errSyntax, s.i)
		}
	}
}

// Top-level members the feed defines. Each may appear once; each kind allows its own.
const (
	mKind = 1 << iota
	mVersion
	mBase
	mEntries
	mCutoffs
	mAdded
	mRemoved
	mCutoffsAdded
	mCutoffsRemoved
	mError

	snapshotMembers = mKind | mVersion | mEntries | mCutoffs
	deltaMembers    = mKind | mVersion | mBase | mAdded | mRemoved | mCutoffsAdded | mCutoffsRemoved
)

// memberBit returns the bit of a top-level member name, 0 for names the feed does not define.
func memberBit(key string) int {
	switch key {
	case "kind":
		return mKind
	case "version":
		return mVersion
	case "base":
		return mBase
	case "entries":
		return mEntries
	case "cutoffs":
		return mCutoffs
	case "added":
		return mAdded
	case "removed":
		return mRemoved
	case "cutoffs_added":
		return mCutoffsAdded
	case "cutoffs_removed":
		return mCutoffsRemoved
	case "error":
		return mError
	}
	return 0
}

var memberNames = []string{"kind", "version", "base", "entries", "cutoffs", "added", "removed", "cutoffs_added", "cutoffs_removed", "error"}

func (s *scanner) document() error {
	kind := ""
	seen := 0
	err := s.object(func(key []byte) error {
		bit := memberBit(string(key))
		if bit != 0 && seen&bit != 0 {
			return fmt.Errorf("member %q twice", key)
		}
		seen |= bit
		switch bit {
		case mKind:
			return s.optString(&kind, "kind", 16)
		case mVersion:
			return s.optString(&s.u.Version, "version", MaxVersionLen)
		case mBase:
			return s.optString(&s.u.Base, "base", MaxVersionLen)
		case mEntries, mAdded:
			return s.array(string(key), func(int) error {
				k, id, exp, claim, err := s.entry()
				if err == nil && claim != nil {
					err = s.u.Add.addClaimName(claim)
				}
				s.u.Add.Entries = append(s.u.Add.Entries, Entry{Key: k, ID: id, Exp: exp})
				return err
			})
		case mRemoved:
			return s.array("removed", func(int) error {
				k, id, _, _, err := s.entry()
				s.u.Remove = append(s.u.Remove, Ref{k, id})
				return err
			})
		case mCutoffs, mCutoffsAdded:
			return s.array(string(key), func(int) error {
				c, err := s.cutoff(true)
				s.u.Add.Cutoffs = append(s.u.Add.Cutoffs, c)
				return err
			})
		case mCutoffsRemoved:
			return s.array("cutoffs_removed", func(int) error {
				c, err := s.cutoff(false)
				s.u.RemoveCutoffs = append(s.u.RemoveCutoffs, Ref{c.Key, c.ID})
				return err
			})
		default:
			return s.skip() // servers may add fields of their own; "error" is judged below
		}
	})
	if err != nil {
		return err
	}
	if s.ws(); s.i < len(s.b) {
		return errors.New("data after the JSON object")
	}
	return finishUpdate(&s.u, kind, seen)
}

// finishUpdate checks the kind and the members it requires and allows. A body without its
// kind or its entry arrays ({}, an error object, a truncated writer's output) is refused
// rather than read as an empty list.
func finishUpdate(u *Update, kind string, seen int) error {
	if seen&mError != 0 {
		return errors.New(`the body is an error object (it has an "error" member)`)
	}
	var allowed, required int
	switch kind {
	case "snapshot":
		u.Kind, allowed, required = KindSnapshot, snapshotMembers, mKind|mEntries
	case "delta":
		u.Kind, allowed, required = KindDelta, deltaMembers, mKind|mBase|mAdded|mRemoved
		if u.Base == "" && seen&mBase != 0 {
			return errors.New("a delta needs a non-empty base version")
		}
	case "":
		return errors.New(`"kind" is required: "snapshot" or "delta"`)
	default:
		return fmt.Errorf("unknown kind %q", kind)
	}
	for i, name := range memberNames {
		bit := 1 << i
		if seen&bit != 0 && allowed&bit == 0 {
			return fmt.Errorf("a %s has no %q member", kind, name)
		}
		if seen&bit == 0 && required&bit != 0 {
			return fmt.Errorf("a %s needs its %q member", kind, name)
		}
	}
	if u.Kind == KindDelta {
		return checkDisjoint(u)
	}
	return nil
}

// checkDisjoint refuses a delta that both adds and removes one entry or cutoff: which one
// the source meant cannot be told.
func checkDisjoint(u *Update) error {
	if len(u.Remove) > 0 && len(u.Add.Entries) > 0 {
		removed := make(map[Ref]struct{}, len(u.Remove))
		for _, r := range u.Remove {
			removed[r] = struct{}{}
		}
		for i, e := range u.Add.Entries {
			if _, ok := removed[Ref{e.Key, e.ID}]; ok {
				return fmt.Errorf("added[%d] is also removed", i)
			}
		}
	}
	if len(u.RemoveCutoffs) > 0 && len(u.Add.Cutoffs) > 0 {
		removed := make(map[Ref]struct{}, len(u.RemoveCutoffs))
		for _, r := range u.RemoveCutoffs {
			removed[r] = struct{}{}
		}
		for i, c := range u.Add.Cutoffs {
			if _, ok := removed[Ref{c.Key, c.ID}]; ok {
				return fmt.Errorf("cutoffs_added[%d] is also removed", i)
			}
		}
	}
	return nil
}

func (s *scanner) issuer(iss []byte) ([]byte, error) {
	if len(iss) > MaxIssuerLen {
		return nil, fmt.Errorf("iss longer than %d bytes", MaxIssuerLen)
	}
	if !s.lim.KeyedByIssuer {
		return nil, nil // the deployment ignores issuers: every entry matches by jti alone
	}
	return iss, nil
}

// entry reads one entry: a revoked jti ({"jti": …}) or a claim entry ({"claim": "sid",
// "value": …}), never both. claim is the claim entry's claim name, nil for a jti entry.
func (s *scanner) entry() (key, id uint64, exp uint32, claim []byte, err error) {
	var jti, value, iss []byte
	var haveJTI, haveClaim, haveValue bool
	// str reads a string member; null makes it absent, as for a pointer in encoding/json.
	str := func(dst *[]byte, have *bool) (err error) {
		if s.null() {
			*dst, *have = nil, false
			return nil
		}
		*dst, err = s.str()
		*have = err == nil
		return err
	}
	err = s.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "jti":
			err = str(&jti, &haveJTI)
		case "claim":
			err = str(&claim, &haveClaim)
		case "value":
			err = str(&value, &haveValue)
		case "exp":
			// null leaves the value as it was, as encoding/json does for a non-pointer field.
			if v, present, e := s.uint32v(); e != nil {
				err = fmt.Errorf("exp: %w", e)
			} else if present {
				exp = v
			}
		case "iss":
			if !s.null() {
				iss, err = s.str()
			}
		default:
			err = s.skip()
		}
		return err
	})
	if err != nil {
		return 0, 0, 0, nil, err
	}
	if err := checkEntryForm(haveJTI, haveClaim, haveValue, jti, claim, value); err != nil {
		return 0, 0, 0, nil, err
	}
	keyIss, err := s.issuer(iss)
	if err != nil {
		return 0, 0, 0, nil, err
	}
	if haveClaim {
		key, id = claimKeyAndID(s.lim.Hasher, keyIss, iss, claim, value)
		return key, id, exp, claim, nil
	}
	key, id = keyAndID(s.lim.Hasher, domainToken, keyIss, iss, jti)
	return key, id, exp, nil, nil
}

// checkEntryForm holds an entry to exactly one of its two forms (docs/feed.md): a jti, or a
// claim's name and value. A claim entry never names jti (that is the jti form) or sub (that
// is a cutoff), so no entry can be read two ways.
func checkEntryForm(haveJTI, haveClaim, haveValue bool, jti, claim, value []byte) error {
	switch {
	case haveJTI && (haveClaim || haveValue):
		return errors.New(`an entry has either "jti" or "claim" and "value", not both`)
	case haveJTI:
		if len(jti) == 0 || len(jti) > MaxJTILen {
			return fmt.Errorf("jti must be a string of 1-%d bytes", MaxJTILen)
		}
		return nil
	case !haveClaim && !haveValue:
		return fmt.Errorf(`jti must be a string of 1-%d bytes (or give "claim" and "value")`, MaxJTILen)
	case !haveClaim:
		return errors.New(`"value" without "claim"`)
	case !haveValue:
		return errors.New(`"claim" without "value"`)
	}
	if err := CheckClaimName(string(claim)); err != nil {
		return err
	}
	if len(value) == 0 || len(value) > MaxJTILen {
		return fmt.Errorf("value must be a string of 1-%d bytes", MaxJTILen)
	}
	return nil
}

// CheckClaimName reports whether name can be the claim of a claim entry: 1 to
// MaxClaimNameLen bytes of visible ASCII, and none of jti (use a jti entry), sub (use a
// subject cutoff), iss (entries are scoped to an issuer by their own "iss") or iat (a time:
// a cutoff revokes by it). The filter reads those four claims its own way, so a claim entry
// naming one could never match as its author meant.
func CheckClaimName(name string) error {
	if len(name) == 0 || len(name) > MaxClaimNameLen {
		return fmt.Errorf("claim must be a name of 1-%d bytes", MaxClaimNameLen)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; c <= ' ' || c > '~' {
			return errors.New("a claim name is visible ASCII ('!' to '~')")
		}
	}
	switch name {
	case "jti":
		return errors.New(`claim "jti": revoke a jti with a jti entry`)
	case "sub":
		return errors.New(`claim "sub": revoke a subject with a cutoff`)
	case "iss":
		return errors.New(`claim "iss": scope an entry to an issuer with its "iss"`)
	case "iat":
		return errors.New(`claim "iat": revoke by issue time with a subject cutoff`)
	}
	return nil
}

func (s *scanner) cutoff(needTime bool) (Cutoff, error) {
	var sub, iss []byte
	var c Cutoff
	haveSub, haveBefore := false, false
	err := s.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "sub":
			if s.null() {
				sub, haveSub = nil, false
				return nil
			}
			sub, err = s.str()
			haveSub = err == nil
		case "iss":
			if !s.null() {
				iss, err = s.str()
			}
		case "revoked_before":
			// A pointer in encoding/json's terms: null clears it.
			v, present, e := s.uint32v()
			if e != nil {
				err = fmt.Errorf("revoked_before: %w", e)
			}
			c.RevokedBefore, haveBefore = v, present
		case "exp":
			if v, present, e := s.uint32v(); e != nil {
				err = fmt.Errorf("exp: %w", e)
			} else if present {
				c.Exp = v
			}
		default:
			err = s.skip()
		}
		return err
	})
	if err != nil {
		return Cutoff{}, err
	}
	if !haveSub || len(sub) == 0 || len(sub) > MaxJTILen {
		return Cutoff{}, fmt.Errorf("sub must be a string of 1-%d bytes", MaxJTILen)
	}
	if needTime && !haveBefore {
		return Cutoff{}, errors.New("revoked_before is required")
	}
	keyIss, err := s.issuer(iss)
	if err != nil {
		return Cutoff{}, err
	}
	c.Key, c.ID = keyAndID(s.lim.Hasher, domainSubject, keyIss, iss, sub)
	return c, nil
}
