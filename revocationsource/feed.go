package revocationsource

import (
	"fmt"
	"strconv"
	"unicode/utf8"
)

// Wire types of the feed (docs/feed.md). The server encodes by hand (see
// AppendSnapshot) because a million entries through encoding/json reflection
// is several times slower; these types are for decoding (the file store,
// tests, clients).
type (
	// WireEntry is an entry of the feed: a jti, or a claim entry's claim
	// and value (docs/feed.md), never both.
	WireEntry struct {
		JTI   string `json:"jti,omitempty"`
		Claim string `json:"claim,omitempty"`
		Value string `json:"value,omitempty"`
		Exp   int64  `json:"exp,omitempty"`
		Iss   string `json:"iss,omitempty"`
	}
	WireCutoff struct {
		Sub           string `json:"sub"`
		Iss           string `json:"iss,omitempty"`
		RevokedBefore int64  `json:"revoked_before,omitempty"`
		Exp           int64  `json:"exp,omitempty"`
	}
	Snapshot struct {
		Kind    string       `json:"kind"`
		Version string       `json:"version,omitempty"`
		Entries []WireEntry  `json:"entries"`
		Cutoffs []WireCutoff `json:"cutoffs"`
	}
	Delta struct {
		Kind           string       `json:"kind"`
		Base           string       `json:"base"`
		Version        string       `json:"version"`
		Added          []WireEntry  `json:"added"`
		Removed        []WireEntry  `json:"removed"`
		CutoffsAdded   []WireCutoff `json:"cutoffs_added"`
		CutoffsRemoved []WireCutoff `json:"cutoffs_removed"`
	}
)

// Wire returns e in the feed's shape.
func (e Entry) Wire() WireEntry {
	if e.Claim != "" {
		return WireEntry{Claim: e.Claim, Value: e.JTI, Exp: e.Exp, Iss: e.Iss}
	}
	return WireEntry{JTI: e.JTI, Exp: e.Exp, Iss: e.Iss}
}

// Entry returns the entry w names, or ErrInvalid when it is not exactly one
// of the two forms (a jti; a claim and its value). The entry's own limits
// are Validate's.
func (w WireEntry) Entry() (Entry, error) {
	switch {
	case w.JTI != "" && w.Claim == "" && w.Value == "":
		return Entry{JTI: w.JTI, Iss: w.Iss, Exp: w.Exp}, nil
	case w.JTI == "" && w.Claim != "" && w.Value != "":
		return ClaimEntry(w.Iss, w.Claim, w.Value, w.Exp), nil
	}
	return Entry{}, fmt.Errorf("%w: an entry has either a jti, or a claim and its value", ErrInvalid)
}

// AppendSnapshot appends the JSON snapshot document to b.
func AppendSnapshot(b []byte, version string, entries []Entry, cutoffs []Cutoff) []byte {
	b = append(b, `{"kind":"snapshot","version":`...)
	b = appendJSONString(b, version)
	b = append(b, `,"entries":[`...)
	for i, e := range entries {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendEntry(b, e.Key(), e.Exp)
	}
	b = append(b, `],"cutoffs":[`...)
	for i, c := range cutoffs {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendCutoff(b, c.Sub, c.Iss, c.RevokedBefore, c.Exp, true)
	}
	return append(b, "]}\n"...)
}

// AppendDelta appends the JSON delta document to b.
func AppendDelta(b []byte, base, version string, d DeltaChanges) []byte {
	b = append(b, `{"kind":"delta","base":`...)
	b = appendJSONString(b, base)
	b = append(b, `,"version":`...)
	b = appendJSONString(b, version)
	b = append(b, `,"added":[`...)
	for i, e := range d.Added {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendEntry(b, e.Key(), e.Exp)
	}
	b = append(b, `],"removed":[`...)
	for i, k := range d.Removed {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendEntry(b, k, 0)
	}
	b = append(b, `],"cutoffs_added":[`...)
	for i, c := range d.CutoffsAdded {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendCutoff(b, c.Sub, c.Iss, c.RevokedBefore, c.Exp, true)
	}
	b = append(b, `],"cutoffs_removed":[`...)
	for i, k := range d.CutoffsRemoved {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendCutoff(b, k.Sub, k.Iss, 0, 0, false)
	}
	return append(b, "]}\n"...)
}

func appendEntry(b []byte, k EntryKey, exp int64) []byte {
	if k.Claim != "" {
		b = append(b, `{"claim":`...)
		b = appendJSONString(b, k.Claim)
		b = append(b, `,"value":`...)
	} else {
		b = append(b, `{"jti":`...)
	}
	b = appendJSONString(b, k.JTI)
	iss := k.Iss
	if exp != 0 {
		b = append(b, `,"exp":`...)
		b = strconv.AppendInt(b, exp, 10)
	}
	if iss != "" {
		b = append(b, `,"iss":`...)
		b = appendJSONString(b, iss)
	}
	return append(b, '}')
}

func appendCutoff(b []byte, sub, iss string, revokedBefore, exp int64, withTimes bool) []byte {
	b = append(b, `{"sub":`...)
	b = appendJSONString(b, sub)
	if iss != "" {
		b = append(b, `,"iss":`...)
		b = appendJSONString(b, iss)
	}
	if withTimes {
		b = append(b, `,"revoked_before":`...)
		b = strconv.AppendInt(b, revokedBefore, 10)
		if exp != 0 {
			b = append(b, `,"exp":`...)
			b = strconv.AppendInt(b, exp, 10)
		}
	}
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendJSONString quotes s as a JSON string. The index only admits valid
// UTF-8, but invalid bytes are still replaced with U+FFFD as encoding/json
// does, so the output is always valid JSON.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, `\ufffd`...)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}
