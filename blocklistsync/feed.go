package blocklistsync

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
)

// ErrBadFeed wraps every reason a feed response is rejected. A rejected response changes
// nothing: the last good list stays.
var ErrBadFeed = errors.New("bad feed response")

// UpdateKind says whether an update replaces the list or changes it.
type UpdateKind int

// Update kinds.
const (
	KindSnapshot UpdateKind = iota
	KindDelta
)

// Ref names one entry or cutoff: its key and its ID (keys.go).
type Ref struct{ Key, ID uint64 }

// Update is a parsed feed response, already reduced to keys: jti, iss and sub strings are
// hashed as they are read and never held, so parsing 1M entries allocates no strings.
type Update struct {
	Kind          UpdateKind
	Version, Base string
	// Add holds the whole list for a snapshot, the additions for a delta.
	Add List
	// Remove and RemoveCutoffs name what a delta removes.
	Remove, RemoveCutoffs []Ref
}

// FeedLimits bounds what one response may hold, and says how to key it.
type FeedLimits struct {
	MaxEntries    int  // entries plus cutoffs
	KeyedByIssuer bool // hash (iss, jti) rather than jti alone
	// Hasher computes every key and ID: the hasher of the list the update will apply to (or of
	// the new list, for a snapshot replacing an unusable one). Required.
	Hasher Hasher
}

var errNoHasher = errors.New("blocklistsync: ParseFeed needs a Hasher")

// ParseFeed parses a feed body (docs/feed.md). The content type chooses the format: JSON for
// application/json (or any +json type), the plain-text list for text/plain, and without a
// content type JSON only if the body is a JSON object. Anything else is rejected, so that an
// error page or an empty answer is never read as an empty list.
func ParseFeed(body []byte, contentType string, lim FeedLimits) (*Update, error) {
	if lim.Hasher.IsZero() {
		return nil, errNoHasher
	}
	switch mt := mediaType(contentType); {
	case mt == "application/json" || strings.HasSuffix(mt, "+json"):
		return parseJSONFeed(body, lim)
	case mt == "text/plain":
		return parsePlainFeed(body, lim)
	case mt == "" && strings.TrimSpace(contentType) == "":
		if t := bytes.TrimLeft(body, " \t\r\n"); len(t) == 0 || t[0] != '{' {
			return nil, fmt.Errorf("%w: no content type, and the body is not a JSON object", ErrBadFeed)
		}
		return parseJSONFeed(body, lim)
	default:
		return nil, fmt.Errorf("%w: content type %.64q is neither application/json nor text/plain", ErrBadFeed, contentType)
	}
}

// mediaType is the content type's type/subtype, lower case, without parameters.
func mediaType(ct string) string {
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	return strings.ToLower(strings.Trim(ct, " \t"))
}

// parsePlainFeed reads one jti per line with an optional Unix expiry. Only blanks and tabs
// separate fields, and a jti is printable ASCII that does not start like JSON, HTML or a
// quoted string: a JSON document or an error page served as text/plain is rejected, not read
// as a list of odd jtis.
func parsePlainFeed(body []byte, lim FeedLimits) (*Update, error) {
	u := &Update{Kind: KindSnapshot}
	if n := min(bytes.Count(body, []byte{'\n'})+1, lim.MaxEntries); n > 0 {
		u.Add.Entries = make([]Entry, 0, n) // sized once, as in parseJSONFeed
	}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 4096), 4096) // a longer line rejects the body
	lines := 0
	for line := 1; sc.Scan(); line++ {
		text := bytes.Trim(sc.Bytes(), " \t\r")
		if len(text) == 0 {
			continue
		}
		lines++
		if text[0] == '#' {
			continue
		}
		jti, rest := text, []byte(nil)
		if i := bytes.IndexAny(text, " \t"); i >= 0 {
			jti, rest = text[:i], bytes.TrimLeft(text[i:], " \t")
		}
		if bytes.ContainsAny(rest, " \t") {
			return nil, fmt.Errorf("%w: line %d: want 'jti [exp]'", ErrBadFeed, line)
		}
		if len(jti) > MaxJTILen {
			return nil, fmt.Errorf("%w: line %d: jti longer than %d bytes", ErrBadFeed, line, MaxJTILen)
		}
		if c := jti[0]; c == '{' || c == '[' || c == '<' || c == '"' {
			return nil, fmt.Errorf("%w: line %d: starts with %q: JSON or HTML served as text/plain?", ErrBadFeed, line, c)
		}
		for _, c := range jti {
			if c <= ' ' || c > '~' {
				return nil, fmt.Errorf("%w: line %d: a plain-text jti is printable ASCII (use JSON for others)", ErrBadFeed, line)
			}
		}
		var exp uint32
		if len(rest) > 0 {
			var ok bool
			if exp, ok = parseUnix(rest); !ok {
				return nil, fmt.Errorf("%w: line %d: expiry is not a Unix time", ErrBadFeed, line)
			}
		}
		if len(u.Add.Entries) >= lim.MaxEntries {
			return nil, fmt.Errorf("%w: more than %d entries", ErrBadFeed, lim.MaxEntries)
		}
		k, id := keyAndID(lim.Hasher, domainToken, []byte(nil), []byte(nil), jti)
		u.Add.Entries = append(u.Add.Entries, Entry{Key: k, ID: id, Exp: exp})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadFeed, err)
	}
	if lines == 0 {
		return nil, fmt.Errorf("%w: empty plain-text body (an empty list is a comment line alone)", ErrBadFeed)
	}
	return u, nil
}

// parseUnix reads decimal digits as a Unix time in 0..2^32-1.
func parseUnix(b []byte) (uint32, bool) {
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		if n = n*10 + uint64(c-'0'); n > 1<<32-1 {
			return 0, false
		}
	}
	return uint32(n), len(b) > 0
}
