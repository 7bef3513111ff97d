package blocklistsync

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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

type feedEntry struct {
	JTI *string `json:"jti"`
	Exp uint32  `json:"exp"`
	Iss string  `json:"iss"`
}

type feedCutoff struct {
	Sub           *string `json:"sub"`
	Iss           string  `json:"iss"`
	RevokedBefore *uint32 `json:"revoked_before"`
	Exp           uint32  `json:"exp"`
}

type feedParser struct {
	dec   *json.Decoder
	lim   FeedLimits
	count int
	u     Update
}

func parseJSONFeed(body []byte, lim FeedLimits) (*Update, error) {
	p := &feedParser{dec: json.NewDecoder(bytes.NewReader(body)), lim: lim}
	if err := p.object(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadFeed, err)
	}
	return &p.u, nil
}

func (p *feedParser) object() error {
	if err := p.delim('{'); err != nil {
		return err
	}
	kind := ""
	for p.dec.More() {
		tok, err := p.dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		switch key {
		case "kind":
			err = p.str(&kind, "kind", 16)
		case "version":
			err = p.str(&p.u.Version, "version", MaxVersionLen)
		case "base":
			err = p.str(&p.u.Base, "base", MaxVersionLen)
		case "entries", "added":
			err = p.entries(key, func(k uint64, exp uint32) { p.u.Add.Entries = append(p.u.Add.Entries, Entry{k, exp}) })
		case "removed":
			err = p.entries(key, func(k uint64, _ uint32) { p.u.Remove = append(p.u.Remove, k) })
		case "cutoffs", "cutoffs_added":
			err = p.cutoffs(key, true, func(c Cutoff) { p.u.Add.Cutoffs = append(p.u.Add.Cutoffs, c) })
		case "cutoffs_removed":
			err = p.cutoffs(key, false, func(c Cutoff) { p.u.RemoveCutoffs = append(p.u.RemoveCutoffs, c.Key) })
		default:
			var skip json.RawMessage // servers may add fields of their own
			err = p.dec.Decode(&skip)
		}
		if err != nil {
			return err
		}
	}
	if err := p.delim('}'); err != nil {
		return err
	}
	if _, err := p.dec.Token(); err != io.EOF {
		return errors.New("data after the JSON object")
	}
	switch kind {
	case "", "snapshot":
		p.u.Kind = KindSnapshot
		if len(p.u.Remove)+len(p.u.RemoveCutoffs) > 0 {
			return errors.New("a snapshot cannot remove entries")
		}
	case "delta":
		p.u.Kind = KindDelta
		if p.u.Base == "" {
			return errors.New("a delta needs a base version")
		}
	default:
		return fmt.Errorf("unknown kind %q", kind)
	}
	return nil
}

func (p *feedParser) delim(want json.Delim) error {
	tok, err := p.dec.Token()
	if err != nil {
		return err
	}
	if d, ok := tok.(json.Delim); !ok || d != want {
		return fmt.Errorf("expected %q, got %v", want, tok)
	}
	return nil
}

func (p *feedParser) str(dst *string, field string, maxLen int) error {
	if err := p.dec.Decode(dst); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	if len(*dst) > maxLen {
		return fmt.Errorf("%s: longer than %d bytes", field, maxLen)
	}
	return nil
}

func (p *feedParser) take(field string) error {
	if p.count++; p.count > p.lim.MaxEntries {
		return fmt.Errorf("%s: more than %d entries and cutoffs", field, p.lim.MaxEntries)
	}
	return nil
}

func (p *feedParser) issuer(iss string) (string, error) {
	if len(iss) > MaxIssuerLen {
		return "", fmt.Errorf("iss longer than %d bytes", MaxIssuerLen)
	}
	if !p.lim.KeyedByIssuer {
		return "", nil // the deployment ignores issuers: every entry matches by jti alone
	}
	return iss, nil
}

func (p *feedParser) entries(field string, add func(uint64, uint32)) error {
	if err := p.delim('['); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	for i := 0; p.dec.More(); i++ {
		if err := p.take(field); err != nil {
			return err
		}
		var e feedEntry
		if err := p.dec.Decode(&e); err != nil {
			return fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		if e.JTI == nil || len(*e.JTI) == 0 || len(*e.JTI) > MaxJTILen {
			return fmt.Errorf("%s[%d]: jti must be a string of 1-%d bytes", field, i, MaxJTILen)
		}
		iss, err := p.issuer(e.Iss)
		if err != nil {
			return fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		add(TokenKey(iss, *e.JTI), e.Exp)
	}
	if err := p.delim(']'); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return nil
}

func (p *feedParser) cutoffs(field string, needTime bool, add func(Cutoff)) error {
	if err := p.delim('['); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	for i := 0; p.dec.More(); i++ {
		if err := p.take(field); err != nil {
			return err
		}
		var c feedCutoff
		if err := p.dec.Decode(&c); err != nil {
			return fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		if c.Sub == nil || len(*c.Sub) == 0 || len(*c.Sub) > MaxJTILen {
			return fmt.Errorf("%s[%d]: sub must be a string of 1-%d bytes", field, i, MaxJTILen)
		}
		if needTime && c.RevokedBefore == nil {
			return fmt.Errorf("%s[%d]: revoked_before is required", field, i)
		}
		iss, err := p.issuer(c.Iss)
		if err != nil {
			return fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		cut := Cutoff{Key: SubjectKey(iss, *c.Sub), Exp: c.Exp}
		if c.RevokedBefore != nil {
			cut.RevokedBefore = *c.RevokedBefore
		}
		add(cut)
	}
	if err := p.delim(']'); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	return nil
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
