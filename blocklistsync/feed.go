package blocklistsync

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strconv"
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

// Update is a parsed feed response, already reduced to keys: jti, iss and sub strings are
// hashed as they are read and never held, so parsing 1M entries allocates no strings.
type Update struct {
	Kind          UpdateKind
	Version, Base string
	// Add holds the whole list for a snapshot, the additions for a delta.
	Add List
	// Remove and RemoveCutoffs hold the keys a delta removes.
	Remove, RemoveCutoffs []uint64
}

// FeedLimits bounds what one response may hold.
type FeedLimits struct {
	MaxEntries    int  // entries plus cutoffs
	KeyedByIssuer bool // hash (iss, jti) rather than jti alone
}

// ParseFeed parses a feed body (docs/feed.md). JSON is recognised by its content type or,
// without one, by a leading '{'; anything else is the plain-text list.
func ParseFeed(body []byte, contentType string, lim FeedLimits) (*Update, error) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	isJSON := strings.Contains(strings.ToLower(contentType), "json") ||
		(contentType == "" && len(trimmed) > 0 && trimmed[0] == '{')
	if isJSON {
		return parseJSONFeed(body, lim)
	}
	return parsePlainFeed(body, lim)
}

// parsePlainFeed reads one jti per line with an optional Unix expiry.
func parsePlainFeed(body []byte, lim FeedLimits) (*Update, error) {
	u := &Update{Kind: KindSnapshot}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 4096), 4096) // a longer line rejects the body
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || text[0] == '#' {
			continue
		}
		fields := strings.Fields(text)
		if len(fields) > 2 {
			return nil, fmt.Errorf("%w: line %d: want 'jti [exp]'", ErrBadFeed, line)
		}
		if len(fields[0]) > MaxJTILen {
			return nil, fmt.Errorf("%w: line %d: jti longer than %d bytes", ErrBadFeed, line, MaxJTILen)
		}
		var exp uint64
		if len(fields) == 2 {
			var err error
			if exp, err = strconv.ParseUint(fields[1], 10, 32); err != nil {
				return nil, fmt.Errorf("%w: line %d: expiry is not a Unix time", ErrBadFeed, line)
			}
		}
		if len(u.Add.Entries) >= lim.MaxEntries {
			return nil, fmt.Errorf("%w: more than %d entries", ErrBadFeed, lim.MaxEntries)
		}
		u.Add.Entries = append(u.Add.Entries, Entry{TokenKey("", fields[0]), uint32(exp)})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadFeed, err)
	}
	return u, nil
}
