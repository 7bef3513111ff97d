package blocklistsync

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
)

// The feed parser as first written, on encoding/json's Decoder: simple and obviously right,
// but it copies the body and allocates every jti. It stays as the reference that the in-place
// scanner is fuzzed against (FuzzScannerMatchesReference).

type feedEntry struct {
	JTI   *string `json:"jti"`
	Claim *string `json:"claim"`
	Value *string `json:"value"`
	Exp   uint32  `json:"exp"`
	Iss   string  `json:"iss"`
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

func parseJSONFeedReference(body []byte, lim FeedLimits) (*Update, error) {
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
	seen := 0
	for p.dec.More() {
		tok, err := p.dec.Token()
		if err != nil {
			return err
		}
		key, _ := tok.(string)
		bit := memberBit(key)
		if bit != 0 && seen&bit != 0 {
			return fmt.Errorf("member %q twice", key)
		}
		seen |= bit
		switch key {
		case "kind":
			err = p.str(&kind, "kind", 16)
		case "version":
			err = p.str(&p.u.Version, "version", MaxVersionLen)
		case "base":
			err = p.str(&p.u.Base, "base", MaxVersionLen)
		case "entries", "added":
			err = p.entries(key, func(k, id uint64, exp uint32, claim *string) error {
				p.u.Add.Entries = append(p.u.Add.Entries, Entry{Key: k, ID: id, Exp: exp})
				// The names of the claims added entries revoke by: at most 8, kept sorted.
				if claim != nil && !slices.Contains(p.u.Add.Claims, *claim) {
					if len(p.u.Add.Claims) == 8 {
						return errors.New("more than 8 claim names")
					}
					p.u.Add.Claims = append(p.u.Add.Claims, *claim)
					slices.Sort(p.u.Add.Claims)
				}
				return nil
			})
		case "removed":
			err = p.entries(key, func(k, id uint64, _ uint32, _ *string) error {
				p.u.Remove = append(p.u.Remove, Ref{k, id})
				return nil
			})
		case "cutoffs", "cutoffs_added":
			err = p.cutoffs(key, true, func(c Cutoff) { p.u.Add.Cutoffs = append(p.u.Add.Cutoffs, c) })
		case "cutoffs_removed":
			err = p.cutoffs(key, false, func(c Cutoff) { p.u.RemoveCutoffs = append(p.u.RemoveCutoffs, Ref{c.Key, c.ID}) })
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
	return finishUpdate(&p.u, kind, seen)
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

func (p *feedParser) entries(field string, add func(key, id uint64, exp uint32, claim *string) error) error {
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
		if err := referenceEntryForm(e); err != nil {
			return fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		keyIss, err := p.issuer(e.Iss)
		if err != nil {
			return fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		var k, id uint64
		if e.Claim != nil {
			k, id = claimKeyAndID(p.lim.Hasher, keyIss, e.Iss, *e.Claim, *e.Value)
		} else {
			k, id = keyAndID(p.lim.Hasher, domainToken, keyIss, e.Iss, *e.JTI)
		}
		if err := add(k, id, e.Exp, e.Claim); err != nil {
			return fmt.Errorf("%s[%d]: %w", field, i, err)
		}
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
		keyIss, err := p.issuer(c.Iss)
		if err != nil {
			return fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		k, id := keyAndID(p.lim.Hasher, domainSubject, keyIss, c.Iss, *c.Sub)
		cut := Cutoff{Key: k, ID: id, Exp: c.Exp}
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

// referenceEntryForm is the rule of docs/feed.md written out plainly: exactly one of a jti
// (1–256 bytes) or a claim (1–64 bytes of visible ASCII, not jti, sub, iss or iat) with a value
// (1–256 bytes).
func referenceEntryForm(e feedEntry) error {
	if e.JTI != nil {
		if e.Claim != nil || e.Value != nil {
			return errors.New("both forms")
		}
		if len(*e.JTI) == 0 || len(*e.JTI) > MaxJTILen {
			return errors.New("bad jti")
		}
		return nil
	}
	if e.Claim == nil || e.Value == nil {
		return errors.New("neither form")
	}
	c := *e.Claim
	if len(c) == 0 || len(c) > 64 || c == "jti" || c == "sub" || c == "iss" || c == "iat" {
		return errors.New("bad claim")
	}
	for _, r := range []byte(c) {
		if r < 0x21 || r > 0x7e {
			return errors.New("bad claim")
		}
	}
	if len(*e.Value) == 0 || len(*e.Value) > MaxJTILen {
		return errors.New("bad value")
	}
	return nil
}
